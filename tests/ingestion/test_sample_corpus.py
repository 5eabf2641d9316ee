"""The sample corpus generator: every file loads (or is refused) as intended, each phrase
finds exactly its own file, and two runs write the same bytes."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from functions.errors import ItemFailed, ItemSkipped
from functions.ingestion.documents import Document, SourceItem
from functions.ingestion.loaders import load_document
from functions.local.sample_corpus import (
    FORMATS,
    MANIFEST_NAME,
    SEED_DIR,
    CorpusFile,
    generate,
    main,
)

OVERSIZED_BYTES = 2 * 1024 * 1024
REFUSED = {"broken-pdf", "oversized", "unknown"}


def load(root: Path, file: CorpusFile) -> Document:
    path = root / file.path
    return load_document(SourceItem(str(path), path.stat().st_size), path.read_bytes())


def flat(text: str) -> str:
    """Whitespace collapsed: PDF lines wrap where the source had spaces."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CorpusFile]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, generate(root, oversized_bytes=OVERSIZED_BYTES)


@pytest.fixture(scope="module")
def documents(corpus: tuple[Path, list[CorpusFile]]) -> dict[str, Document]:
    """Every generated file of a supported format, loaded."""
    root, files = corpus
    return {file.path: load(root, file) for file in files if file.format not in REFUSED}


def test_a_few_hundred_files_in_every_format_plus_one_of_each_refused_kind(
    corpus: tuple[Path, list[CorpusFile]],
) -> None:
    _, files = corpus
    counts = Counter(file.format for file in files)
    assert 250 <= len(files) <= 350
    assert all(counts[fmt] >= 20 for fmt in FORMATS)
    assert counts["broken-pdf"] == counts["oversized"] == counts["unknown"] == 1
    assert len({file.path for file in files}) == len(files)


def test_every_file_of_a_supported_format_loads_with_text(
    documents: dict[str, Document],
) -> None:
    assert len(documents) >= 250
    assert all(doc.text.strip() for doc in documents.values())


def test_documents_keep_the_structure_of_their_format(
    corpus: tuple[Path, list[CorpusFile]], documents: dict[str, Document]
) -> None:
    _, files = corpus
    for file in files:
        if file.format in REFUSED:
            continue
        doc = documents[file.path]
        if file.format in ("md", "html", "docx", "jsonl"):
            assert len(doc.headings) >= 3, file.path
        if file.format == "pdf":
            assert len(doc.pages) >= 3, file.path  # one section a page
        if file.format == "jsonl":
            assert len(doc.pages) >= 3, file.path  # one record a section
        if file.format == "html":  # the chrome is there in the file, gone from the text
            raw = (corpus[0] / file.path).read_text(encoding="utf-8")
            for chrome in ("All rights reserved", "dataLayer", "Subscribe", "On this page"):
                assert chrome in raw and chrome not in doc.text, (file.path, chrome)


def test_every_document_is_about_its_seed_topic(
    corpus: tuple[Path, list[CorpusFile]], documents: dict[str, Document]
) -> None:
    """Each document carries its topic's seed paragraphs (the topic is its folder)."""
    _, files = corpus
    seeds = {path.stem: path.read_text(encoding="utf-8") for path in SEED_DIR.glob("*.md")}
    for file in files:
        if file.format in REFUSED:
            continue
        seed_paragraph = flat(seeds[file.path.split("/", 1)[0]].split("\n\n", 1)[1])
        assert seed_paragraph in flat(documents[file.path].text), file.path


def test_each_phrase_is_found_in_its_own_file_and_in_no_other(
    corpus: tuple[Path, list[CorpusFile]], documents: dict[str, Document]
) -> None:
    _, files = corpus
    everything = "\x00".join(doc.text for doc in documents.values())  # no text holds a NUL
    for file in files:
        if file.format in REFUSED:
            assert file.phrase is None
            continue
        assert file.phrase is not None
        assert file.phrase in documents[file.path].text, file.path
        assert everything.count(file.phrase) == 1, file.phrase


def test_broken_pdf_fails_unknown_type_is_skipped_and_oversized_has_its_size(
    corpus: tuple[Path, list[CorpusFile]],
) -> None:
    root, files = corpus
    by_format = {file.format: file for file in files}
    with pytest.raises(ItemFailed, match="not a valid PDF"):
        load(root, by_format["broken-pdf"])
    with pytest.raises(ItemSkipped, match="no loader"):
        load(root, by_format["unknown"])
    assert (root / by_format["oversized"].path).stat().st_size == OVERSIZED_BYTES


def test_manifest_is_a_dotfile_listing_every_file(corpus: tuple[Path, list[CorpusFile]]) -> None:
    root, files = corpus
    manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert MANIFEST_NAME.startswith(".")
    assert manifest == [asdict(file) for file in files]
    written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert written == {file.path for file in files} | {MANIFEST_NAME}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_generation_is_deterministic_byte_for_byte_and_idempotent(
    corpus: tuple[Path, list[CorpusFile]], tmp_path: Path
) -> None:
    root, files = corpus
    again = generate(tmp_path, oversized_bytes=OVERSIZED_BYTES)
    assert again == files
    first = _snapshot(tmp_path)
    assert first == _snapshot(root)
    generate(tmp_path, oversized_bytes=OVERSIZED_BYTES)
    assert _snapshot(tmp_path) == first


def test_another_seed_gives_other_phrases(
    corpus: tuple[Path, list[CorpusFile]], tmp_path: Path
) -> None:
    _, files = corpus
    other = generate(tmp_path, oversized_bytes=1, seed=8)
    assert {f.phrase for f in other if f.phrase}.isdisjoint({f.phrase for f in files if f.phrase})


def test_target_bytes_adds_documents_and_a_smaller_run_removes_them(
    corpus: tuple[Path, list[CorpusFile]], tmp_path: Path
) -> None:
    root, files = corpus
    base_bytes = sum((root / f.path).stat().st_size for f in files if f.format != "oversized")
    target = base_bytes + 200_000
    grown = generate(tmp_path, target_bytes=target, oversized_bytes=1)
    sizes = sum((tmp_path / f.path).stat().st_size for f in grown if f.format != "oversized")
    assert sizes >= target and len(grown) > len(files)
    assert Counter(f.format for f in grown).keys() == Counter(f.format for f in files).keys()
    phrases = [f.phrase for f in grown if f.phrase]
    assert len(phrases) == len(set(phrases))
    extra = {f.path for f in grown} - {f.path for f in files}
    generate(tmp_path, oversized_bytes=1)
    assert extra and not any((tmp_path / path).exists() for path in extra)


def test_command_line_writes_the_corpus_and_prints_one_summary_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wrote ") and "md " in lines[0]
    assert (tmp_path / "out" / MANIFEST_NAME).is_file()
