"""The `ingest` function's one route, declared like the jobs API's so that /openapi.json
documents it (under the ingest function's own URL) from the models it really uses."""

from __future__ import annotations

import flask

from functions.ingest_request import MAX_BODY_BYTES, IngestRequest
from functions.observability.trace import trace_id_from
from functions.service import FanoutService
from functions.web.http import read_json_object, view_response
from functions.web.models import IngestAccepted
from functions.web.routes import Handler, Route

INGEST_ROUTES: list[Route] = [
    Route(
        "POST",
        "/",
        "ingest",
        "Start an ingestion: the job is created, planned and its batches enqueued",
        body=IngestRequest,
        response=IngestAccepted,
        status=202,
        errors=(413,),
        tags=("ingest",),
        max_body=MAX_BODY_BYTES,
    ),
]


class Ingest:
    """The handler of `INGEST_ROUTES`, bound to one service."""

    def __init__(self, service: FanoutService) -> None:
        self.service = service

    def handlers(self) -> dict[str, Handler]:
        return {"ingest": self.ingest}

    def ingest(self, request: flask.Request) -> flask.Response:
        """202 with the job id and where to watch it. The job joins the caller's trace
        (`traceparent` or `X-Cloud-Trace-Context`), or starts its own."""
        body = read_json_object(request, MAX_BODY_BYTES)
        job, created = self.service.submit(
            IngestRequest.model_validate(body), trace_id=trace_id_from(request.headers)
        )
        return view_response(IngestAccepted.build(job, created, self.service.settings), 202)
