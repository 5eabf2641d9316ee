"""Cloud Functions entry points: one per deployed function, each thin (decode, call, encode).

All logic lives in the `functions` package. Do not rename these functions on import: the
Functions Framework serves a renamed `cloud_event` function as plain HTTP.
"""

from __future__ import annotations

import base64
import logging

import flask
import functions_framework
from cloudevents.http.event import CloudEvent
from werkzeug.exceptions import ServiceUnavailable

from functions.app import configured, get_service
from functions.bounded_json import loads_bounded
from functions.cleanup_request import MAX_BODY_BYTES as CLEANUP_BODY_BYTES
from functions.cleanup_request import CleanupRequest
from functions.errors import FanoutError, InvalidArgument, TransientError
from functions.ingest_request import MAX_BODY_BYTES, IngestRequest
from functions.observability.entry import logged_as
from functions.observability.trace import trace_id_from
from functions.planner import parse_plan_task
from functions.service import WORKER_SECRET_HEADER
from functions.web.app import ingest_router, router_for, web_router
from functions.web.framework import answer_framework_errors
from functions.web.http import check_secret, handle_errors, json_response, read_json_object

log = logging.getLogger("fanout.main")

# The Functions Framework imports this module inside its app's context: its own 404s (a
# path its catch-all rule does not match) answer our error shape too.
if flask.has_app_context():
    answer_framework_errors(flask.current_app)


@functions_framework.http
@configured
@logged_as("ingest")
@handle_errors
def ingest(request: flask.Request) -> flask.Response:
    """POST / an IngestRequest; 202 with the job id and where to watch it
    (functions/web/ingest.py)."""
    return router_for(get_service(), ingest_router).dispatch(request)


@functions_framework.cloud_event
@configured
@logged_as("ingest_pubsub")
def ingest_pubsub(event: CloudEvent) -> None:
    """A Pub/Sub message whose data is an IngestRequest. Returning acknowledges it; a 503
    asks Pub/Sub to deliver it again (a transient failure), and the push subscription
    sends it to the dead-letter topic after a bounded number of deliveries (infra/).

    Bad input, and any error we did not expect, is logged once with the message id and
    acknowledged: delivering it again would fail the same way."""
    message_id = event.get("id")
    try:
        message = (event.data or {}).get("message") or {}
        raw = base64.b64decode(message.get("data") or b"")
        if len(raw) > MAX_BODY_BYTES:
            raise InvalidArgument(f"message data is over {MAX_BODY_BYTES} bytes")
        request = IngestRequest.model_validate(loads_bounded(raw, what="message data"))
        # The push request's trace (Pub/Sub carries the publisher's) becomes the job's.
        trace_id = trace_id_from(flask.request.headers) if flask.has_request_context() else None
        get_service().submit(request, trace_id=trace_id)
    except TransientError as error:
        log.warning(
            "pubsub ingest: transient failure, asking for redelivery: %s",
            error,
            extra={"json_fields": {"message_id": message_id}},
        )
        raise ServiceUnavailable(str(error)) from None
    except (FanoutError, ValueError) as error:  # pydantic's ValidationError is a ValueError
        log.error(
            "pubsub ingest refused message %s: %s",
            message_id,
            error,
            extra={"json_fields": {"message_id": message_id}},
        )
    except Exception:
        log.exception(
            "pubsub ingest failed on message %s; acknowledged, not retried",
            message_id,
            extra={"json_fields": {"message_id": message_id}},
        )


@functions_framework.http
@configured
@logged_as("run_batch")
@handle_errors
def run_batch(request: flask.Request) -> flask.Response:
    """The Cloud Tasks target: run one batch, or plan one page of a job. 2xx acknowledges
    the task (done, duplicate or cancelled); 409 and 5xx make the queue retry."""
    service = get_service()
    check_secret(request, WORKER_SECRET_HEADER, service.settings.worker_secret)
    body = read_json_object(request, 64 * 1024)
    plan = parse_plan_task(body)
    if plan is not None:  # a planner task (functions/planner.py)
        return json_response(
            service.plan_page(plan.job_id, plan.page, worker_url=plan.worker_url).to_dict()
        )
    batch_id = body.get("batch_id")
    if not isinstance(batch_id, str):
        raise InvalidArgument('body must be {"batch_id": "..."} or {"plan": "...", "page": n}')
    result = service.run_batch(batch_id)
    return json_response(
        {
            "batch_id": batch_id,
            "ran": result.ran,
            "reason": result.reason,
            "status": result.outcome.status.value if result.outcome else None,
            "finalized": result.finalized,
        }
    )


@functions_framework.http
@configured
@logged_as("jobs_api")
@handle_errors
def jobs_api(request: flask.Request) -> flask.Response:
    """The jobs REST API, its OpenAPI document and reference, the pages (functions/web/)."""
    return router_for(get_service(), web_router).dispatch(request)


@functions_framework.http
@configured
@logged_as("cleanup_jobs")
@handle_errors
def cleanup_jobs(request: flask.Request) -> flask.Response:
    """Called by Cloud Scheduler: sweep stuck work, delete jobs past the retention; answers
    (and logs) what it did. `?dry_run=true` or {"dry_run": true}: what it would do, and
    nothing changed."""
    # Cloud Scheduler sends no body at all.
    sent = request.content_length or request.headers.get("Transfer-Encoding") == "chunked"
    body = read_json_object(request, CLEANUP_BODY_BYTES) if sent else None
    asked = CleanupRequest.parse(request.args.to_dict(flat=False), body)
    return json_response(get_service().cleanup(dry_run=asked.dry_run).to_dict())
