"""Structure-aware chunking: headings and paragraphs first, then a token budget.

A document is cut at its headings first, so a chunk never spans two sections (a heading
with no text of its own joins the section after it). Within a section,
`semantic-text-splitter`'s Markdown splitter cuts at the largest unit (paragraph,
sentence, word) that fits `max_tokens` MiniLM wordpieces, with `overlap` tokens carried
over between neighbours, and reports each chunk's character offset. Loaders give every
format Markdown-style headings, so one splitter serves them all; the offsets place each
chunk under its heading path and page.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from semantic_text_splitter import MarkdownSplitter

from functions.errors import InvalidArgument
from functions.ingestion.documents import Chunk, Document
from functions.ingestion.tokens import MAX_CHUNK_TOKENS, count_tokens, minilm_tokenizer

DEFAULT_CHUNK_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 32
MIN_CHUNK_TOKENS = 16
HEADING_SEPARATOR = " > "


@dataclass(frozen=True, slots=True)
class ChunkSize:
    """A chunk's token budget and the overlap between neighbours, checked at submit."""

    max_tokens: int = DEFAULT_CHUNK_TOKENS
    overlap: int = DEFAULT_OVERLAP_TOKENS

    def __post_init__(self) -> None:
        if not MIN_CHUNK_TOKENS <= self.max_tokens <= MAX_CHUNK_TOKENS:
            raise InvalidArgument(
                f"chunk_tokens must be {MIN_CHUNK_TOKENS}..{MAX_CHUNK_TOKENS} (the embedding "
                f"model reads {MAX_CHUNK_TOKENS} wordpieces), got {self.max_tokens}"
            )
        if not 0 <= self.overlap <= self.max_tokens // 2:
            raise InvalidArgument(
                f"chunk_overlap must be 0..{self.max_tokens // 2} (half of chunk_tokens), "
                f"got {self.overlap}"
            )


@functools.cache
def _splitter(size: ChunkSize) -> MarkdownSplitter:
    return MarkdownSplitter.from_huggingface_tokenizer(
        minilm_tokenizer(), capacity=size.max_tokens, overlap=size.overlap
    )


def chunk_id(uri: str, position: int, text: str, heading_path: str = "") -> str:
    """Deterministic: the same document, position, text and heading path give the same id
    on every run. The heading path is part of what is embedded and indexed, so a chunk
    whose heading changed is a new chunk."""
    digest = hashlib.sha256(f"{uri}\x00{position}\x00{text}\x00{heading_path}".encode())
    return digest.hexdigest()[:32]


class _Outline:
    """Heading paths and page numbers by character offset, found by bisection."""

    def __init__(self, document: Document) -> None:
        self.heading_offsets: list[int] = []
        self.paths: list[str] = []
        stack: list[tuple[int, str]] = []
        for heading in document.headings:
            while stack and stack[-1][0] >= heading.level:
                stack.pop()
            stack.append((heading.level, heading.title.strip()))
            self.heading_offsets.append(heading.offset)
            self.paths.append(HEADING_SEPARATOR.join(title for _, title in stack))
        self.page_offsets = [page.offset for page in document.pages]
        self.page_numbers = [page.number for page in document.pages]

    def heading_path(self, offset: int) -> str:
        at = bisect.bisect_right(self.heading_offsets, offset) - 1
        return self.paths[at] if at >= 0 else ""

    def page(self, offset: int) -> int | None:
        at = bisect.bisect_right(self.page_offsets, offset) - 1
        return self.page_numbers[at] if at >= 0 else None


def _sections(document: Document) -> Iterator[tuple[int, int, str]]:
    """(offset, anchor, text) of each section: from one heading to the next, a bare
    heading joined to the section that follows it. `anchor` is where the section's own
    (innermost) heading starts, which names its heading path."""
    text = document.text
    bounds = sorted({0, *(h.offset for h in document.headings if 0 < h.offset < len(text))})
    bounds.append(len(text))
    start = anchor = 0
    for begin, end in itertools.pairwise(bounds):
        anchor = begin
        if len(text[begin:end].strip().splitlines()) <= 1 and end < len(text):
            continue  # a heading alone: keep it with what follows
        section = text[start:end]
        if section.strip():
            yield start, anchor, section
        start = end


def chunk_document(document: Document, size: ChunkSize = ChunkSize()) -> Iterator[Chunk]:
    """The chunks of `document`, in order. Whitespace-only text has none."""
    if not document.text.strip():
        return
    outline = _Outline(document)
    splitter = _splitter(size)
    pieces = (
        (base + offset, max(base + offset, anchor), text)
        for base, anchor, section in _sections(document)
        for offset, text in splitter.chunk_indices(section)
    )
    for position, (offset, anchor, text) in enumerate(pieces):
        heading_path = outline.heading_path(anchor)
        yield Chunk(
            chunk_id=chunk_id(document.uri, position, text, heading_path),
            uri=document.uri,
            position=position,
            text=text,
            heading_path=heading_path,
            page=outline.page(offset),
            start=offset,
            tokens=count_tokens(text),
        )
