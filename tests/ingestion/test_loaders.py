"""The document loaders: text, structure and offsets per format, and how broken, empty,
non-UTF-8 and huge files are handled. Inputs are built here, in memory."""

from __future__ import annotations

import io
import json
import logging
import time
import zipfile

import docx
import pytest
from pypdf import PdfReader, PdfWriter

from functions.errors import ItemFailed, ItemSkipped
from functions.ingestion.documents import Document, SourceItem
from functions.ingestion.loaders import load_document, supported_suffixes
from functions.local.pdf_writer import text_pdf

WESTERN = "café — naïve"
HUGE_CHARS = 5 * 1024 * 1024
# A linear loader takes well under a second; a quadratic scan or a backtracking regex takes
# minutes on 5 MB. The bound sits between, far from both: a loaded 2-core machine (the
# whole suite on two workers beside other work) once took 3.2 s here.
HUGE_SECONDS = 20.0


def load(name: str, data: bytes, content_type: str = "", **options: str) -> Document:
    return load_document(
        SourceItem(f"gs://bucket/docs/{name}", len(data), content_type), data, **options
    )


def heading_lines(doc: Document) -> list[str]:
    """Each heading's line in the text, found through its offset."""
    return [doc.text[h.offset :].split("\n", 1)[0] for h in doc.headings]


def docx_bytes(document: docx.document.Document) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# --- dispatch -----------------------------------------------------------------------


def test_supported_suffixes_cover_every_format() -> None:
    assert supported_suffixes() == {
        ".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".json", ".jsonl", ".ndjson",
    }  # fmt: skip


def test_unknown_suffix_without_known_content_type_is_skipped() -> None:
    with pytest.raises(ItemSkipped, match=r"diagram\.xyz: no loader .*'\.xyz'"):
        load("diagram.xyz", b"<xyz/>", "application/octet-stream")


def test_unknown_suffix_falls_back_to_the_content_type() -> None:
    doc = load("export.bin", b"# Notes\n\nbody\n", "text/markdown; charset=utf-8")
    assert heading_lines(doc) == ["# Notes"]


def test_no_suffix_and_html_content_type_loads_as_html() -> None:
    doc = load("page", b"<p>Hello</p><script>x()</script>", "text/html")
    assert doc.text == "Hello"


def test_suffix_is_matched_case_insensitively_and_wins_over_content_type() -> None:
    doc = load("NOTES.MD", b"# Title\n", "application/pdf")
    assert doc.headings[0].title == "Title"


def test_local_absolute_paths_dispatch_like_gs_uris() -> None:
    item = SourceItem("/srv/corpus/a.b/notes.txt", 5)
    assert load_document(item, b"hello").text == "hello"


@pytest.mark.parametrize("suffix", sorted(supported_suffixes()))
@pytest.mark.parametrize("data", [b"", b"  \n\t\r\n "], ids=["zero-bytes", "whitespace"])
def test_empty_file_of_any_type_is_a_document_with_no_text(suffix: str, data: bytes) -> None:
    doc = load(f"empty{suffix}", data)
    assert doc.text == "" and doc.headings == () and doc.pages == ()


# --- plain text ---------------------------------------------------------------------


def test_text_is_kept_as_is_and_has_no_headings() -> None:
    doc = load("notes.txt", b"# not a heading in plain text\n\nSecond paragraph.\n")
    assert doc.text == "# not a heading in plain text\n\nSecond paragraph.\n"
    assert doc.headings == () and doc.encoding == "utf-8"


def test_text_newlines_are_normalised_and_nul_characters_removed() -> None:
    doc = load("notes.txt", b"one\r\ntwo\rthree\x00 four\n")
    assert doc.text == "one\ntwo\nthree four\n"


def test_utf8_bom_is_dropped() -> None:
    doc = load("notes.txt", b"\xef\xbb\xbfhello")
    assert doc.text == "hello" and doc.encoding == "utf-8"


def test_utf16_with_bom_is_decoded() -> None:
    doc = load("notes.txt", "héllo wörld".encode("utf-16"))
    assert doc.text == "héllo wörld" and doc.encoding == "utf-16"


@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_cp1252_text_is_decoded_and_the_encoding_reported(suffix: str) -> None:
    doc = load(f"legacy{suffix}", f"Le {WESTERN} résumé.\r\n".encode("cp1252"))
    assert doc.text == f"Le {WESTERN} résumé.\n"
    assert doc.encoding == "cp1252"


def test_cyrillic_code_page_is_not_mistaken_for_cp1252() -> None:
    text = "Привет, мир. Это простой текст в кодировке Windows."
    doc = load("ru.txt", text.encode("cp1251"))
    assert doc.text == text and doc.encoding == "cp1251"


def test_undecodable_bytes_still_give_text() -> None:
    doc = load("noise.txt", b"start " + bytes(range(0x80, 0x100)) + b" end")
    assert doc.text.startswith("start ") and doc.text.endswith(" end")


@pytest.mark.parametrize(
    ("name", "encoding"), [("big.txt", "utf-8"), ("big.md", "utf-8"), ("legacy.txt", "cp1252")]
)
def test_a_single_huge_line_loads_fast_and_whole(name: str, encoding: str) -> None:
    line = ("# " if name.endswith(".md") else "") + "naïve " * (HUGE_CHARS // 6)
    started = time.perf_counter()
    doc = load(name, line.encode(encoding))
    assert time.perf_counter() - started < HUGE_SECONDS
    assert doc.text == line and doc.encoding == encoding


# --- Markdown -----------------------------------------------------------------------


def test_markdown_atx_headings_have_levels_titles_and_line_offsets() -> None:
    text = (
        "# Guide\n\nIntro.\n\n## Setup ##\n\nSteps.\n\n  ### Indented a little\n"
        "#hashtag is text\n    # four spaces is code\n###### Six\n####### seven is text\n"
    )
    doc = load("guide.md", text.encode())
    assert [(h.level, h.title) for h in doc.headings] == [
        (1, "Guide"), (2, "Setup"), (3, "Indented a little"), (6, "Six"),
    ]  # fmt: skip
    assert heading_lines(doc) == ["# Guide", "## Setup ##", "  ### Indented a little", "###### Six"]
    assert doc.title == "Guide" and doc.text == text


def test_markdown_headings_inside_fenced_code_are_not_headings() -> None:
    text = (
        "# Real\n```python\n# a comment\n~~~\n# still code\n```\n## After backticks\n"
        "~~~~\n# code\n~~~\n# code too, the fence needs four tildes\n~~~~\n### After tildes\n"
        "```\n# an unclosed fence runs to the end\n"
    )
    doc = load("code.md", text.encode())
    assert [h.title for h in doc.headings] == ["Real", "After backticks", "After tildes"]


def test_markdown_offsets_point_into_the_normalised_text() -> None:
    doc = load("crlf.md", b"# One\r\n\r\nText\x00 here\r\n\r\n## Two\r\n")
    assert doc.text == "# One\n\nText here\n\n## Two\n"
    assert heading_lines(doc) == ["# One", "## Two"]


# --- HTML ---------------------------------------------------------------------------

PAGE = b"""<!DOCTYPE html><html><head><meta charset="utf-8"><title> Backoff
  guide </title><style>p { color: red }</style><script>var tracking = 1;</script></head>
<body>
<header><a href="/">Site name</a><nav><a href="/a">Menu item</a></nav></header>
<aside>Sidebar links</aside>
<main>
  <h1>Exponential backoff</h1>
  <p>Wait <em>longer</em> after
     each failure.<br>Up to a cap.</p>
  <form><label>Search box</label></form>
  <section><h2>Limits</h2><ul><li>max attempts</li><li>max duration</li></ul>
  <noscript>Enable JavaScript</noscript><template><p>Template text</p></template>
  <svg><title>Icon title</title></svg>
  <table><tr><th>name</th><td>value</td></tr></table>
  <pre>  indented
    code</pre></section>
</main>
<footer>Copyright footer</footer><script>track();</script>
</body></html>"""


def test_html_keeps_the_main_text_with_markdown_headings_and_drops_the_chrome() -> None:
    doc = load("guide.html", PAGE)
    assert doc.text == (
        "# Exponential backoff\n\nWait longer after each failure.\nUp to a cap.\n\n"
        "## Limits\n\nmax attempts\n\nmax duration\n\nname value\n\n  indented\n    code"
    )
    assert [(h.level, h.title) for h in doc.headings] == [(1, "Exponential backoff"), (2, "Limits")]
    assert heading_lines(doc) == ["# Exponential backoff", "## Limits"]
    assert doc.title == "Backoff guide"


def test_html_headings_and_definitions_lose_their_permalink_marks() -> None:
    """Sphinx's `¶` (and newer Sphinx's and MkDocs' `#`) permalinks are not part of a
    title; a link into the page with words of its own is kept."""
    page = (
        '<main><h1>Sorting HOW TO<a class="headerlink" href="#sorting" title="Permalink">¶</a>'
        '</h1><h2>Key Functions<a class="headerlink" href="#key">#</a></h2>'
        '<dl><dt id="f">sorted(iterable, key=None)<a class="headerlink" href="#f">¶</a></dt>'
        '<dd><p>See <a href="#key">Key Functions</a> and '
        '<a href="#x" aria-label="link">§</a>.</p></dd></dl></main>'
    )
    doc = load("sorting.html", page.encode())
    assert [h.title for h in doc.headings] == ["Sorting HOW TO", "Key Functions"]
    assert doc.text == (
        "# Sorting HOW TO\n\n## Key Functions\n\nsorted(iterable, key=None)\n\n"
        "See Key Functions and ."
    )


@pytest.mark.parametrize(
    "body",
    [
        "<nav>menu</nav><main><p>kept</p></main><article><p>other</p></article>",
        "<nav>menu</nav><article><p>kept</p></article><div><p>other</p></div>",
        '<nav>menu</nav><div role="main"><p>kept</p></div><div><p>other</p></div>',
        "<nav>menu</nav><div><p>kept</p></div><footer>foot</footer>",
    ],
    ids=["main", "article", "role-main", "body"],
)
def test_html_main_content_is_main_then_article_then_role_main_then_body(body: str) -> None:
    assert load("page.html", f"<html><body>{body}</body></html>".encode()).text == "kept"


def test_html_takes_every_top_level_article_when_there_is_no_main() -> None:
    page = b"<body><article><p>one</p><article><p>nested</p></article></article>"
    page += b"<aside><article>sidebar card</article></aside><article><p>two</p></article>"
    assert load("list.html", page).text == "one\n\nnested\n\ntwo"


@pytest.mark.parametrize("label", ["windows-1252", "iso-8859-1"])
def test_html_meta_charset_is_respected(label: str) -> None:
    page = f'<html><head><meta charset="{label}"></head><body><p>{WESTERN}</p></body></html>'
    doc = load("legacy.html", page.encode("cp1252"))
    assert doc.text == WESTERN and doc.encoding == "cp1252"


def test_html_without_charset_is_decoded_like_text() -> None:
    doc = load("legacy.htm", f"<p>Le {WESTERN} résumé.</p>".encode("cp1252"))
    assert doc.text == f"Le {WESTERN} résumé." and doc.encoding == "cp1252"


def test_malformed_html_still_loads() -> None:
    doc = load("broken.html", b"<html><body><p>unclosed <b>bold <div>block</p></span>\x00tail")
    assert doc.text == "unclosed bold\n\nblock\n\ntail"


def test_deeply_nested_html_does_not_overflow_the_stack() -> None:
    page = "<div>" * 5000 + "deep text" + "</div>" * 5000
    assert load("deep.html", page.encode()).text == "deep text"


def test_html_single_huge_line_loads_fast_and_whole() -> None:
    words = "word " * (HUGE_CHARS // 5)
    started = time.perf_counter()
    doc = load("huge.html", f"<html><body><p>{words}</p></body></html>".encode())
    assert time.perf_counter() - started < HUGE_SECONDS
    assert doc.text == words.strip()


# --- PDF ----------------------------------------------------------------------------


def test_pdf_pages_are_joined_by_blank_lines_and_marked_at_their_start() -> None:
    data = text_pdf(
        [["Page one text."], ["Page two text.", "Second paragraph."], ["Page three text."]],
        title="Three pages",
    )
    doc = load("report.pdf", data)
    assert [p.number for p in doc.pages] == [1, 2, 3]
    starts = [doc.text[p.offset :].split("\n", 1)[0] for p in doc.pages]
    assert starts == ["Page one text.", "Page two text.", "Page three text."]
    assert "\n\nPage two text.\nSecond paragraph.\n\nPage three" in doc.text
    assert doc.title == "Three pages" and doc.headings == ()


def test_pdf_with_winansi_text_round_trips() -> None:
    doc = load("accents.pdf", text_pdf([[f"{WESTERN} (with parentheses) and a \\ backslash"]]))
    assert doc.text == f"{WESTERN} (with parentheses) and a \\ backslash"


def test_truncated_pdf_fails_and_says_why() -> None:
    data = text_pdf([["Some text."]])
    with pytest.raises(ItemFailed, match=r"report\.pdf: not a valid PDF: EOF marker not found"):
        load("report.pdf", data[: len(data) // 2])


def test_file_that_is_not_a_pdf_fails() -> None:
    with pytest.raises(ItemFailed, match="not a valid PDF"):
        load("fake.pdf", b"GIF89a this is an image, not a PDF")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_pdf_warnings_do_not_reach_the_application_log() -> None:
    """pypdf logs a warning per defect; the loader reports them through ItemFailed only."""
    collect = _Collect()
    logging.getLogger().addHandler(collect)
    try:
        with pytest.raises(ItemFailed, match="EOF marker not found"):
            load("report.pdf", b"%PDF-1.4\n garbage with no objects and no EOF marker")
    finally:
        logging.getLogger().removeHandler(collect)
    assert [r.getMessage() for r in collect.records if r.name.startswith("pypdf")] == []


def _encrypted(user_password: str, owner_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf([["Secret text."]]))))
    writer.encrypt(user_password, owner_password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_encrypted_pdf_fails_as_encrypted() -> None:
    with pytest.raises(ItemFailed, match=r"locked\.pdf is encrypted"):
        load("locked.pdf", _encrypted("user-secret", "owner-secret"))


def test_pdf_with_only_an_owner_password_opens_with_the_empty_password() -> None:
    assert load("restricted.pdf", _encrypted("", "owner-secret")).text == "Secret text."


# --- DOCX ---------------------------------------------------------------------------


def test_docx_paragraphs_headings_and_tables_come_in_document_order() -> None:
    document = docx.Document()
    document.add_paragraph("Quarterly review", style="Title")
    document.add_heading("Findings", level=1)
    document.add_paragraph("Retries\tdoubled.")
    document.add_heading("Details", level=2)
    table = document.add_table(rows=2, cols=3)
    for cell, text in zip(table.rows[0].cells, ["name", "value", "note"], strict=True):
        cell.text = text
    merged = table.cell(1, 0).merge(table.cell(1, 1))
    merged.text = "spans two"
    table.cell(1, 2).text = "last"
    document.add_paragraph("")
    document.add_paragraph("After the table.")
    doc = load("review.docx", docx_bytes(document))
    assert doc.text == (
        "# Quarterly review\n\n# Findings\n\nRetries\tdoubled.\n\n## Details\n\n"
        "name | value | note\nspans two | last\n\nAfter the table."
    )
    assert [(h.level, h.title) for h in doc.headings] == [
        (1, "Quarterly review"), (1, "Findings"), (2, "Details"),
    ]  # fmt: skip
    assert heading_lines(doc) == ["# Quarterly review", "# Findings", "## Details"]
    assert doc.title == "Quarterly review"


def test_docx_title_comes_from_the_core_properties_first() -> None:
    document = docx.Document()
    document.core_properties.title = "Property title"
    document.add_paragraph("Body.")
    assert load("titled.docx", docx_bytes(document)).title == "Property title"


def test_file_that_is_not_a_zip_fails_as_not_a_docx() -> None:
    with pytest.raises(ItemFailed, match=r"notes\.docx: not a valid DOCX file: not a ZIP archive"):
        load("notes.docx", b"plain text pretending to be a Word file")


def test_docx_missing_its_main_part_fails_and_names_it() -> None:
    source = zipfile.ZipFile(io.BytesIO(docx_bytes(docx.Document())))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            if name != "word/document.xml":
                target.writestr(name, source.read(name))
    with pytest.raises(ItemFailed, match=r"missing part: .*word/document\.xml"):
        load("gutted.docx", out.getvalue())


def test_docx_with_malformed_xml_fails_without_a_library_exception() -> None:
    source = zipfile.ZipFile(io.BytesIO(docx_bytes(docx.Document())))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            body = b"<w:document oops" if name == "word/document.xml" else source.read(name)
            target.writestr(name, body)
    with pytest.raises(ItemFailed, match=r"bad\.docx: not a valid DOCX file: \S"):
        load("bad.docx", out.getvalue())


# --- JSON and JSON Lines ------------------------------------------------------------

RECORDS = [
    {"title": "First", "text": "Alpha body."},
    {"id": 2, "note": "no text field: skipped, but still record 2"},
    {"text": "Untitled body."},
    {"title": "Third", "text": "Gamma\r\nbody."},
]


def test_json_array_records_become_titled_sections_marked_by_record_number() -> None:
    doc = load("records.json", json.dumps(RECORDS).encode())
    assert doc.text == ("# First\n\nAlpha body.\n\nUntitled body.\n\n# Third\n\nGamma\nbody.")
    assert [p.number for p in doc.pages] == [1, 3, 4]
    starts = [doc.text[p.offset :].split("\n", 1)[0] for p in doc.pages]
    assert starts == ["# First", "Untitled body.", "# Third"]
    assert heading_lines(doc) == ["# First", "# Third"]


def test_json_single_object_is_one_record() -> None:
    doc = load("one.json", b'{"title": "Only", "text": "Body."}')
    assert doc.text == "# Only\n\nBody." and [p.number for p in doc.pages] == [1]


def test_json_text_field_is_configurable() -> None:
    doc = load("docs.json", b'[{"body": "From body."}, {"text": "ignored"}]', text_field="body")
    assert doc.text == "From body."


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_records_without_the_text_field_fail(suffix: str) -> None:
    data = b'{"title": "No text"}\n{"text": 5}\n'
    if suffix == ".json":
        data = b'[{"title": "No text"}, {"text": 5}]'
    with pytest.raises(ItemFailed, match=r"no record has a 'text' text field"):
        load(f"empty{suffix}", data)


def test_invalid_json_fails_with_its_position() -> None:
    with pytest.raises(ItemFailed, match=r"bad\.json: not valid JSON: .*\(line 2, column \d+\)"):
        load("bad.json", b'[{"text": "a"},\n {"text": }]')


def test_json_that_is_not_an_object_or_array_fails() -> None:
    with pytest.raises(ItemFailed, match="expected a JSON object or an array of objects"):
        load("scalar.json", b'"just a string"')


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson"])
def test_jsonl_one_record_per_non_blank_line(suffix: str) -> None:
    data = "\n".join(json.dumps(record) for record in RECORDS).replace("\n", "\n\n", 1)
    doc = load(f"records{suffix}", data.encode())
    assert doc.text == "# First\n\nAlpha body.\n\nUntitled body.\n\n# Third\n\nGamma\nbody."
    assert [p.number for p in doc.pages] == [1, 3, 4]


def test_invalid_jsonl_line_fails_with_its_line_number() -> None:
    data = b'{"text": "fine"}\n\n{"text": "broken"\n'
    with pytest.raises(ItemFailed, match=r"bad\.jsonl: not valid JSON Lines: line 3: "):
        load("bad.jsonl", data)


def test_cp1252_jsonl_is_decoded() -> None:
    line = json.dumps({"title": "Café", "text": f"Le {WESTERN} résumé."}, ensure_ascii=False)
    doc = load("legacy.jsonl", line.encode("cp1252"))
    assert doc.text == f"# Café\n\nLe {WESTERN} résumé." and doc.encoding == "cp1252"


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_records_single_huge_line_loads_fast_and_whole(suffix: str) -> None:
    body = "word " * (HUGE_CHARS // 5)
    started = time.perf_counter()
    doc = load(f"huge{suffix}", json.dumps({"text": body}).encode())
    assert time.perf_counter() - started < HUGE_SECONDS
    assert doc.text == body.strip()


# --- damage of any kind -------------------------------------------------------------


def _samples() -> dict[str, bytes]:
    document = docx.Document()
    document.add_heading("Heading", level=1)
    document.add_paragraph("Body text.")
    records = [{"title": "One", "text": "Body."}, {"title": "Two", "text": "More."}]
    return {
        "a.pdf": text_pdf([["Page one."], ["Page two."]], title="Sample"),
        "a.docx": docx_bytes(document),
        "a.json": json.dumps(records).encode(),
        "a.jsonl": "\n".join(json.dumps(record) for record in records).encode(),
    }


@pytest.mark.parametrize(("name", "data"), sorted(_samples().items()))
def test_truncated_files_fail_as_item_failed_never_as_a_library_error(
    name: str, data: bytes
) -> None:
    """Cut at many points, each file either still loads or fails with a one-line message."""
    messages = []
    for cut in range(1, 20):
        try:
            load(name, data[: len(data) * cut // 20])
        except ItemFailed as failure:
            messages.append(failure.message)
    assert messages
    assert all(m.startswith(f"{name}") and "\n" not in m for m in messages), messages


def test_json_nested_past_the_recursion_limit_fails_as_item_failed() -> None:
    with pytest.raises(ItemFailed, match=r"deep\.json: not a valid JSON file: .*recursion"):
        load("deep.json", b"[" * 100_000)
