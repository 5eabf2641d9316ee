"""JSON (.json) and JSON Lines (.jsonl, .ndjson): records with a text field.

Each record with a string `text_field` becomes a section: its string `title`, if any, as a
level-1 heading line, then its text. A page mark, numbered by the record's position in the
file (1-based, counting every record), points at the start of each section.
"""

from __future__ import annotations

import json
from typing import Any

from functions.errors import ItemFailed
from functions.ingestion.documents import Document
from functions.ingestion.loaders.builder import TextBuilder
from functions.ingestion.loaders.decoding import decode_text, normalise
from functions.ingestion.loaders.failures import display_name

TITLE_FIELD = "title"


def load_json(uri: str, data: bytes, text_field: str) -> Document:
    """A JSON file holding one record (an object) or an array of them."""
    text, encoding = decode_text(data)
    text = normalise(text).removeprefix("\ufeff")
    if not text.strip():
        return Document(uri=uri, text="", encoding=encoding)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ItemFailed(f"{display_name(uri)}: not valid JSON: {exc.msg} ({where})") from exc
    if isinstance(value, dict):
        records: list[Any] = [value]
    elif isinstance(value, list):
        records = value
    else:
        raise ItemFailed(
            f"{display_name(uri)}: expected a JSON object or an array of objects, "
            f"found {type(value).__name__}"
        )
    return _build(uri, records, text_field, encoding)


def load_jsonl(uri: str, data: bytes, text_field: str) -> Document:
    """A JSON Lines file: one record per non-blank line."""
    text, encoding = decode_text(data)
    text = normalise(text).removeprefix("\ufeff")
    if not text.strip():
        return Document(uri=uri, text="", encoding=encoding)
    records: list[Any] = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ItemFailed(
                f"{display_name(uri)}: not valid JSON Lines: line {line_number}: {exc.msg} "
                f"(column {exc.colno})"
            ) from exc
    return _build(uri, records, text_field, encoding)


def _build(uri: str, records: list[Any], text_field: str, encoding: str) -> Document:
    builder = TextBuilder()
    found = 0
    for number, record in enumerate(records, start=1):
        body = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(body, str):
            continue  # records without text are not errors, and not counted
        found += 1
        builder.mark_page(number)
        title = record.get(TITLE_FIELD)
        if isinstance(title, str):
            builder.add_heading(1, title)
        builder.add_block(body)
    if not found:
        raise ItemFailed(f"{display_name(uri)}: no record has a {text_field!r} text field")
    return builder.build(uri, encoding=encoding)
