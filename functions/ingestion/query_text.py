"""What search reads of a query, and of a chunk: words, phrases and identifiers.

A query is words, and "phrases in double quotes" (typographic quotes count too) that every
hit must hold. An odd quote mark has no partner: it is dropped and the words after it are
plain words (a defined fallback, so a stray quote is never an error). A query of only
quote marks and spaces is `InvalidArgument`.

Full-text search matches *terms*: each word, and each identifier (`sort_keys`,
`os.path.join`, `--batch-size`) both whole and split into its parts, so either finds it.
The same function makes the terms of a chunk (at ingestion) and of a query, and the index
splits terms at whitespace only, so an identifier stays one term. An identifier written in
a query must be in every full-text hit: `sort_keys` finds the page that has it before the
prose about sorting keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from functions.errors import InvalidArgument

TYPOGRAPHIC_QUOTES = "\u201c\u201d\u201e"
QUOTE_MARKS = str.maketrans(dict.fromkeys(TYPOGRAPHIC_QUOTES, '"'))
# A run of word characters, dots and hyphens: a word, or an identifier that holds separators.
_RUN = re.compile(r"[\w.\-]+")
_SEPARATORS = re.compile(r"[._\-]+")
_WORD = re.compile(r"\w")
# The full-text index drops longer terms (LanceDB's `max_token_length`).
MAX_TERM_CHARS = 40


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """`text`: the query without its quote marks (what is embedded and matched by terms);
    `phrases`: the quoted parts, each with its whitespace collapsed."""

    text: str
    phrases: tuple[str, ...] = ()


def parse_search_query(raw: str) -> ParsedQuery:
    parts = raw.translate(QUOTE_MARKS).split('"')
    if len(parts) % 2 == 0:  # an odd number of quote marks: the last one has no partner
        parts[-2:] = [parts[-2] + " " + parts[-1]]
    # Parts at odd indexes were inside quotes.
    phrases = tuple(
        dict.fromkeys(
            " ".join(part.split()) for part in parts[1::2] if _WORD.search(part) is not None
        )
    )
    text = " ".join(" ".join(parts).split())
    if not text:
        raise InvalidArgument("q has nothing to search for (only spaces and quote marks)")
    return ParsedQuery(text, phrases)


def search_terms(text: str) -> str:
    """The terms of `text`, separated by spaces: every word, and every identifier both
    whole (with a leading `--` or `-` kept, and without it) and as its parts."""
    terms: list[str] = []
    for run in _RUN.findall(text):
        core = run.strip(".-")
        if not core:
            continue
        parts = [part for part in _SEPARATORS.split(core) if part]
        if parts != [core]:
            terms.append(core)
            dashed = run.rstrip(".-")
            if dashed != core and dashed.startswith("-"):
                terms.append(dashed)  # a command-line option as written
        terms.extend(parts)
    return " ".join(terms)


def identifiers(text: str) -> list[str]:
    """The identifiers of a query as written (`sort_keys`, `--batch-size`): terms a hit of
    the full-text search must hold. One longer than the index keeps is left out."""
    found: list[str] = []
    for run in _RUN.findall(text):
        core = run.strip(".-")
        if core and _SEPARATORS.search(core):
            written = run.rstrip(".-") if run.startswith("-") else core
            if len(written) <= MAX_TERM_CHARS:
                found.append(written)
    return list(dict.fromkeys(found))


def phrase_pattern(phrase: str) -> str:
    """A regular expression (Rust's syntax, which LanceDB's filters use) matching `phrase`
    case-insensitively, across any whitespace, and not inside a longer word."""
    words = [_escape(word) for word in phrase.split()]
    start = r"\b" if _WORD.match(phrase[0]) else ""
    end = r"\b" if _WORD.match(phrase[-1]) else ""
    return "(?i)" + start + r"\s+".join(words) + end


def _escape(word: str) -> str:
    # Every ASCII character that is not a letter, digit or `_` is escaped; Rust's regex
    # accepts an escaped punctuation character as that character.
    return "".join(
        "\\" + char if char.isascii() and not (char.isalnum() or char == "_") else char
        for char in word
    )
