"""Search hits as people read them: the CLI's table and the collection page show where a
document is relative to the location it was ingested from, never the server's own
directories, and its text without the headings shown above it."""

from __future__ import annotations

import io

from rich.console import Console

from functions.cli.client import call
from functions.cli.search import hits_table
from functions.local.stack import LocalStack
from tests.e2e.conftest import client_for, wait_for, wait_terminal

GUIDE = "# Operations\n\n## Cancelling jobs\n\nA cancelled job stops its pending batches.\n"


def test_hits_show_the_path_under_the_location_and_the_text_without_its_headings(
    stack: LocalStack,
) -> None:
    """A hit of a file two directories under the job's location shows as that relative
    path, with the text after its headings, in the API, the CLI's table and the page."""
    location = stack.state_dir / "handbook"
    (location / "ops" / "jobs").mkdir(parents=True)
    (location / "ops" / "jobs" / "cancel.md").write_text(GUIDE)
    client = client_for(stack)
    job = client.submit(
        {"source": "documents", "collection": "handbook", "location": str(location)}
    )
    assert wait_terminal(client, job["job_id"])["status"] == "completed"
    wait_for(lambda: client.search("handbook", "cancelled")["hits"], what="a searchable hit")
    result = client.search("handbook", "cancelled")
    hit = result["hits"][0]
    assert hit["source"] == "ops/jobs/cancel.md"
    assert hit["body"] == "A cancelled job stops its pending batches."
    assert hit["heading_path"] == "Operations > Cancelling jobs"

    out = io.StringIO()
    Console(file=out, width=200).print(hits_table(result))
    table = out.getvalue()
    assert "ops/jobs/cancel.md" in table and "A cancelled job stops" in table
    assert str(stack.state_dir) not in table and "# Operations" not in table

    _, page = call("GET", stack.url("jobs_api") + "/ui/collections/handbook?q=cancelled")
    assert "<code>ops/jobs/cancel.md</code>" in page
    assert '<p class="hit-text">A cancelled job stops its pending batches.</p>' in page
    assert str(stack.state_dir) not in page


def test_hits_are_documents_by_default_and_chunks_when_asked(stack: LocalStack) -> None:
    """Over the API, the CLI's table and the page: one hit per document with how many of
    its chunks matched, or (by=chunk, --chunks, the page's box) the chunks themselves; the
    quoted phrases the hits hold are named in the answer."""
    location = stack.state_dir / "runbook"
    location.mkdir()
    paragraphs = [f"Step {n}: a cancelled job keeps the batches it finished." for n in range(4)]
    (location / "cancel.md").write_text("# Cancel\n\n" + "\n\n".join(paragraphs) + "\n")
    (location / "retry.md").write_text("# Retry\n\nA retried job runs its failed batches.\n")
    client = client_for(stack)
    job = client.submit(
        {
            "source": "documents",
            "collection": "runbook",
            "location": str(location),
            "options": {"chunk_tokens": 16, "chunk_overlap": 0},
        }
    )
    assert wait_terminal(client, job["job_id"])["status"] == "completed"

    by_document = client.search("runbook", '"cancelled job" batches', k=5)
    assert (by_document["by"], by_document["phrases"]) == ("document", ["cancelled job"])
    assert [hit["source"] for hit in by_document["hits"]] == ["cancel.md"]
    assert by_document["hits"][0]["matched_chunks"] == 4

    by_chunk = client.search("runbook", '"cancelled job" batches', k=5, by="chunk")
    assert by_chunk["by"] == "chunk"
    assert [hit["source"] for hit in by_chunk["hits"]] == ["cancel.md"] * 4
    assert {hit["matched_chunks"] for hit in by_chunk["hits"]} == {1}

    out = io.StringIO()
    Console(file=out, width=200).print(hits_table(by_document))
    header = out.getvalue().splitlines()[2]
    assert "chunks" in header, out.getvalue()

    page_url = stack.url("jobs_api") + "/ui/collections/runbook?q=cancelled+job"
    _, page = call("GET", page_url)
    assert page.count('<li class="hit">') == 2 and "4 matching chunks" in page
    _, page = call("GET", page_url + "&by=chunk")
    assert page.count('<li class="hit">') == 5 and 'value="chunk" checked' in page

    unpaired = client.search("runbook", 'retried "job', k=5)
    assert unpaired["phrases"] == [] and unpaired["hits"][0]["source"] == "retry.md"
