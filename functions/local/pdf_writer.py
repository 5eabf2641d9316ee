"""A minimal PDF writer: pages of real text (Helvetica, WinAnsi) that pypdf can extract.

No PDF-writing library is installed, and the sample corpus and the loader tests need PDFs
whose text is known. This writes only what that needs: wrapped paragraphs on Letter pages,
one base-14 font (so nothing is embedded), a correct cross-reference table, and an optional
/Title. The output is byte-for-byte deterministic: no dates, no random ids.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

PAGE_WIDTH, PAGE_HEIGHT = 612, 792  # US Letter, in points
MARGIN = 72
FONT_SIZE = 11
LEADING = 14
# Helvetica at 11 pt averages about 5.5 pt a character: 468 pt of line holds about 85.
LINE_CHARS = 85
LINES_PER_PAGE = (PAGE_HEIGHT - 2 * MARGIN) // LEADING
NO_BREAK_SPACE = "\u00a0"


def text_pdf(pages: Sequence[Sequence[str]], *, title: str = "") -> bytes:
    """A PDF with the paragraphs of each entry of `pages`, starting each entry on a new page.

    Paragraphs are wrapped and separated by a blank line; an entry longer than a page
    continues on the next. Words joined by U+00A0 (no-break space) stay on one line, and
    the no-break space is written as a plain space, so a phrase can be kept findable.
    """
    sheets = [sheet for page in pages for sheet in _paginate(_layout(page))] or [[]]
    font_id, pages_id, first_page_id = 1, 2, 3
    objects: dict[int, bytes] = {
        font_id: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
        b"/Encoding /WinAnsiEncoding >>",
    }
    kids: list[bytes] = []
    for index, lines in enumerate(sheets):
        page_id, content_id = first_page_id + 2 * index, first_page_id + 2 * index + 1
        stream = _content_stream(lines)
        objects[page_id] = (
            f"<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> /Contents {content_id} 0 R >>"
        ).encode()
        objects[content_id] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
        kids.append(b"%d 0 R" % page_id)
    objects[pages_id] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    catalog_id = first_page_id + 2 * len(sheets)
    info_id = catalog_id + 1
    objects[catalog_id] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id
    objects[info_id] = b"<< /Title (%s) /Producer (Fanout) >>" % _pdf_string(title)
    return _assemble(objects, root=catalog_id, info=info_id)


def _layout(paragraphs: Sequence[str]) -> list[str]:
    """Wrapped lines, with a blank line between paragraphs."""
    lines: list[str] = []
    for paragraph in paragraphs:
        if lines:
            lines.append("")
        lines.extend(textwrap.wrap(paragraph, width=LINE_CHARS, break_on_hyphens=False) or [""])
    return lines


def _paginate(lines: list[str]) -> list[list[str]]:
    return [lines[i : i + LINES_PER_PAGE] for i in range(0, len(lines), LINES_PER_PAGE)] or [[]]


def _content_stream(lines: list[str]) -> bytes:
    top = PAGE_HEIGHT - MARGIN
    ops = [b"BT", b"/F1 %d Tf" % FONT_SIZE, b"%d TL" % LEADING, b"%d %d Td" % (MARGIN, top)]
    for number, line in enumerate(lines):
        if number:
            ops.append(b"T*")
        if line:
            ops.append(b"(%s) Tj" % _pdf_string(line))
    ops.append(b"ET")
    return b"\n".join(ops)


def _pdf_string(text: str) -> bytes:
    """`text` as the body of a PDF literal string in WinAnsi (cp1252); others become '?'."""
    raw = text.replace(NO_BREAK_SPACE, " ").encode("cp1252", errors="replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _assemble(objects: dict[int, bytes], *, root: int, info: int) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for object_id in sorted(objects):
        offsets[object_id] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (object_id, objects[object_id])
    xref_at = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for object_id in range(1, size):
        out += b"%010d 00000 n \n" % offsets[object_id]
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\n" % (size, root, info)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)
