"""The pages under /ui without a browser: jobs_api's real router in-process, on a real SQLite
store. Bad input gets the API's status as a friendly page and changes nothing; the pager
walks forward and back; times and sizes read as people say them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import flask
import pytest
from flask.testing import FlaskClient
from markupsafe import escape

from functions.config import Settings
from functions.humanize import byte_size, duration, relative_time, start_time
from functions.ingest_request import IngestRequest
from functions.jobs import JobStatus
from functions.priority import Priority
from functions.service import FanoutService
from functions.store.protocol import JobQuery
from functions.web.app import web_router
from functions.web.http import handle_errors
from functions.web.page_models import MAX_TRAIL
from functions.web.paging import Pager, decode_trail
from tests.support.services import sqlite_service

ORIGIN = {"Origin": "http://localhost"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[FanoutService]:
    """A service on a real SQLite store; its tasks are queued, never run (no dispatcher):
    submitted jobs stay running."""
    with sqlite_service(Settings(sqlite_path=tmp_path / "fanout.sqlite3")) as running:
        yield running


@pytest.fixture
def browser(service: FanoutService) -> FlaskClient:
    """A cookie-keeping client of jobs_api's router, as main.jobs_api serves it."""
    router = web_router(service)
    app = flask.Flask(__name__)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/<path:path>", methods=["GET", "POST"])
    def serve(path: str) -> flask.Response:
        return handle_errors(router.dispatch)(flask.request)

    return app.test_client()


def _job(service: FanoutService, **fields: object) -> str:
    request = IngestRequest.model_validate(
        {"source": "noop", "collection": "docs", "items": ["a", "b"], **fields}
    )
    return service.submit(request)[0].job_id


def _token(browser: FlaskClient) -> str:
    """The page's token, as its forms carry it (the first page sets the cookie)."""
    html = browser.get("/ui/submit").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match[1]


def _all_jobs(service: FanoutService) -> int:
    return service.store.list_jobs(JobQuery.build()).total


# -- the same refusals as the API ------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "status=finished",
        "status=running,bogus",
        "limit=0",
        "limit=100000",
        "limit=many",
        "stauts=running",  # a typo is refused, not ignored
        "cursor=not-a-cursor",
        "source=" + "s" * 129,
        "limit=1&limit=2",
        "priority=urgent",
    ],
)
def test_the_jobs_page_refuses_what_the_api_refuses(browser: FlaskClient, query: str) -> None:
    api = browser.get(f"/jobs?{query}")
    ui = browser.get(f"/ui/jobs?{query}")
    assert api.status_code == ui.status_code == 400
    assert ui.mimetype == "text/html"
    html = ui.get_data(as_text=True)
    assert "<h1>Invalid input</h1>" in html and "Nothing was changed." in html
    assert escape(api.get_json()["message"].split(":")[0]) in html


@pytest.mark.parametrize("back", ["..", "~.<x>", "~." + "c" * 5000])
def test_a_broken_page_trail_is_refused(browser: FlaskClient, back: str) -> None:
    answer = browser.get("/ui/jobs", query_string={"back": back})
    assert answer.status_code == 400
    assert "<code>back</code>" in answer.get_data(as_text=True)


def test_job_pages_refuse_what_the_api_refuses(
    browser: FlaskClient, service: FanoutService
) -> None:
    job_id = _job(service)
    for path, status in [
        (f"/jobs/{job_id}/batches?status=bogus", 400),
        ("/jobs/20260101-000000-000000-00000000", 404),
        ("/jobs/not-an-id", 404),
    ]:
        ui_path = "/ui" + path.replace("/batches", "")
        assert browser.get(path).status_code == status
        answer = browser.get(ui_path)
        assert answer.status_code == status, ui_path
        assert "Nothing was changed." in answer.get_data(as_text=True)
    assert browser.get(f"/ui/jobs/{job_id}/live?status=bogus").status_code == 400
    assert browser.get(f"/ui/jobs/{job_id}/cancel?really=yes").status_code == 400


def test_cancel_needs_a_confirmed_post_and_refuses_a_finished_job(
    browser: FlaskClient, service: FanoutService
) -> None:
    """The confirmation page changes nothing; its POST cancels; cancelling again is the
    API's 409, on a page, and the job stays as it was."""
    job_id = _job(service)
    confirm = browser.get(f"/ui/jobs/{job_id}/cancel")
    assert confirm.status_code == 200
    assert service.store.get_job(job_id).status is JobStatus.RUNNING
    token = re.search(r'name="csrf_token" value="([^"]+)"', confirm.get_data(as_text=True))
    assert token
    done = browser.post(f"/ui/jobs/{job_id}/cancel", data={"csrf_token": token[1]}, headers=ORIGIN)
    assert (done.status_code, done.headers["Location"]) == (303, f"/ui/jobs/{job_id}")
    cancelled = service.store.get_job(job_id)
    assert cancelled.status is JobStatus.CANCELLED

    again = browser.post(f"/ui/jobs/{job_id}/cancel", data={"csrf_token": token[1]}, headers=ORIGIN)
    assert again.status_code == 409 == browser.post(f"/jobs/{job_id}/cancel", json={}).status_code
    assert "job is cancelled; cannot move to cancelled" in again.get_data(as_text=True)
    assert service.store.get_job(job_id) == cancelled
    assert browser.get(f"/ui/jobs/{job_id}/cancel").status_code == 409
    assert browser.get(f"/ui/jobs/{job_id}/retry").status_code == 409


def test_an_action_form_with_an_unknown_field_is_refused(
    browser: FlaskClient, service: FanoutService
) -> None:
    job_id = _job(service)
    answer = browser.post(
        f"/ui/jobs/{job_id}/cancel",
        data={"csrf_token": _token(browser), "force": "yes"},
        headers=ORIGIN,
    )
    assert answer.status_code == 400
    assert "<code>force</code>" in answer.get_data(as_text=True)
    assert service.store.get_job(job_id).status is JobStatus.RUNNING


# -- the submit form ---------------------------------------------------------------------------


def test_the_submit_form_shows_each_fields_problem_and_creates_nothing(
    browser: FlaskClient, service: FanoutService
) -> None:
    token = _token(browser)
    answer = browser.post(
        "/ui/submit",
        data={
            "csrf_token": token,
            "source": "noop",
            "collection": "no spaces <allowed>",
            "items": "one\ntwo",
            "batch_size": "0",
            "options": "[1, 2]",
        },
        headers=ORIGIN,
    )
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    errors = dict(re.findall(r'<p class="field-error" id="(\w+)-error">([^<]*)</p>', html))
    assert errors.keys() == {"collection", "batch_size", "options"}
    assert "greater than or equal to 1" in errors["batch_size"]
    assert "must be a JSON object" in errors["options"]
    assert "invalid request: batch_size, collection, options" in html
    # What was typed comes back, escaped.
    assert 'value="no spaces &lt;allowed&gt;"' in html and ">one\ntwo</textarea>" in html
    assert _all_jobs(service) == 0


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"source": "nope", "collection": "c", "items": "a"}, 400, "unknown source"),
        ({"source": "noop", "collection": "c"}, 400, "one of items, location or items_from"),
        ({"source": "noop", "collection": "c", "items": "a", "client_id": "x"}, 400, "together"),
        ({"source": "noop", "collection": "c", "items": "a", "colour": "red"}, 400, "colour: "),
        ({"source": "noop", "collection": "c", "items": "a", "options": '{"x": 1}'}, 400, "x"),
        ({"source": "noop", "collection": "c", "items": "a" * 1_100_000}, 413, "over"),
    ],
)
def test_the_submit_form_refuses_what_ingest_refuses(
    browser: FlaskClient, service: FanoutService, fields: dict[str, str], status: int, says: str
) -> None:
    answer = browser.post(
        "/ui/submit", data={"csrf_token": _token(browser), **fields}, headers=ORIGIN
    )
    assert answer.status_code == status
    assert says in answer.get_data(as_text=True)
    assert _all_jobs(service) == 0


def test_a_valid_submit_goes_to_the_new_jobs_page(
    browser: FlaskClient, service: FanoutService
) -> None:
    answer = browser.post(
        "/ui/submit",
        data={
            "csrf_token": _token(browser),
            "source": "noop",
            "collection": "docs",
            "items": " a \n\n b\n",
            "batch_size": "1",
            "options": '{"delay_ms": 5}',
        },
        headers=ORIGIN,
    )
    assert answer.status_code == 303
    job_id = answer.headers["Location"].rsplit("/", 1)[1]
    job = service.store.get_job(job_id)
    assert (job.total_batches, job.request["options"]) == (2, {"delay_ms": 5})
    assert "csrf_token" not in job.request


def test_priority_is_chosen_on_the_form_shown_on_the_pages_and_filters_the_list(
    browser: FlaskClient, service: FanoutService
) -> None:
    """The submit form's priority makes a high job; the job's page says so; the jobs page
    shows each job's priority and its filter keeps the chosen one (an empty choice is any)."""
    answer = browser.post(
        "/ui/submit",
        data={
            "csrf_token": _token(browser),
            "source": "noop",
            "collection": "docs",
            "items": "a",
            "priority": "high",
        },
        headers=ORIGIN,
    )
    high = answer.headers["Location"].rsplit("/", 1)[1]
    normal = _job(service)
    assert service.store.get_job(high).priority is Priority.HIGH

    page = browser.get(f"/ui/jobs/{high}").get_data(as_text=True)
    only_high = browser.get("/ui/jobs?priority=high").get_data(as_text=True)
    any_priority = browser.get("/ui/jobs?priority=").get_data(as_text=True)

    assert "<dt>Priority</dt><dd>high</dd>" in page
    assert high in only_high and normal not in only_high
    assert '<option value="high" selected>' in only_high
    assert high in any_priority and normal in any_priority
    assert '<td data-label="Priority">normal</td>' in any_priority


def test_a_page_sets_its_token_cookie_once_and_sends_security_headers(
    browser: FlaskClient,
) -> None:
    first = browser.get("/ui/jobs")
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ui" in cookie
    assert "Set-Cookie" not in browser.get("/ui/jobs").headers
    policy = first.headers["Content-Security-Policy"]
    assert "script-src 'nonce-" in policy and "frame-ancestors 'none'" in policy
    assert first.headers["Cache-Control"] == "no-store"


# -- paging ------------------------------------------------------------------------------------


def test_the_pager_walks_forward_then_back_to_the_first_page() -> None:
    """Next pushes the current cursor on the trail, prev pops it; past MAX_TRAIL pages the
    trail keeps its newest cursors and prev stops at the oldest one kept."""
    cursors = [None, *(f"c{n}" for n in range(1, MAX_TRAIL + 5))]
    trail: tuple[str | None, ...] = ()
    pager = Pager(cursor=None, trail=(), next_cursor="c1", shown=10, total=999, limit=10)
    assert pager.prev_params is None and pager.first_params is None and pager.start == 1
    for depth in range(1, len(cursors) - 1):
        params = pager.next_params
        assert params is not None and params["cursor"] == cursors[depth]
        trail = decode_trail(params["back"])
        pager = Pager(params["cursor"], trail, cursors[depth + 1], 10, 999, 10)
        assert pager.start == (depth * 10 + 1 if depth <= MAX_TRAIL else None)
    assert len(trail) == MAX_TRAIL and pager.first_params == {}
    for _ in range(MAX_TRAIL):
        params = pager.prev_params
        assert params is not None
        pager = Pager(params.get("cursor"), decode_trail(params.get("back")), None, 10, 999, 10)
    assert pager.prev_params is None  # the oldest page the trail kept


# -- humanized times and sizes -----------------------------------------------------------------

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("before", "text"),
    [
        (timedelta(seconds=2), "just now"),
        (timedelta(seconds=42), "42 s ago"),
        (timedelta(minutes=3, seconds=20), "3 min ago"),
        (timedelta(hours=2, minutes=59), "2 h ago"),
        (timedelta(days=5, hours=1), "5 d ago"),
        (timedelta(minutes=-3), "in 3 min"),
    ],
)
def test_relative_times(before: timedelta, text: str) -> None:
    assert relative_time(NOW - before, NOW) == text


def test_durations_and_sizes() -> None:
    assert duration(None) == "\u2013"
    assert duration(timedelta(seconds=0.42)) == "0.4 s"
    assert duration(timedelta(minutes=3, seconds=5)) == "3 min 5 s"
    assert duration(timedelta(hours=2, minutes=10, seconds=7)) == "2 h 10 min"
    assert duration(timedelta(days=1, hours=3)) == "1 d 3 h"
    assert (byte_size(0), byte_size(1536), byte_size(5 * 1024**3)) == ("0 B", "1.5 KiB", "5.0 GiB")


@pytest.mark.parametrize(
    ("ahead", "text"),
    [
        (timedelta(hours=2), "starts in 2 h"),
        (timedelta(minutes=3, seconds=20), "starts in 3 min"),
        (timedelta(seconds=40), "starts in 40 s"),
        (timedelta(seconds=3), "starting"),
        (timedelta(seconds=-30), "starting"),
    ],
)
def test_start_times(ahead: timedelta, text: str) -> None:
    """A start reads in its largest unit ('starts in 2 h', '3 min'), 'starting' once due."""
    assert start_time(NOW + ahead, NOW) == text


def test_a_scheduled_job_says_when_it_starts_on_the_list_and_its_page(
    browser: FlaskClient, service: FanoutService
) -> None:
    """The list and the job's page show the job scheduled and when it starts (the exact
    time as the title); its page counts only the statuses a batch can have, all pending."""
    start = (datetime.now(UTC) + timedelta(hours=2, minutes=30)).replace(microsecond=0)
    job_id = _job(service, not_before=start.isoformat())

    listed = browser.get("/ui/jobs?status=scheduled").get_data(as_text=True)
    page = browser.get(f"/ui/jobs/{job_id}").get_data(as_text=True)

    exact = f'title="{start:%Y-%m-%d %H:%M:%S} UTC">starts in 2 h</time>'
    assert job_id in listed and exact in listed
    assert 'class="badge s-scheduled">scheduled' in page and exact in page
    counts = re.findall(r'class="count-(\w+)">(\d+)<', page)
    assert counts == [
        ("pending", "1"),
        ("running", "0"),
        ("completed", "0"),
        ("failed", "0"),
        ("cancelled", "0"),
    ]


def test_the_submit_form_schedules_a_job_and_names_a_past_start(
    browser: FlaskClient, service: FanoutService
) -> None:
    """A `not_before` typed into the form schedules the job; one in the past is shown at
    its field and creates nothing."""
    fields = {"source": "noop", "collection": "docs", "items": "a"}
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    refused = browser.post(
        "/ui/submit",
        data={"csrf_token": _token(browser), **fields, "not_before": past},
        headers=ORIGIN,
    )
    assert refused.status_code == 400
    html = refused.get_data(as_text=True)
    errors = dict(re.findall(r'<p class="field-error" id="(\w+)-error">([^<]*)</p>', html))
    assert errors.keys() == {"not_before"} and "is in the past" in errors["not_before"]
    assert _all_jobs(service) == 0

    start = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    accepted = browser.post(
        "/ui/submit",
        data={"csrf_token": _token(browser), **fields, "not_before": start.isoformat()},
        headers=ORIGIN,
    )
    assert accepted.status_code == 303
    job = service.store.get_job(accepted.headers["Location"].rsplit("/", 1)[1])
    assert (job.status, job.not_before) == (JobStatus.SCHEDULED, start)


# -- planning as its own stage ---------------------------------------------------------------


def test_a_job_planned_from_a_manifest_shows_planning_until_its_last_page(
    tmp_path: Path,
) -> None:
    """While pages of its manifest remain, the job and the jobs list say "planning", with
    the items and batches planned so far; once planned, the status is the job's own."""
    manifest = tmp_path / "m.txt"
    manifest.write_text("".join(f"doc-{i}\n" for i in range(30_000)))
    settings = Settings(sqlite_path=tmp_path / "fanout.sqlite3", allowed_roots=(tmp_path,))
    with sqlite_service(settings) as service:
        app = flask.Flask(__name__)
        router = web_router(service)
        app.add_url_rule(
            "/<path:path>", view_func=lambda path: handle_errors(router.dispatch)(flask.request)
        )
        browser = app.test_client()
        job_id = _job(service, items=None, items_from=str(manifest), batch_size=1000)
        service.plan_page(job_id, 0)
        page = browser.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
        assert '<span class="badge s-planning">planning</span>' in page
        said = "Planning: 20000 items in 20 batches so far (1 pages of its manifest or listing"
        assert f"{said} read)" in page
        listed = browser.get("/ui/jobs").get_data(as_text=True)
        assert '<span class="badge s-planning">planning</span>' in listed
        service.plan_page(job_id, 1)
        page = browser.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
        assert "Planning:" not in page and '<span class="badge s-running">running</span>' in page
