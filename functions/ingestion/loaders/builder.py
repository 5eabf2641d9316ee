"""Assembles a document's text from blocks, keeping heading and page offsets exact."""

from __future__ import annotations

from functions.ingestion.documents import Document, Heading, Page
from functions.ingestion.loaders.decoding import UTF8, normalise

BLOCK_SEPARATOR = "\n\n"
MAX_HEADING_LEVEL = 6


class TextBuilder:
    """Text made of blocks separated by blank lines. A heading is a block of its own, a
    Markdown line (`## Title`); a page mark points at the start of the next block."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._headings: list[Heading] = []
        self._pages: list[Page] = []
        self._pending_pages: list[int] = []

    def add_block(self, text: str, *, keep_indent: bool = False) -> int | None:
        """Append a block; returns its offset, or None when it is blank (and dropped).
        `keep_indent` keeps leading spaces (preformatted text)."""
        text = normalise(text)
        text = text.strip("\n").rstrip() if keep_indent else text.strip()
        if not text:
            return None
        if self._length:
            self._append(BLOCK_SEPARATOR)
        start = self._length
        self._pages.extend(Page(start, number) for number in self._pending_pages)
        self._pending_pages.clear()
        self._append(text)
        return start

    def add_heading(self, level: int, title: str) -> None:
        """Append `title` as a Markdown heading line and record it; blank titles are dropped."""
        title = " ".join(normalise(title).split())
        if not title:
            return
        level = min(max(level, 1), MAX_HEADING_LEVEL)
        start = self.add_block(f"{'#' * level} {title}")
        if start is not None:
            self._headings.append(Heading(start, level, title))

    def mark_page(self, number: int) -> None:
        """Page (or record) `number` starts with the next block."""
        self._pending_pages.append(number)

    def build(self, uri: str, *, title: str = "", encoding: str = UTF8) -> Document:
        # Pages with no text after them point at the end of the text.
        self._pages.extend(Page(self._length, number) for number in self._pending_pages)
        self._pending_pages.clear()
        return Document(
            uri=uri,
            text="".join(self._parts),
            headings=tuple(self._headings),
            pages=tuple(self._pages),
            title=" ".join(title.split()),
            encoding=encoding,
        )

    def _append(self, text: str) -> None:
        self._parts.append(text)
        self._length += len(text)
