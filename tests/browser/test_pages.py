"""The pages under /ui in a real Chromium against a live local stack: submit and watch a job
complete in place, cancel one, page through 120 jobs, HTML in errors shown as text, a phone
sized layout, and cross-site POSTs refused, to the pages and to the API."""

from __future__ import annotations

import http.client
import http.server
import re
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from functions.cli.client import FanoutClient
from functions.local.stack import LocalStack
from tests.browser.conftest import DESKTOP, PHONE, screenshot
from tests.e2e.conftest import wait_for, wait_terminal

JOB_PAGE = re.compile(r"/ui/jobs/(?P<id>\d{8}-\d{6}-\d{6}-[0-9a-f]{8})$")


def _submit(client: FanoutClient, items: list[str], **fields: Any) -> str:
    request = {"source": "noop", "collection": "browser", "items": items, **fields}
    job_id: str = client.submit(request)["job_id"]
    return job_id


def _slow_job(client: FanoutClient, items: int = 40, delay_ms: int = 2000) -> str:
    """A job that keeps running for a while: one item a batch, each taking `delay_ms`."""
    return _submit(
        client,
        [f"slow-{i}" for i in range(items)],
        batch_size=1,
        options={"delay_ms": delay_ms},
    )


def _job_id(page: Page) -> str:
    match = JOB_PAGE.search(urllib.parse.urlsplit(page.url).path)
    assert match, page.url
    return match["id"]


def _status_badge(page: Page) -> Any:
    return page.locator("#live .status-line .badge")


# -- 1. submit through the form, and the page follows the job to its end ------------------


def test_submit_form_then_the_page_follows_the_job_to_completed(
    page: Page, client: FanoutClient
) -> None:
    """The form shows the API's field errors and keeps what was typed; a valid submit lands
    on the job's page, which updates itself in place (same document, no navigation) until
    the job is completed."""
    page.goto("/ui/submit")
    items = "\n".join(f"doc-{i}" for i in range(32))
    page.fill("input[name=source]", "noop")
    page.fill("input[name=collection]", "browser")
    page.fill("textarea[name=items]", items)
    page.fill("input[name=batch_size]", "1")
    page.fill("textarea[name=options]", '{"delay_ms": 1000')  # not valid JSON
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("button:text('Start')")
    assert posted.value.status == 400
    expect(page.locator(".field-error")).to_contain_text("not valid JSON")
    expect(page.locator("textarea[name=options]")).to_have_attribute("aria-invalid", "true")
    assert page.input_value("textarea[name=items]") == items  # nothing typed is lost
    screenshot(page, "submit")

    page.fill("textarea[name=options]", '{"delay_ms": 1000}')
    page.click("button:text('Start')")
    page.wait_for_url(JOB_PAGE)
    job_id = _job_id(page)
    live = page.locator("#live")
    assert live.get_attribute("data-terminal") == "false"
    first_progress = page.inner_text(".progress-text")
    screenshot(page, "job-detail-running")
    page.evaluate("window.__sameDocument = 'yes'")

    expect(live).to_have_attribute("data-terminal", "true", timeout=60_000)
    expect(_status_badge(page)).to_have_text("completed")
    assert page.evaluate("window.__sameDocument") == "yes"  # updated in place, no reload
    assert page.inner_text(".progress-text").startswith("32 of 32 batches ended")
    assert page.inner_text(".progress-text") != first_progress
    assert page.inner_text(".stat-processed") == "32"
    assert client.job(job_id)["status"] == "completed"
    screenshot(page, "job-detail")


# -- 2. cancel a running job from its page --------------------------------------------------


def test_cancel_a_running_job_from_its_page(page: Page, client: FanoutClient) -> None:
    """Dismissing the confirmation changes nothing; accepting it cancels the job, and the
    page and the store both say cancelled."""
    job_id = _slow_job(client)
    page.goto(f"/ui/jobs/{job_id}")
    expect(_status_badge(page)).to_have_text("running")

    messages: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("button:text('Cancel job')")
    assert messages and job_id in messages[0]
    assert client.job(job_id)["status"] == "running"
    assert _job_id(page) == job_id

    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click("button:text('Cancel job')")
    expect(_status_badge(page)).to_have_text("cancelled")
    assert page.locator("button:text('Cancel job')").count() == 0
    assert client.job(job_id)["status"] == "cancelled"


# -- 3. filter and page through 120 jobs ----------------------------------------------------


def _showing(shown: int, first: int, last: int) -> str:
    return f"showing {shown} of 120 jobs ({first}\u2013{last})"  # an en dash


def _rows(page: Page) -> list[str]:
    return page.locator("table.jobs tbody a.job-link").all_inner_texts()


def _api_pages(client: FanoutClient, **filters: str) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        found = client.jobs(**filters, **({"cursor": cursor} if cursor else {}))
        pages.append([job["job_id"] for job in found["jobs"]])
        cursor = found["next_cursor"]
        if cursor is None:
            return pages


def test_filter_and_page_through_120_jobs(page: Page, client: FanoutClient) -> None:
    """The filter bar narrows the list to one client's 120 jobs; next and prev walk its
    three pages newest first, as the API pages them, with "showing N of M"."""
    for i in range(120):
        _submit(client, [], client_id="pager", request_id=f"page-{i}")
    _submit(client, [], client_id="someone-else", request_id="other-0")
    wait_for(
        lambda: client.jobs(client_id="pager", status="completed")["total"] == 120,
        what="120 completed jobs",
    )
    expected = _api_pages(client, client_id="pager")
    assert [len(p) for p in expected] == [50, 50, 20]

    page.goto("/ui/jobs")
    page.fill("input[name=client_id]", "pager")
    page.check("input[name=status][value=completed]")
    page.check("input[name=status][value=running]")
    page.click("button:text('Filter')")
    showing = page.locator(".pager .showing").first
    expect(showing).to_have_text(_showing(50, 1, 50))
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
    assert query["client_id"] == ["pager"] and query["status"] == ["running", "completed"]
    assert _rows(page) == expected[0] == sorted(expected[0], reverse=True)
    assert page.locator("a[rel=prev]").count() == 0
    screenshot(page, "jobs")

    page.locator("a[rel=next]").first.click()
    expect(showing).to_have_text(_showing(50, 51, 100))
    assert _rows(page) == expected[1]
    page.locator("a[rel=next]").first.click()
    expect(showing).to_have_text(_showing(20, 101, 120))
    assert _rows(page) == expected[2]
    assert page.locator("a[rel=next]").count() == 0
    assert page.is_checked("input[name=status][value=completed]")  # filters stay on

    page.locator("a[rel=prev]").first.click()
    expect(showing).to_have_text(_showing(50, 51, 100))
    assert _rows(page) == expected[1]
    page.locator("a[rel=prev]").first.click()
    expect(showing).to_have_text(_showing(50, 1, 50))
    assert _rows(page) == expected[0]

    page.uncheck("input[name=status][value=completed]")
    page.uncheck("input[name=status][value=running]")
    page.check("input[name=status][value=failed]")
    page.click("button:text('Filter')")
    expect(showing).to_have_text("showing 0 of 0 jobs")
    expect(page.locator("td.empty")).to_have_text("No jobs match these filters.")

    answer = page.goto("/ui/jobs?status=finished&limit=100000")
    assert answer is not None and answer.status == 400
    expect(page.locator("h1")).to_have_text("Invalid input")
    expect(page.locator(".problems")).to_contain_text("limit")
    expect(page.locator(".problems")).to_contain_text("status")


# -- 4. HTML in user data is text -----------------------------------------------------------

EVIL_ITEMS = [
    "<b>x</b>",
    "<script>window.__injected = 1</script>",
    '<img src=x onerror="window.__injected = 2">',
]


def test_html_in_errors_and_names_shows_as_text(
    page: Page, client: FanoutClient, stack: LocalStack, browser: Browser
) -> None:
    """Item names, their errors and the client id, all holding HTML, appear as text on the
    job's page and the list; no element is injected and no script runs. Without
    JavaScript, retry goes through a confirmation page."""
    fail_file = stack.state_dir / "evil-items.txt"
    fail_file.write_text("\n".join(EVIL_ITEMS) + "\n")
    job_id = _submit(
        client,
        ["fine", *EVIL_ITEMS],
        batch_size=4,
        options={"fail_items_file": str(fail_file)},
        client_id="<i>who</i>",
        request_id="evil-1",
    )
    assert wait_terminal(client, job_id)["status"] == "failed"

    page.goto(f"/ui/jobs/{job_id}")
    errors = page.locator(".cell-error")
    expect(errors).to_contain_text("3 of 4 items failed")
    for item in EVIL_ITEMS:
        expect(errors).to_contain_text(item)
    assert page.locator("main b, main img, main i, main script").count() == 0
    assert page.evaluate("window.__injected") is None
    expect(page.locator(".facts")).to_contain_text("<i>who</i>")
    screenshot(page, "job-detail-failed")

    page.goto("/ui/jobs?" + urllib.parse.urlencode({"client_id": "<i>who</i>"}))
    expect(page.locator("table.jobs tbody .cell-text").nth(2)).to_have_text("<i>who</i>")
    assert page.locator("main i").count() == 0

    _retry_without_javascript(browser, stack.url("jobs_api"), job_id, client)


def _retry_without_javascript(
    browser: Browser, base_url: str, job_id: str, client: FanoutClient
) -> None:
    no_js = browser.new_context(base_url=base_url, java_script_enabled=False)
    try:
        page = no_js.new_page()
        page.goto(f"/ui/jobs/{job_id}")
        page.click("button:text('Retry failed batches')")
        # A GET form: the URL ends with its (empty) query string.
        page.wait_for_url(re.compile(rf"/ui/jobs/{job_id}/retry\??$"))
        expect(page.locator("h1")).to_contain_text("Retry job")
        screenshot(page, "confirm-retry")
        assert client.job(job_id)["retries"] == 0  # asking changed nothing
        page.click("button:text('Yes, retry the failed batches')")
        page.wait_for_url(JOB_PAGE)
        assert client.job(job_id)["retries"] == 1
    finally:
        no_js.close()


# -- 5. a phone-sized screen ----------------------------------------------------------------

NOTES = {
    "cancelling.md": "# Operations\n\n## Cancelling jobs\n\nA cancelled job stops: its "
    "pending batches never run, and running ones stop at their next progress report.\n",
    "retrying.md": "# Operations\n\n## Retrying\n\nRetry re-runs the failed batches of a "
    "failed job, and only those.\n",
}


def test_pages_fit_a_390px_wide_screen(
    browser: Browser, client: FanoutClient, stack: LocalStack
) -> None:
    """The list, a failed job with long unbroken names and its logs, the submit form with
    its errors, a search with hits and the API reference: none scrolls the page sideways at
    390 px."""
    notes = stack.state_dir / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    accepted = client.submit({"source": "documents", "collection": "notes", "location": str(notes)})
    long_item = "a-very-long-item-name-without-any-space-" * 6
    fail_file = stack.state_dir / "long-items.txt"
    fail_file.write_text(long_item + "\n")
    failed = _submit(
        client,
        [long_item, "short"],
        options={"fail_items_file": str(fail_file)},
        client_id="a-client-id-that-is-rather-long-" * 3,
        request_id="long-1",
    )
    assert wait_terminal(client, accepted["job_id"])["status"] == "completed"
    assert wait_terminal(client, failed)["status"] == "failed"

    phone = browser.new_context(
        base_url=stack.url("jobs_api"), viewport=PHONE, is_mobile=True, has_touch=True
    )
    try:
        page = phone.new_page()
        pages = {
            "jobs": "/ui/jobs",
            "job-detail": f"/ui/jobs/{failed}",
            "job-logs": f"/ui/jobs/{failed}/logs",
            "submit": "/ui/submit",
            "search": "/ui/collections/notes?q=cancelled+job",
            "docs": "/docs",
        }
        for name, path in pages.items():
            page.goto(path)
            if name == "submit":  # with its field errors showing
                page.fill("input[name=source]", "noop")
                page.fill("input[name=collection]", "not a valid name")
                page.fill("textarea[name=items]", long_item)
                page.click("button:text('Start')")
                expect(page.locator(".field-error")).to_be_visible()
            if name == "search":
                hit = page.locator(".hit").first
                expect(hit.locator(".hit-source code")).to_have_text("cancelling.md")
                expect(hit.locator(".hit-heading")).to_contain_text("Cancelling jobs")
                expect(hit.locator(".hit-text")).to_have_text(re.compile("^A cancelled job stops"))
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{name} is {width}px wide"
            screenshot(page, f"{name}-390")
        page.set_viewport_size(DESKTOP)
        screenshot(page, "search")  # the last page, at a desktop width
    finally:
        phone.close()


def test_search_page_and_unknown_collection(page: Page) -> None:
    """A collection that does not exist is a friendly 404 page; the empty box is a page."""
    answer = page.goto("/ui/collections/no-such-collection")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator(".alert")).to_contain_text("collection 'no-such-collection' not found")


# -- 6. cross-site POSTs --------------------------------------------------------------------


def _post(url: str, fields: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
    """One form POST, redirects not followed."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        body = urllib.parse.urlencode(fields)
        connection.request(
            "POST",
            parts.path,
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        )
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _page_token(url: str) -> str:
    """The token a browser gets with its first page (the cookie and the forms carry it)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        response.read()
        cookie = response.getheader("Set-Cookie") or ""
    finally:
        connection.close()
    match = re.match(r"fanout_csrf=([A-Za-z0-9_-]+);", cookie)
    assert match, cookie
    return match[1]


def test_cross_site_posts_are_refused_and_change_nothing(
    client: FanoutClient, stack: LocalStack
) -> None:
    """Cancel and submit from another site (by Origin, Referer or Sec-Fetch-Site), or
    without the page's token, answer 403 and change nothing; the same POST from the page's
    own origin with its token works."""
    api = stack.url("jobs_api")
    host = urllib.parse.urlsplit(api).netloc
    job_id = _slow_job(client, items=30)
    cancel = f"{api}/ui/jobs/{job_id}/cancel"
    token = _page_token(f"{api}/ui/jobs/{job_id}")
    cookie = {"Cookie": f"fanout_csrf={token}"}
    evil = "https://evil.example"
    refused = [
        ({"csrf_token": token}, {"Origin": evil}),  # no cookie: a browser on another site
        ({"csrf_token": token}, {**cookie, "Origin": evil}),
        ({"csrf_token": token}, {**cookie, "Referer": f"{evil}/page"}),
        ({"csrf_token": token}, {**cookie, "Sec-Fetch-Site": "cross-site"}),
        ({"csrf_token": token}, {**cookie, "Origin": "null"}),
        ({"csrf_token": "guessed-" + token[8:]}, {**cookie, "Origin": f"http://{host}"}),
        ({}, {**cookie, "Origin": f"http://{host}"}),
    ]
    for fields, headers in refused:
        status, body = _post(cancel, fields, headers)
        assert status == 403, (fields, headers)
        assert "Refused" in body and "CrossSiteRequest" in body
        assert client.job(job_id)["status"] == "running"

    before = client.jobs(client_id="cross")["total"]
    submit_fields = {
        "csrf_token": token,
        "source": "noop",
        "collection": "x",
        "items": "a",
        "client_id": "cross",
        "request_id": "1",
    }
    status, _ = _post(f"{api}/ui/submit", submit_fields, {**cookie, "Origin": evil})
    assert status == 403
    assert client.jobs(client_id="cross")["total"] == before == 0

    status, _ = _post(cancel, {"csrf_token": token}, {**cookie, "Origin": f"http://{host}"})
    assert status == 303
    assert client.job(job_id)["status"] == "cancelled"


# -- 7. the JSON API, called by a page on another origin -----------------------------------

ATTACK_PAGE = """<!doctype html>
<title>another site</title>
<iframe name="sink"></iframe>
<form id="attack" method="post" enctype="text/plain" action="{cancel}" target="sink">
  <input name='{{"x":"' value='"}}'><button>win a prize</button>
</form>
<script>
  function sendJson() {{
    return fetch("{cancel}", {{method: "POST", mode: "no-cors",
      headers: {{"Content-Type": "text/plain"}}, body: "{{}}"}});
  }}
</script>
"""


class _AttackPage(http.server.BaseHTTPRequestHandler):
    """Serves one page, ATTACK_PAGE filled in by the test, at any path."""

    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reports what matters."""


@pytest.fixture
def other_origin() -> Iterator[tuple[str, type[_AttackPage]]]:
    """A second local HTTP server, on another port (and host name) than the stack."""
    handler = type("Attack", (_AttackPage,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_origin_cannot_cancel_a_job_through_the_api(
    page: Page, client: FanoutClient, stack: LocalStack, other_origin: tuple[str, Any]
) -> None:
    """A form (text/plain, no token) and a fetch on another site's page, aimed at the
    API's cancel in Chromium, are refused (403) and the job keeps running."""
    origin, handler = other_origin
    job_id = _slow_job(client, items=30)
    cancel = f"{stack.url('jobs_api')}/jobs/{job_id}/cancel"
    handler.body = ATTACK_PAGE.format(cancel=cancel).encode()
    page.goto(f"{origin}/prize")

    with page.expect_response(cancel) as submitted:
        page.click("#attack button")
    assert submitted.value.status == 403
    assert submitted.value.json()["error"] == "CrossSiteRequest"
    with page.expect_response(cancel) as fetched:
        page.evaluate("sendJson()")
    assert fetched.value.status == 403
    assert client.job(job_id)["status"] == "running"
    client.cancel(job_id)  # the CLI's call, from no site: it still works
    assert client.job(job_id)["status"] == "cancelled"
