"""Loaders: a file's bytes to a `Document` (its main text, headings and pages).

The format comes from the URI's suffix, else from the item's content type. A file of a
type no loader handles raises `ItemSkipped`; a broken file of a handled type raises
`ItemFailed` with a message that says what is wrong, whatever the library raised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

from functions.errors import ItemFailed, ItemSkipped
from functions.ingestion.documents import Document, SourceItem
from functions.ingestion.loaders.failures import display_name, reason
from functions.ingestion.loaders.html_page import load_html
from functions.ingestion.loaders.markdown import load_markdown
from functions.ingestion.loaders.pdf import load_pdf
from functions.ingestion.loaders.records import load_json, load_jsonl
from functions.ingestion.loaders.text import load_text
from functions.ingestion.loaders.word import load_docx

__all__ = ["load_document", "supported_suffixes"]

Loader = Callable[[str, bytes, str], Document]  # (uri, data, text_field)

_LOADERS: dict[str, Loader] = {
    "text": lambda uri, data, _field: load_text(uri, data),
    "markdown": lambda uri, data, _field: load_markdown(uri, data),
    "HTML": lambda uri, data, _field: load_html(uri, data),
    "PDF": lambda uri, data, _field: load_pdf(uri, data),
    "DOCX": lambda uri, data, _field: load_docx(uri, data),
    "JSON": load_json,
    "JSON Lines": load_jsonl,
}
_BY_SUFFIX = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "HTML",
    ".htm": "HTML",
    ".pdf": "PDF",
    ".docx": "DOCX",
    ".json": "JSON",
    ".jsonl": "JSON Lines",
    ".ndjson": "JSON Lines",
}
_BY_CONTENT_TYPE = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "HTML",
    "application/xhtml+xml": "HTML",
    "application/pdf": "PDF",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "DOCX",
    "application/json": "JSON",
    "application/jsonl": "JSON Lines",
    "application/x-jsonlines": "JSON Lines",
    "application/x-ndjson": "JSON Lines",
}


def supported_suffixes() -> frozenset[str]:
    """The file suffixes (lower case, with the dot) a loader handles."""
    return frozenset(_BY_SUFFIX)


def load_document(item: SourceItem, data: bytes, *, text_field: str = "text") -> Document:
    """Load `data`, the bytes of `item`. `text_field` names the text of JSON records.

    Raises ItemSkipped when no loader handles the file's type, and ItemFailed when the
    file is broken. An empty (or whitespace-only) file loads as a document with no text.
    """
    kind = _kind_of(item)
    if kind is None:
        raise ItemSkipped(
            f"{display_name(item.uri)}: no loader for this file type "
            f"(suffix {_suffix(item.uri) or 'none'!r}, content type {item.content_type!r})"
        )
    if not data.strip():
        return Document(uri=item.uri, text="")
    try:
        return _LOADERS[kind](item.uri, data, text_field)
    except (ItemFailed, ItemSkipped):
        raise
    except Exception as exc:  # the library's own error, for a file it cannot read
        raise ItemFailed(
            f"{display_name(item.uri)}: not a valid {kind} file: {reason(exc)}"
        ) from exc


def _kind_of(item: SourceItem) -> str | None:
    kind = _BY_SUFFIX.get(_suffix(item.uri))
    if kind is None:
        content_type = item.content_type.split(";", 1)[0].strip().lower()
        kind = _BY_CONTENT_TYPE.get(content_type)
    return kind


def _suffix(uri: str) -> str:
    return PurePosixPath(display_name(uri)).suffix.lower()
