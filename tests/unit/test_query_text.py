"""How a search query is read: phrases, the fallback for an unpaired quote, the refusal of
a query of only quotes, and the terms identifiers give the full-text index."""

from __future__ import annotations

import re

import pytest

from functions.errors import InvalidArgument
from functions.ingestion.query_text import (
    ParsedQuery,
    identifiers,
    parse_search_query,
    phrase_pattern,
    search_terms,
)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("exactly once", ParsedQuery("exactly once")),
        ('"exactly once"', ParsedQuery("exactly once", ("exactly once",))),
        ('a "b  c" d "e"', ParsedQuery("a b c d e", ("b c", "e"))),
        ("\u201cexactly once\u201d now", ParsedQuery("exactly once now", ("exactly once",))),
        ('"x" "x"', ParsedQuery("x x", ("x",))),
        # An unpaired quote is dropped; what follows it is plain words.
        ('guarantee "exactly once', ParsedQuery("guarantee exactly once")),
        ('"a b" "c', ParsedQuery("a b c", ("a b",))),
        ('"a b" "" c', ParsedQuery("a b c", ("a b",))),
        # Symbols are searched (by meaning), but a phrase needs a word.
        ('"?!"', ParsedQuery("?!")),
    ],
)
def test_queries_are_words_and_quoted_phrases(raw: str, parsed: ParsedQuery) -> None:
    assert parse_search_query(raw) == parsed


@pytest.mark.parametrize("raw", ['"', '""', '" "', '"""', "\u201c\u201d", "\u201e \u201d", "  "])
def test_a_query_of_only_quotes_is_refused(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="nothing to search for"):
        parse_search_query(raw)


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("Sorting keys.", "Sorting keys"),
        ("json.dumps(obj, sort_keys=True)", "json.dumps json dumps obj sort_keys sort keys True"),
        ("call os.path.join.", "call os.path.join os path join"),
        ("The --batch-size option", "The batch-size --batch-size batch size option"),
        ("__init__ and -v", "__init__ init and v"),
    ],
)
def test_identifiers_are_terms_whole_and_in_parts(text: str, terms: str) -> None:
    assert search_terms(text) == terms


def test_a_query_requires_the_identifiers_it_writes() -> None:
    assert identifiers("how is sort_keys used with json.dumps()?") == ["sort_keys", "json.dumps"]
    assert identifiers("--batch-size or batch-size") == ["--batch-size", "batch-size"]
    assert identifiers("plain words only") == []
    assert identifiers("a" * 30 + "_" + "b" * 30) == []  # longer than the index keeps


@pytest.mark.parametrize(
    ("phrase", "matches", "misses"),
    [
        ("exactly once", ["Exactly\n  once.", "is exactly once"], ["inexactly once", "exactly1"]),
        ("os.path.join(", ["os.path.join(a)"], ["osXpathXjoin("]),
        ("a+b (c)", ["x a+b (c) y"], ["aab (c)"]),
    ],
)
def test_phrases_match_across_whitespace_and_literally(
    phrase: str, matches: list[str], misses: list[str]
) -> None:
    """Python's `re` reads these patterns as LanceDB's Rust regex does (the syntax used is
    common to both)."""
    pattern = re.compile(phrase_pattern(phrase))
    assert all(pattern.search(text) for text in matches)
    assert not any(pattern.search(text) for text in misses)
