"""The sample corpus: a few hundred files in every supported format, built from the seed
Markdown files in `samples/corpus/`, for `make run`, the tests and the benchmarks.

Each generated document is about one seed topic: the seed's own paragraphs, general
sections about running jobs, and a related topic. Each holds exactly one unique phrase
("Ticket 48213, filed by the Halvorsen team, ...") so a search for it must find that file
and no other. Three files are there to be refused: a broken PDF, an oversized text file,
and a file of an unknown type. Output is deterministic for a seed, byte for byte.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import io
import json
import random
import re
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import docx

from functions.local.pdf_writer import NO_BREAK_SPACE, text_pdf

SEED_DIR = Path(__file__).resolve().parents[2] / "samples" / "corpus"
# A dotfile: the local source does not list it, so it is not ingested as JSON.
MANIFEST_NAME = ".manifest.json"
FORMATS = ("md", "txt", "html", "pdf", "docx", "json", "jsonl")
# One round per topic: Markdown most often, one each of the structured formats.
ROUND = ("md", "md", "md", "txt", "txt", "html", "html", "pdf", "pdf", "docx", "json", "jsonl")
MISC_DIR = "misc"
BROKEN_PDF = f"{MISC_DIR}/scanned-invoice.pdf"
OVERSIZED = f"{MISC_DIR}/oversized-export.txt"
UNKNOWN = f"{MISC_DIR}/diagram.xyz"
# docx dates and ZIP member times, so that two runs write identical bytes.
FIXED_TIME = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
ZIP_DOS_TIME = (0, (2024 - 1980) << 9 | 1 << 5 | 1)  # MS-DOS time and date fields
ZIP_END_SIGNATURE = b"PK\x05\x06"


@dataclass(frozen=True)
class CorpusFile:
    """One generated file: its path (relative to the corpus root), its format, and the
    phrase only its text holds (None for the files meant to be refused)."""

    path: str
    format: str
    phrase: str | None


@dataclass(frozen=True)
class _Section:
    heading: str
    paragraphs: tuple[str, ...]
    bullets: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Seed:
    topic: str
    title: str
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class _Doc:
    topic: str
    title: str
    sections: tuple[_Section, ...]
    phrase: str
    variant: int  # picks among each format's layouts


def generate(
    dest: Path, *, target_bytes: int = 0, oversized_bytes: int = 33 * 1024 * 1024, seed: int = 7
) -> list[CorpusFile]:
    """Write the corpus under `dest` and return its manifest (also in `dest/.manifest.json`).

    One round of formats per seed topic; with `target_bytes`, more rounds until the files
    (not counting the oversized one) add up to that many bytes. Files a previous run listed
    in its manifest and this run does not write are removed; nothing else is touched.
    """
    seeds = _read_seeds(SEED_DIR)
    renderers = _renderers()
    previous = _previous_paths(dest)
    files: list[CorpusFile] = []
    total = 0
    index = 0
    round_number = 0
    while round_number < len(seeds) or total < target_bytes:
        topic_seed = seeds[round_number % len(seeds)]
        for position, fmt in enumerate(ROUND):
            rng = random.Random(f"{seed}:{index}")
            # Round plus position: over the rounds, each format meets each of its layouts.
            variant = round_number + position
            doc = _compose(topic_seed, seeds, rng, _phrase(index, seed, rng), variant)
            path = f"{doc.topic}/{_slug(doc.title)}-{index:05d}.{fmt}"
            total += _write(dest / path, renderers[fmt](doc))
            files.append(CorpusFile(path, fmt, doc.phrase))
            index += 1
        round_number += 1
    rng = random.Random(f"{seed}:misc")
    total += _write(dest / BROKEN_PDF, _broken_pdf(seeds[0], rng))
    files.append(CorpusFile(BROKEN_PDF, "broken-pdf", None))
    total += _write(dest / UNKNOWN, _unknown_file(rng))
    files.append(CorpusFile(UNKNOWN, "unknown", None))
    _write_oversized(dest / OVERSIZED, oversized_bytes, seeds)
    files.append(CorpusFile(OVERSIZED, "oversized", None))
    for stale in previous - {file.path for file in files}:
        (dest / stale).unlink(missing_ok=True)
    manifest = json.dumps([asdict(file) for file in files], indent=1)
    (dest / MANIFEST_NAME).write_text(manifest + "\n", encoding="utf-8")
    return files


# --- content -------------------------------------------------------------------------

_TITLE_FORMS = (
    "{title}",
    "{title} in practice",
    "Field notes: {title}",
    "{title}: a short guide",
    "Runbook: {title}",
    "{title}, reviewed",
    "Design review: {title}",
)
_SECTION_HEADINGS = (
    "In practice",
    "Failure modes",
    "What to measure",
    "Design notes",
    "Operational notes",
    "Trade-offs",
    "Common mistakes",
    "Testing it",
    "Open questions",
)
_SENTENCES = (
    "Most incidents in this area start small: one slow dependency, one retry too many.",
    "Write the expected behaviour down before tuning it; numbers only mean something "
    "against a baseline.",
    "A dashboard with counts of finished, failed and skipped pieces answers most questions.",
    "Tests should pin the failure cases as carefully as the happy path.",
    "When in doubt, prefer the design that can be run again safely.",
    "The local stack reproduces this behaviour with the same code, which makes it cheap to try.",
    "Limits belong next to the code that depends on them, with the reason they were chosen.",
    "Operators need a way to tell a slow job from a stuck one.",
    "Every setting here has a default that suits small jobs and a reason to change it for "
    "large ones.",
    "Log one line per decision, with the job and batch ids, so a query can follow one piece.",
    "A timeout should be shorter than the lease that protects the work.",
    "A change here deserves a load test at ten times the usual volume.",
    "The cheapest fix is often to make the operation idempotent and let it repeat.",
    "Counting the same event twice is a bug that hides until the numbers stop adding up.",
    "Keep the unit of work small enough that losing one costs seconds, not hours.",
    "Alert on the symptom a user sees, and keep the causes on the dashboard.",
    "Document what happens when a worker dies halfway, because one eventually will.",
    "A second opinion from the on-call engineer catches most of the surprises.",
    "Quotas differ between projects and regions, so read them from the console, not memory.",
    "Backfills use the same path as daily jobs, only with more items and more patience.",
)
_BULLETS = (
    "Check the dead-letter count after each deploy",
    "Record the job id in every log line",
    "Keep batch sizes below the request limit",
    "Set a maximum number of attempts",
    "Make every write safe to repeat",
    "Review the retry policy once a quarter",
    "Alert when a job has not moved for an hour",
    "Delete finished jobs after the retention period",
)
_NAMES = (
    "Halvorsen", "Okafor", "Marchetti", "Lindqvist", "Tanaka", "Duarte", "Novak", "Achterberg",
    "Brannigan", "Castellanos", "Delacroix", "Eriksen", "Fontaine", "Galloway", "Haddad",
    "Ishikawa", "Jovanovic", "Kowalczyk", "Larrabee", "Montague", "Nakashima", "Oyelaran",
    "Pemberton", "Quintero", "Rasmussen", "Szabo", "Thorvaldsen", "Underhill", "Valdivia",
    "Whitcombe", "Yamamoto", "Zielinski",
)  # fmt: skip
_PHRASES = (
    "The {name} ledger entry {number} records this case.",
    "Ticket {number}, filed by the {name} team, describes the same behaviour.",
    "Field report {number} from the {name} site confirms this.",
    "In the {name} review, case {number} was the deciding example.",
    "Runbook step {number} was added after the {name} incident.",
)
_PHRASE_NUMBERS = 90_000  # five-digit numbers, each used once


def _read_seeds(folder: Path) -> list[_Seed]:
    seeds = []
    for path in sorted(folder.glob("*.md")):
        blocks = [b.strip() for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]
        title = next((b.lstrip("#").strip() for b in blocks if b.startswith("#")), path.stem)
        paragraphs = tuple(" ".join(b.split()) for b in blocks if not b.startswith("#"))
        seeds.append(_Seed(path.stem, title, paragraphs or (title,)))
    if not seeds:
        raise FileNotFoundError(f"no seed Markdown files in {folder}")
    return seeds


def _phrase(index: int, seed: int, rng: random.Random) -> str:
    """A sentence no other file holds: its number is unique to `index`."""
    if index < _PHRASE_NUMBERS:
        # 7919 is prime and does not divide 90000: a permutation of the five-digit numbers.
        number = 10_000 + (index * 7919 + seed * 104_729) % _PHRASE_NUMBERS
    else:
        number = 10_000 + index  # beyond the permutation: six digits, still unique
    return rng.choice(_PHRASES).format(name=rng.choice(_NAMES), number=number)


def _compose(
    topic: _Seed, seeds: Sequence[_Seed], rng: random.Random, phrase: str, variant: int
) -> _Doc:
    sections = [_Section("Overview", topic.paragraphs)]
    pool = rng.sample(_SENTENCES, len(_SENTENCES))  # no sentence twice in one document
    for heading in rng.sample(_SECTION_HEADINGS, rng.randint(2, 4)):
        sentences = [pool.pop() for _ in range(rng.randint(3, 5))]
        bullets = tuple(rng.sample(_BULLETS, 3)) if heading == "Operational notes" else ()
        cut = rng.randint(1, len(sentences) - 1)
        halves = (" ".join(sentences[:cut]), " ".join(sentences[cut:]))
        sections.append(_Section(heading, halves, bullets))
    related = rng.choice([s for s in seeds if s.topic != topic.topic] or [topic])
    sections.append(_Section(f"Related: {related.title}", related.paragraphs))
    # The phrase ends one paragraph, anywhere in the document.
    target = rng.randrange(len(sections))
    paragraphs = list(sections[target].paragraphs)
    spot = rng.randrange(len(paragraphs))
    paragraphs[spot] = f"{paragraphs[spot]} {phrase}"
    sections[target] = _Section(
        sections[target].heading, tuple(paragraphs), sections[target].bullets
    )
    title = rng.choice(_TITLE_FORMS).format(title=topic.title)
    return _Doc(topic.topic, title, tuple(sections), phrase, variant)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def _section_text(section: _Section) -> str:
    bullets = "\n".join(f"- {item}" for item in section.bullets)
    return "\n\n".join([*section.paragraphs, bullets] if bullets else section.paragraphs)


# --- formats -------------------------------------------------------------------------


def _markdown(doc: _Doc) -> bytes:
    lines = [f"# {doc.title}", ""]
    for section in doc.sections:
        lines += [f"## {section.heading}", "", _section_text(section), ""]
    if doc.variant % 2:  # a fenced block whose '#' lines are comments, not headings
        lines += ["## Settings", "", "```yaml", "# defaults for this topic", "max_attempts: 5"]
        lines += ["lease_seconds: 600", "```", ""]
    return "\n".join(lines).encode()


def _plain_text(doc: _Doc) -> bytes:
    lines = [doc.title, "=" * len(doc.title), ""]
    for section in doc.sections:
        lines += [section.heading.upper(), "", _section_text(section), ""]
    text = "\n".join(lines)
    # Every other text file is a legacy Windows export, to exercise the decoding path.
    if doc.variant % 2:
        return text.replace("\n", "\r\n").encode("cp1252", errors="replace")
    return text.encode()


_HTML_WRAPPERS = (
    '<main id="content">\n<article>\n{body}\n</article>\n</main>',
    '<div class="content" role="main">\n{body}\n</div>',
    '<article class="post">\n{body}\n</article>',
    '<div class="content">\n{body}\n</div>',  # no main element: the body is the content
)
_HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} | Fanout handbook</title>
<link rel="stylesheet" href="/assets/site.css">
<style>body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: auto; }}</style>
<script>
  window.dataLayer = window.dataLayer || [];
  function track(e) {{ dataLayer.push(e); }}
</script>
</head>
<body>
<header class="site-header">
  <a class="logo" href="/">Fanout handbook</a>
  <nav aria-label="Primary"><ul>
    <li><a href="/guides/">Guides</a></li><li><a href="/reference/">Reference</a></li>
    <li><a href="/runbooks/">Runbooks</a></li><li><a href="/search/">Search</a></li>
  </ul></nav>
</header>
<aside class="toc"><h2>On this page</h2><ul>{toc}</ul></aside>
{content}
<form class="newsletter" action="/subscribe" method="post">
  <label>Get the monthly digest <input type="email" name="email"></label>
  <button type="submit">Subscribe</button>
</form>
<footer><p>&copy; 2024 Fanout handbook. All rights reserved.</p>
  <nav><a href="/privacy">Privacy</a> <a href="/terms">Terms</a></nav></footer>
<script src="/assets/analytics.js" async></script>
<script>track({{page: "{topic}"}});</script>
<noscript><img src="/pixel.gif" alt=""></noscript>
</body>
</html>
"""


def _html(doc: _Doc) -> bytes:
    esc = html.escape
    parts = [f"<h1>{esc(doc.title)}</h1>"]
    for section in doc.sections:
        parts.append(f"<section>\n  <h2>{esc(section.heading)}</h2>")
        parts += [f"  <p>\n    {esc(paragraph)}\n  </p>" for paragraph in section.paragraphs]
        if section.bullets:
            items = "".join(f"<li>{esc(item)}</li>" for item in section.bullets)
            parts.append(f"  <ul>{items}</ul>")
        parts.append("</section>")
    toc = "".join(f"<li>{esc(section.heading)}</li>" for section in doc.sections)
    content = _HTML_WRAPPERS[doc.variant % len(_HTML_WRAPPERS)].format(body="\n".join(parts))
    page = _HTML_PAGE.format(title=esc(doc.title), toc=toc, content=content, topic=doc.topic)
    return page.encode()


def _pdf(doc: _Doc) -> bytes:
    """One section a page; the phrase's spaces do not break, so extraction keeps it whole."""
    unbroken = doc.phrase.replace(" ", NO_BREAK_SPACE)
    pages: list[list[str]] = []
    for number, section in enumerate(doc.sections):
        paragraphs = [section.heading, *section.paragraphs]
        paragraphs += [f"\u2022 {item}" for item in section.bullets]
        if number == 0:
            paragraphs.insert(0, doc.title)
        pages.append([p.replace(doc.phrase, unbroken) for p in paragraphs])
    return text_pdf(pages, title=doc.title)


class _DocxWriter:
    """Word files through python-docx, made cheap enough for a 50 MB corpus (~850 files).

    python-docx re-reads its template for every new document and scans all styles on each
    styled paragraph (~50 ms a file); here one document is emptied and refilled, and styles
    are set by id on the paragraph element.
    """

    def __init__(self) -> None:
        self._document = docx.Document()

    def render(self, doc: _Doc) -> bytes:
        document = self._document
        document.element.body.clear_content()
        properties = document.core_properties
        properties.title, properties.author, properties.revision = doc.title, "Fanout samples", 1
        properties.created = properties.modified = properties.last_printed = FIXED_TIME
        self._paragraph(doc.title, "Title")
        for section in doc.sections:
            self._paragraph(section.heading, "Heading1")
            for paragraph in section.paragraphs:
                self._paragraph(paragraph)
            for item in section.bullets:
                self._paragraph(item, "ListBullet")
        if doc.variant % 2:
            rows = (("Setting", "Default"), ("max attempts", "5"), ("lease", "10 minutes"))
            table = document.add_table(rows=len(rows), cols=2)
            for row, values in zip(table.rows, rows, strict=True):
                for cell, value in zip(row.cells, values, strict=True):
                    cell.text = value
        out = io.BytesIO()
        document.save(out)
        return _fixed_zip_times(out.getvalue())

    def _paragraph(self, text: str, style_id: str | None = None) -> None:
        paragraph = self._document.add_paragraph(text)
        if style_id is not None:
            paragraph._p.style = style_id  # the id of a style the default template has


def _fixed_zip_times(data: bytes) -> bytes:
    """The same archive with every member dated 2024-01-01: python-docx stamps the clock.

    The date fields of each central directory entry and local header are patched in place,
    which spares compressing every member a second time.
    """
    out = bytearray(data)
    end_record = data.rindex(ZIP_END_SIGNATURE)
    (count,) = struct.unpack_from("<H", data, end_record + 10)
    (entry,) = struct.unpack_from("<I", data, end_record + 16)
    for _ in range(count):
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, entry + 28)
        (local_header,) = struct.unpack_from("<I", data, entry + 42)
        struct.pack_into("<HH", out, entry + 12, *ZIP_DOS_TIME)
        struct.pack_into("<HH", out, local_header + 10, *ZIP_DOS_TIME)
        entry += 46 + name_length + extra_length + comment_length
    return bytes(out)


def _records(doc: _Doc) -> list[dict[str, object]]:
    return [
        {"id": f"{doc.topic}-{n}", "title": s.heading, "text": _section_text(s), "topic": doc.topic}
        for n, s in enumerate(doc.sections, start=1)
    ]


def _json(doc: _Doc) -> bytes:
    if doc.variant % 2:  # one object for the whole document
        text = "\n\n".join(_section_text(section) for section in doc.sections)
        value: object = {"title": doc.title, "text": text, "topic": doc.topic, "lang": "en"}
    else:  # an array of section records
        value = _records(doc)
    return json.dumps(value, ensure_ascii=False, indent=2).encode()


def _jsonl(doc: _Doc) -> bytes:
    # A metadata record with no text, as exports often start with: the loader skips it.
    lines = [json.dumps({"id": f"{doc.topic}-meta", "kind": "export", "source": "handbook"})]
    lines += [json.dumps(record, ensure_ascii=False) for record in _records(doc)]
    return ("\n".join(lines) + "\n").encode()


def _renderers() -> dict[str, Callable[[_Doc], bytes]]:
    """Each format's renderer, for one run (the Word writer keeps a document between files)."""
    return {
        "md": _markdown,
        "txt": _plain_text,
        "html": _html,
        "pdf": _pdf,
        "docx": _DocxWriter().render,
        "json": _json,
        "jsonl": _jsonl,
    }


# --- the files meant to be refused ---------------------------------------------------


def _broken_pdf(seed: _Seed, rng: random.Random) -> bytes:
    """The first half of a real PDF, then garbage: no cross-reference table, no EOF marker."""
    whole = text_pdf([[seed.title, *seed.paragraphs]], title=seed.title)
    return whole[: len(whole) // 2] + rng.randbytes(512)


def _unknown_file(rng: random.Random) -> bytes:
    return b"XYZDIAGRAM\x00\x01" + rng.randbytes(256)


def _write_oversized(path: Path, size: int, seeds: Sequence[_Seed]) -> None:
    """`size` bytes of repeated text, written in large blocks so 33 MB takes little time."""
    line = ("export row: " + " ".join(seeds[0].paragraphs) + "\n").encode()
    block = line * max(1, (1 << 20) // len(line))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for _ in range(size // len(block)):
            out.write(block)
        out.write(block[: size % len(block)])


def _write(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def _previous_paths(dest: Path) -> set[str]:
    """The files the last run's manifest lists inside `dest`: only those may be removed."""
    try:
        entries = json.loads((dest / MANIFEST_NAME).read_text(encoding="utf-8"))
        paths = {str(entry["path"]) for entry in entries}
    except (OSError, ValueError, TypeError, KeyError):
        return set()
    root = dest.resolve()
    return {path for path in paths if (root / path).resolve().is_relative_to(root)}


# --- command line --------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m functions.local.sample_corpus", description=__doc__
    )
    parser.add_argument("dest", type=Path, help="folder to write the corpus into")
    parser.add_argument("--mb", type=float, default=0, help="grow the corpus to this many MB")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.monotonic()
    files = generate(args.dest, target_bytes=int(args.mb * 1024 * 1024), seed=args.seed)
    size = sum((args.dest / f.path).stat().st_size for f in files if f.format != "oversized")
    counts = Counter(file.format for file in files)
    mix = ", ".join(f"{fmt} {counts[fmt]}" for fmt in FORMATS)
    print(
        f"wrote {len(files)} files ({size / 1e6:.1f} MB plus an oversized file) to {args.dest} "
        f"in {time.monotonic() - started:.1f} s: {mix}, 1 broken pdf, 1 unknown type"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
