"""Plain text (.txt): the decoded text, as it is; no structure."""

from __future__ import annotations

from functions.ingestion.documents import Document
from functions.ingestion.loaders.decoding import decode_text, normalise


def read_text(data: bytes) -> tuple[str, str]:
    """Decoded, normalised text and its encoding; whitespace-only text becomes ''."""
    text, encoding = decode_text(data)
    text = normalise(text).removeprefix("\ufeff")
    return (text if text.strip() else ""), encoding


def load_text(uri: str, data: bytes) -> Document:
    text, encoding = read_text(data)
    return Document(uri=uri, text=text, encoding=encoding)
