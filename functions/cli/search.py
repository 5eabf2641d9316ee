"""`fanout search COLLECTION QUERY`: the documents (or, with --chunks, the chunks) of a
collection that best match a query (hybrid: vector and full text), as a table or --json."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from functions.cli.output import console, print_json
from functions.cli.parsing import positive_int
from functions.cli.target import Target

if TYPE_CHECKING:
    from functions.cli.parsing import Commands

TEXT_SHOWN = 160  # characters of each hit's text in the table


def hits_table(result: Mapping[str, Any]) -> Table:
    by_document = result.get("by") == "document"
    columns = ["score", "source", *(["chunks"] if by_document else []), "heading / page", "text"]
    table = Table(*columns, title=f"search: {result['query']}")
    for hit in result["hits"]:
        where = hit["heading_path"] or ""
        if hit["page"] is not None:
            where = f"{where} (page {hit['page']})".strip()
        # An API from before `source` and `body`: the file's name, the whole text.
        text = " ".join(hit.get("body", hit["text"]).split())
        table.add_row(
            f"{hit['score']:.4f}",
            hit.get("source") or _name(hit["uri"]),
            *([str(hit["matched_chunks"])] if by_document else []),
            where,
            text[:TEXT_SHOWN] + ("..." if len(text) > TEXT_SHOWN else ""),
        )
    return table


def _name(uri: str) -> str:
    return uri if uri.startswith("gs://") else Path(uri).name


def cmd_search(args: argparse.Namespace) -> int:
    by = "chunk" if args.chunks else "document"
    result = Target.from_args(args).client.search(args.collection, args.query, args.k, by=by)
    if args.json:
        print_json(result)
    else:
        console.print(hits_table(result))
    return 0


def register(commands: Commands, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "search",
        parents=list(parents),
        help="search a collection (vector + full text): the best documents",
    )
    p.set_defaults(handler=cmd_search)
    p.add_argument("collection")
    p.add_argument("query", help='words, or "a phrase" in quotes')
    p.add_argument("-k", type=positive_int, default=5, help="how many hits (default 5)")
    p.add_argument(
        "--chunks",
        action="store_true",
        help="the best chunks, several of a document possible (default: one per document)",
    )
