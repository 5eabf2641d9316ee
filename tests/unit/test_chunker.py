"""The chunker: token bounds, overlap, structure (heading paths, pages) and stable ids."""

from __future__ import annotations

import itertools

import pytest

from functions.errors import InvalidArgument
from functions.ingestion.chunker import ChunkSize, chunk_document, chunk_id
from functions.ingestion.documents import Document, Heading, Page
from functions.ingestion.tokens import MAX_CHUNK_TOKENS, count_tokens


def _markdown(*sections: tuple[int, str, str]) -> Document:
    text, headings = "", []
    for level, title, body in sections:
        headings.append(Heading(len(text), level, title))
        text += f"{'#' * level} {title}\n\n{body}\n\n"
    return Document("file:///doc.md", text, tuple(headings))


def test_no_chunk_exceeds_the_token_budget_and_the_text_is_covered() -> None:
    """Every chunk fits the budget (so the model never truncates it), and every word of the
    document lands in some chunk."""
    words = [f"word{i}" for i in range(3000)]
    document = Document("d", " ".join(words))
    chunks = list(chunk_document(document, ChunkSize(64, 8)))
    assert len(chunks) > 10
    assert all(count_tokens(c.text) <= 64 for c in chunks)
    covered = set(" ".join(c.text for c in chunks).split())
    assert covered == set(words)


def test_neighbours_overlap() -> None:
    """With overlap, the start of each chunk repeats the end of the one before it."""
    document = Document("d", " ".join(f"w{i}" for i in range(2000)))
    chunks = list(chunk_document(document, ChunkSize(64, 16)))
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.start + len(before.text)
        assert after.text.split()[0] in before.text.split()


def test_headings_split_first_and_give_each_chunk_its_heading_path() -> None:
    """A section boundary is a chunk boundary when both sections fit, and a chunk carries
    the path of headings it sits under."""
    document = _markdown(
        (1, "Guide", "Intro paragraph."),
        (2, "Install", "Run the installer. " * 5),
        (2, "Cancel a job", "POST to the cancel endpoint. " * 5),
        (1, "Reference", "Tables."),
    )
    chunks = list(chunk_document(document, ChunkSize(200, 0)))
    assert [c.heading_path for c in chunks] == [
        "Guide",
        "Guide > Install",
        "Guide > Cancel a job",
        "Reference",
    ]
    assert chunks[2].text.startswith("## Cancel a job") and "installer" not in chunks[2].text
    assert [c.position for c in chunks] == [0, 1, 2, 3]


def test_a_heading_with_no_text_of_its_own_joins_the_next_section() -> None:
    document = _markdown((1, "Guide", ""), (2, "Install", "Run the installer."))
    chunks = list(chunk_document(document, ChunkSize(200, 0)))
    assert len(chunks) == 1
    assert chunks[0].text.startswith("# Guide") and chunks[0].heading_path == "Guide > Install"


def test_pages_are_carried_by_offset() -> None:
    """A PDF's chunks name the page they start on."""
    page_one, page_two = "First page text. " * 40, "Second page text. " * 40
    text = page_one + "\n\n" + page_two
    document = Document("d.pdf", text, pages=(Page(0, 1), Page(len(page_one) + 2, 2)))
    chunks = list(chunk_document(document, ChunkSize(64, 0)))
    assert chunks[0].page == 1 and chunks[-1].page == 2
    assert all(c.page == (1 if c.start < len(page_one) else 2) for c in chunks)


def test_ids_are_deterministic_and_depend_on_uri_position_and_text() -> None:
    """A re-run gives the same ids; a change of document, position or text gives new ones."""
    document = _markdown((1, "A", "alpha " * 300), (1, "B", "beta " * 300))
    first = [c.chunk_id for c in chunk_document(document, ChunkSize(64, 8))]
    again = [c.chunk_id for c in chunk_document(document, ChunkSize(64, 8))]
    assert first == again and len(set(first)) == len(first)
    assert chunk_id("u", 0, "t") != chunk_id("v", 0, "t")
    assert chunk_id("u", 0, "t") != chunk_id("u", 1, "t")
    assert chunk_id("u", 0, "t") != chunk_id("u", 0, "t2")


def test_empty_and_blank_documents_have_no_chunks() -> None:
    assert list(chunk_document(Document("d", ""))) == []
    assert list(chunk_document(Document("d", " \n\n \t"))) == []


@pytest.mark.parametrize(
    ("tokens", "overlap"), [(0, 0), (MAX_CHUNK_TOKENS + 1, 0), (100_000, 0), (64, 33), (64, -1)]
)
def test_chunk_sizes_outside_the_model_window_are_refused(tokens: int, overlap: int) -> None:
    with pytest.raises(InvalidArgument):
        ChunkSize(tokens, overlap)
