"""Markdown (.md): the text as it is, with its ATX headings (`#` .. `######`) recorded.

The scan is one pass over the lines with index arithmetic only (no regex), so a file that
is one 5 MB line costs a few string operations. Headings inside fenced code blocks
(``` or ~~~) are code, not headings. Setext headings (underlined) are not recognised.
"""

from __future__ import annotations

from functions.ingestion.documents import Document, Heading
from functions.ingestion.loaders.text import read_text

MAX_INDENT = 3  # four spaces make an indented code block
MIN_FENCE = 3
MAX_LEVEL = 6


def load_markdown(uri: str, data: bytes) -> Document:
    text, encoding = read_text(data)
    headings = scan_headings(text)
    title = next((h.title for h in headings if h.level == 1), "")
    return Document(uri=uri, text=text, headings=tuple(headings), title=title, encoding=encoding)


def scan_headings(text: str) -> list[Heading]:
    """The ATX headings of `text` outside fenced code blocks, offset at their line start."""
    headings: list[Heading] = []
    fence: tuple[str, int] | None = None  # the open fence's character and length
    offset = 0
    for line in text.split("\n"):
        start, offset = offset, offset + len(line) + 1
        indent = _indent(line)
        if indent > MAX_INDENT:
            continue
        if fence is not None:
            if _closes_fence(line, indent, fence):
                fence = None
            continue
        fence = _opens_fence(line, indent)
        if fence is not None:
            continue
        heading = _atx_heading(line, indent)
        if heading is not None:
            headings.append(Heading(start, heading[0], heading[1]))
    return headings


def _indent(line: str) -> int:
    """Leading spaces, counted up to one past the most a fence or heading may have."""
    count = 0
    while count <= MAX_INDENT and count < len(line) and line[count] == " ":
        count += 1
    return count


def _run(line: str, start: int, char: str, limit: int) -> int:
    """How many `char` start at `start`, counted up to `limit`."""
    end = start
    while end < len(line) and end - start < limit and line[end] == char:
        end += 1
    return end - start


def _opens_fence(line: str, indent: int) -> tuple[str, int] | None:
    for char in "`~":
        length = _run(line, indent, char, len(line))
        if length >= MIN_FENCE:
            # A backtick fence's info string may not hold a backtick (CommonMark).
            if char == "`" and "`" in line[indent + length :]:
                return None
            return char, length
    return None


def _closes_fence(line: str, indent: int, fence: tuple[str, int]) -> bool:
    char, opened = fence
    length = _run(line, indent, char, len(line))
    return length >= opened and not line[indent + length :].strip()


def _atx_heading(line: str, indent: int) -> tuple[int, str] | None:
    level = _run(line, indent, "#", MAX_LEVEL + 1)
    if not 1 <= level <= MAX_LEVEL:
        return None
    rest = line[indent + level :]
    if rest and rest[0] not in " \t":
        return None  # "#hashtag" is not a heading
    title = rest.strip()
    # An optional closing run of '#' goes, when a space separates it from the title.
    unclosed = title.rstrip("#")
    if not unclosed or unclosed[-1] in " \t":
        title = unclosed.rstrip()
    return (level, title) if title else None
