"""A search hit as a person reads it (the CLI's table, the collection page): where the
document is without the server's own directories, and the text without the headings that
the hit's heading path already shows."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import PurePosixPath

from functions.config import Settings
from functions.errors import JobNotFound
from functions.ingestion.chunker import HEADING_SEPARATOR
from functions.ingestion.search_hit import SearchHit
from functions.store.protocol import JobStore

# A Markdown heading line: "## Title" (closing #s allowed).
_HEADING_LINE = re.compile(r"^\s{0,3}#{1,6}\s+(?P<title>.*?)(?:\s+#+)?\s*$")


def shown_sources(hits: Sequence[SearchHit], store: JobStore, settings: Settings) -> list[str]:
    """`shown_source` of each hit, relative to the location of the job that wrote it (a job
    deleted since, or one given items, has none: then the allowed roots)."""
    roots = [str(root) for root in settings.allowed_roots]
    locations: dict[str, str | None] = {}
    for hit in hits:
        if hit.job_id not in locations:
            locations[hit.job_id] = _location(store, hit.job_id)
    return [shown_source(hit.uri, locations[hit.job_id], roots) for hit in hits]


def _location(store: JobStore, job_id: str) -> str | None:
    if not job_id:
        return None
    try:
        location = store.get_job(job_id).request.get("location")
    except JobNotFound:
        return None
    return location if isinstance(location, str) else None


def shown_source(uri: str, location: str | None, roots: Sequence[str]) -> str:
    """A gs:// URI as it is; a local file's path relative to the location its job listed,
    else to the allowed root it lies under, else its name alone."""
    if "://" in uri:
        return uri
    path = PurePosixPath(uri)
    bases = [location] if location and "://" not in location else []
    for base in [*bases, *roots]:
        try:
            relative = path.relative_to(os.path.realpath(base))
        except ValueError:
            continue
        if str(relative) != ".":
            return str(relative)
    return path.name


def without_headings(text: str, heading_path: str) -> str:
    """`text` less the heading lines at its start whose titles are in `heading_path` (the
    hit shows that path above its text), and the blank lines after them."""
    titles = {title.strip() for title in heading_path.split(HEADING_SEPARATOR)}
    lines = text.lstrip("\n").split("\n")
    start = 0
    while start < len(lines):
        line = lines[start]
        match = _HEADING_LINE.match(line)
        if (match is not None and match["title"].strip() in titles) or (
            not line.strip() and start > 0
        ):
            start += 1
        else:
            break
    body = "\n".join(lines[start:]).strip()
    return body or text.strip()
