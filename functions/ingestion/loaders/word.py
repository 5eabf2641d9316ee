"""Word (.docx): paragraphs and tables in document order; Title and Heading N paragraphs
become Markdown heading lines."""

from __future__ import annotations

import io
import re
import zipfile

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from functions.errors import ItemFailed
from functions.ingestion.documents import Document
from functions.ingestion.loaders.builder import TextBuilder
from functions.ingestion.loaders.failures import display_name, reason

# Built-in style names, as python-docx reports them ("Heading 2"); custom ones may differ in case.
_HEADING_STYLE = re.compile(r"heading\s*(\d)", re.IGNORECASE)
TITLE_STYLE = "title"
CELL_SEPARATOR = " | "


def load_docx(uri: str, data: bytes) -> Document:
    name = display_name(uri)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:
        raise ItemFailed(f"{name}: not a valid DOCX file: {_why_unreadable(data, exc)}") from exc
    builder = TextBuilder()
    title = document.core_properties.title or ""
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            level = _heading_level(block)
            if level is None:
                builder.add_block(block.text)
                continue
            builder.add_heading(level, block.text)
            if level == 0 and not title:
                title = block.text
        else:
            builder.add_block(_table_text(block))
    return builder.build(uri, title=title)


def _heading_level(paragraph: Paragraph) -> int | None:
    """1-9 for a Heading N paragraph, 0 for a Title one (shown as level 1), else None."""
    style = paragraph.style
    style_name = (style.name or "") if style is not None else ""
    if style_name.lower() == TITLE_STYLE:
        return 0
    match = _HEADING_STYLE.fullmatch(style_name.strip())
    return int(match.group(1)) if match else None


def _table_text(table: Table) -> str:
    """One line per row, cells separated by ' | '; a merged cell is written once."""
    lines = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a horizontally merged cell repeats in row.cells
                continue
            previous = cell._tc
            cells.append(" ".join(cell.text.split()))
        lines.append(CELL_SEPARATOR.join(cells))
    return "\n".join(line for line in lines if line.strip(" |"))


def _why_unreadable(data: bytes, exc: Exception) -> str:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return "not a ZIP archive"
    if isinstance(exc, KeyError):
        return f"missing part: {exc.args[0] if exc.args else exc}"
    return reason(exc)
