"""PDF (.pdf): each page's extracted text, pages separated by blank lines and marked.

pypdf reports most damage as log warnings before (or instead of) raising: those are kept
out of the application log and captured, so a failure message can say "EOF marker not
found" rather than only "Stream has ended unexpectedly".
"""

from __future__ import annotations

import io
import logging
from contextvars import ContextVar

from pypdf import PasswordType, PdfReader

from functions.errors import ItemFailed
from functions.ingestion.documents import Document
from functions.ingestion.loaders.builder import TextBuilder
from functions.ingestion.loaders.failures import display_name, one_line, reason

_warnings: ContextVar[list[str] | None] = ContextVar("pypdf_warnings", default=None)


class _CaptureWarnings(logging.Handler):
    """Hands pypdf's log records to the load in progress (in this thread), if any."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = _warnings.get()
        if sink is not None:
            sink.append(record.getMessage())


_pypdf_logger = logging.getLogger("pypdf")
_pypdf_logger.addHandler(_CaptureWarnings())
# One damaged file can log hundreds of lines; failures are reported through ItemFailed.
_pypdf_logger.propagate = False


def load_pdf(uri: str, data: bytes) -> Document:
    name = display_name(uri)
    warnings: list[str] = []
    token = _warnings.set(warnings)
    try:
        return _read(uri, name, data)
    except ItemFailed:
        raise
    except Exception as exc:
        detail = reason(exc)
        if warnings:  # pypdf's first complaint is usually the cause, its exception a symptom
            detail = one_line(f"{one_line(warnings[0])} ({detail})")
        raise ItemFailed(f"{name}: not a valid PDF: {detail}") from exc
    finally:
        _warnings.reset(token)


def _read(uri: str, name: str, data: bytes) -> Document:
    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and _decrypt_without_password(reader) is PasswordType.NOT_DECRYPTED:
        raise ItemFailed(f"{name} is encrypted: it needs a password to open")
    builder = TextBuilder()
    for number, page in enumerate(reader.pages, start=1):
        builder.mark_page(number)
        builder.add_block(page.extract_text())
    return builder.build(uri, title=_title(reader))


def _title(reader: PdfReader) -> str:
    """The document information /Title; damaged metadata costs the title, not the file."""
    try:
        metadata = reader.metadata
        return str(metadata.title or "") if metadata is not None else ""
    except Exception:
        return ""


def _decrypt_without_password(reader: PdfReader) -> PasswordType:
    """Files with only an owner password (no user password) open with the empty one."""
    try:
        return reader.decrypt("")
    except Exception:  # an unsupported or damaged encryption dictionary
        return PasswordType.NOT_DECRYPTED
