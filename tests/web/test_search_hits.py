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
