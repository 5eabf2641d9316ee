"""/ui/jobs/{id}/logs: a job's log lines as a page people read, linked from the job's
page next to the raw JSON, filtered by batch, severity and event, page by page, from the
same reader as GET /jobs/{id}/logs."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from functions.cli.client import ApiError, call
from functions.local.stack import LocalStack
from tests.e2e.conftest import client_for, wait_for, wait_terminal

ROW = re.compile(r'<tr class="severity-(\w+)">(.*?)</tr>', re.S)


def _rows(page: str) -> list[tuple[str, str]]:
    """(severity, row text) of each line shown."""
    return [
        (severity, html.unescape(re.sub(r"<[^>]+>", " ", row)))
        for severity, row in ROW.findall(page)
    ]


def _page(url: str) -> str:
    status, page = call("GET", url)
    assert status == 200 and isinstance(page, str)
    return page


def test_the_logs_page_filters_and_pages_the_lines_the_api_answers(
    stack: LocalStack, document: dict[str, Any]
) -> None:
    """A failed job's page links to its logs page; the page shows the API's lines, only
    the errors with severity=error, only one event with event=, and pages by limit."""
    fail = stack.state_dir / "log-page-fail.txt"
    fail.write_text("b\n")
    client = client_for(stack)
    request = {"source": "noop", "collection": "docs", "items": ["a", "b", "c"], "batch_size": 1}
    job = client.submit(request | {"options": {"fail_items_file": str(fail)}})["job_id"]
    assert wait_terminal(client, job)["status"] == "failed"
    wait_for(lambda: client.logs(job, event="job_finalized")["lines"], what="the final line")
    api = stack.url("jobs_api")

    job_page = _page(f"{api}/ui/jobs/{job}")
    assert f'href="/ui/jobs/{job}/logs"' in job_page
    every = client.logs(job)["lines"]
    shown = _rows(_page(f"{api}/ui/jobs/{job}/logs"))
    assert len(shown) == len(every) > 4
    assert [s for s, _ in shown] == [line["severity"].lower() for line in every]

    errors = _rows(_page(f"{api}/ui/jobs/{job}/logs?severity=error"))
    assert errors and {s for s, _ in errors} <= {"error", "critical", "alert", "emergency"}
    assert any("batch_failed" in text for _, text in errors)
    final = _rows(_page(f"{api}/ui/jobs/{job}/logs?event=job_finalized"))
    assert len(final) == 1 and "job failed" in final[0][1]

    first = _page(f"{api}/ui/jobs/{job}/logs?limit=2")
    assert len(_rows(first)) == 2
    following = re.search(r'<a rel="next" href="([^"]+)"', first)
    assert following
    second = _rows(_page(api + html.unescape(following[1])))
    assert [s for s, _ in second] == [line["severity"].lower() for line in every[2:4]]

    with pytest.raises(ApiError) as refused:
        call("GET", f"{api}/ui/jobs/{job}/logs?severity=loud")
    assert refused.value.status == 400
    operation = document["paths"]["/ui/jobs/{job_id}/logs"]["get"]
    assert "text/html" in operation["responses"]["200"]["content"]
