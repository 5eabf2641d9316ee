"""HTML (.html, .htm): the page's main text, with its h1-h6 as Markdown heading lines.

Navigation, scripts, forms, permalink marks (`¶`) and the like are removed first; the main
content is the first `main`, else the top-level `article`s, else `[role=main]`, else
`body`. The tree is walked iteratively (no recursion, so deep nesting cannot overflow the
stack), and each block element ends a paragraph.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from functions.ingestion.documents import Document
from functions.ingestion.loaders.builder import TextBuilder
from functions.ingestion.loaders.decoding import decode_text

DROPPED_TAGS = [
    "script", "style", "noscript", "nav", "header", "footer", "aside", "form", "template", "svg",
]  # fmt: skip
BLOCK_TAGS = frozenset({
    "address", "article", "blockquote", "body", "caption", "dd", "details", "dialog", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "hr", "li", "main", "ol", "p", "section",
    "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
})  # fmt: skip
HEADING_LEVELS = {f"h{level}": level for level in range(1, 7)}
# Permalinks sites put after headings and definitions (Sphinx and MkDocs `¶` or `#`,
# others `§` or a link symbol): a link to the page itself whose text is only such a mark.
PERMALINK_MARKS = frozenset({"", "¶", "#", "§", "🔗", "​"})
CELL_TAGS = frozenset({"td", "th"})
# A <meta charset> (or http-equiv content type) near the top; bounded, so it cannot backtrack.
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I
)
_META_WINDOW = 4096
# Marks a <br> among the collected inline text; NULs are taken out of the text itself.
_LINE_BREAK = "\x00"


def load_html(uri: str, data: bytes) -> Document:
    declared = _META_CHARSET.search(data[:_META_WINDOW])
    text, encoding = decode_text(data, declared=declared.group(1).decode() if declared else "")
    parser = LexborHTMLParser(text)
    title_node = parser.head.css_first("title") if parser.head is not None else None
    title = title_node.text() if title_node is not None else ""
    parser.strip_tags(DROPPED_TAGS, recursive=True)
    _drop_permalinks(parser)
    builder = TextBuilder()
    for root in _main_content(parser):
        _Walker(builder).walk(root)
    return builder.build(uri, title=title, encoding=encoding)


def _drop_permalinks(parser: LexborHTMLParser) -> None:
    for link in parser.css('a[href^="#"]'):
        if "headerlink" in (link.attributes.get("class") or "") or (
            link.text(deep=True).strip() in PERMALINK_MARKS
        ):
            link.decompose()


def _main_content(parser: LexborHTMLParser) -> list[LexborNode]:
    main = parser.css_first("main")
    if main is not None:
        return [main]
    articles = [node for node in parser.css("article") if not _inside_article(node)]
    if articles:
        return articles
    role_main = parser.css_first("[role=main]")
    if role_main is not None:
        return [role_main]
    return [parser.body] if parser.body is not None else []


def _inside_article(node: LexborNode) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag == "article":
            return True
        parent = parent.parent
    return False


class _Walker:
    """Collects inline text into paragraphs; block elements flush the paragraph."""

    def __init__(self, builder: TextBuilder) -> None:
        self._builder = builder
        self._inline: list[str] = []

    def walk(self, root: LexborNode) -> None:
        # (node, leaving): a block element is visited again on the way out, to end it.
        stack: list[tuple[LexborNode, bool]] = [(root, False)]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                self._flush()
            elif node.is_text_node:
                self._inline.append((node.text_content or "").replace(_LINE_BREAK, ""))
            elif node.is_element_node:
                stack.extend(self._enter(node))
        self._flush()

    def _enter(self, node: LexborNode) -> list[tuple[LexborNode, bool]]:
        """Handle an element; returns what to visit next, in reverse (stack) order."""
        tag = node.tag or ""
        if tag in HEADING_LEVELS:
            self._flush()
            self._builder.add_heading(HEADING_LEVELS[tag], node.text())
            return []
        if tag == "pre":
            self._flush()
            self._builder.add_block(node.text(), keep_indent=True)
            return []
        if tag == "br":
            self._inline.append(_LINE_BREAK)
            return []
        if tag in CELL_TAGS:
            self._inline.append(" ")
        visits: list[tuple[LexborNode, bool]] = []
        if tag in BLOCK_TAGS:
            self._flush()
            visits.append((node, True))
        children: list[LexborNode] = []
        child = node.first_child
        while child is not None:
            children.append(child)
            child = child.next
        visits.extend((child, False) for child in reversed(children))
        return visits

    def _flush(self) -> None:
        if not self._inline:
            return
        # Collapse whitespace as a browser would, keeping <br> line breaks.
        lines = "".join(self._inline).split(_LINE_BREAK)
        self._inline.clear()
        self._builder.add_block("\n".join(" ".join(line.split()) for line in lines if line.strip()))
