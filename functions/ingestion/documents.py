"""The values that flow through ingestion: source items, loaded documents and chunks."""

from __future__ import annotations

from dataclasses import dataclass, field

from functions.ingestion.fingerprint import Fingerprint


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One file a source lists: where it is, how big, and what kind (a MIME type or ''),
    and what tells whether it changed since it was last ingested."""

    uri: str
    size: int
    content_type: str = ""
    # Not part of what the item is: two listings of one file are equal, whatever its mtime.
    fingerprint: Fingerprint | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Heading:
    """A heading that starts at character `offset` of a document's text."""

    offset: int
    level: int
    title: str


@dataclass(frozen=True, slots=True)
class Page:
    """A page (PDF) or record (JSON Lines) that starts at character `offset` of the text."""

    offset: int
    number: int


@dataclass(frozen=True, slots=True)
class Document:
    """A loaded file: its text, with Markdown-style structure kept as headings and pages.

    `text` holds the main text only (no markup, scripts or navigation). `headings` and
    `pages` are sorted by offset; either may be empty.
    """

    uri: str
    text: str
    headings: tuple[Heading, ...] = ()
    pages: tuple[Page, ...] = ()
    title: str = ""
    # How the bytes were decoded, when they were not valid UTF-8 (e.g. "cp1252").
    encoding: str = "utf-8"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document, small enough for the embedder's window.

    `chunk_id` is derived from the document URI, the chunk's position, text and heading
    path, so a re-run produces the same ids and an unchanged document's chunks are upserted
    in place.
    """

    chunk_id: str
    uri: str
    position: int
    text: str
    heading_path: str = ""
    page: int | None = None
    start: int = 0
    tokens: int = 0

    @property
    def embedded_text(self) -> str:
        """What the embedder reads: the heading path, then the text, so a query that names
        a section finds its chunks."""
        return f"{self.heading_path}\n\n{self.text}" if self.heading_path else self.text
