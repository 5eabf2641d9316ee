"""Bytes to text for the text-based formats: never fail, never drop the text.

UTF-8 (with or without a BOM) and BOM-marked UTF-16/32 are taken as they are. Anything else
goes to charset-normalizer, whose guesses are weak on short Western text (it reads
"café — naïve" in cp1252 as Ukrainian cp1125): when its best guess ties with cp1252, or
turns Latin words into mixed-script ones, cp1252 wins. cp1252 with replacement characters
is the last resort, so some text always comes out.
"""

from __future__ import annotations

import codecs
import re
import unicodedata

import charset_normalizer

UTF8 = "utf-8"
FALLBACK = "cp1252"
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig", UTF8),
    (codecs.BOM_UTF32_LE, "utf-32", "utf-32"),  # before UTF-16 LE: it starts the same
    (codecs.BOM_UTF32_BE, "utf-32", "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "utf-16"),
)
# An ASCII letter next to a non-ASCII character: where a wrong code page shows itself.
_LETTER_SEAM = re.compile(r"[A-Za-z][^\x00-\x7f]|[^\x00-\x7f][A-Za-z]")
# Enough text to judge a code page by; the scan stays cheap on huge files.
_SAMPLE_CHARS = 64 * 1024
# WHATWG: pages labelled Latin-1 or ASCII are decoded as windows-1252.
_DECLARED_ALIASES = {"iso8859_1": FALLBACK, "ascii": FALLBACK}


def normalise(text: str) -> str:
    """Newlines as '\\n', and no NUL characters (they end strings in many consumers)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def decode_text(data: bytes, *, declared: str = "") -> tuple[str, str]:
    """`data` as text and the name of the encoding used. `declared` is a charset the file
    states about itself (an HTML <meta charset>); it is used when the bytes are not UTF-8
    and decode cleanly with it."""
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            return data.decode(codec, errors="replace"), name
    try:
        return data.decode(UTF8), UTF8
    except UnicodeDecodeError:
        pass
    codec = _codec_name(declared)
    if codec:
        try:
            return data.decode(codec), codec
        except (UnicodeDecodeError, LookupError):  # LookupError: not a text codec (rot13)
            pass
    codec = _guess(data)
    return data.decode(codec, errors="replace"), codec


def _codec_name(label: str) -> str:
    """The Python codec for a charset label, or '' when Python does not know it."""
    if not label:
        return ""
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return ""
    name = name.replace("-", "_")
    if name.startswith(("utf_16", "utf_32")):
        return ""  # wrong without a BOM: such bytes could not hold the ASCII <meta> tag
    return _DECLARED_ALIASES.get(name, name)


def _guess(data: bytes) -> str:
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        return FALLBACK
    tied = {
        encoding
        for match in matches
        if match.chaos == best.chaos and match.coherence == best.coherence
        for encoding in match.could_be_from_charset
    }
    if FALLBACK in tied:
        return FALLBACK
    if _splits_latin_words(str(best)[:_SAMPLE_CHARS]) and _decodes(data, FALLBACK):
        return FALLBACK
    return str(best.encoding)


def _splits_latin_words(text: str) -> bool:
    """Whether some word mixes ASCII letters with letters of another script, as a wrong
    code page makes of accented Latin words ('café' read as 'cafщ')."""
    for seam in _LETTER_SEAM.finditer(text):
        pair = seam.group()
        char = pair[0] if pair[0] > "\x7f" else pair[1]
        if char.isalpha() and not unicodedata.name(char, "").startswith("LATIN"):
            return True
    return False


def _decodes(data: bytes, codec: str) -> bool:
    try:
        data.decode(codec)
    except UnicodeDecodeError:
        return False
    return True
