"""What each HTTP function serves: jobs_api's routes (the API, its document, the pages) and
ingest's, each dispatched by a `Router` built once per service instance, at its first
request."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from functions.processors import processor_names
from functions.service import FanoutService
from functions.web.api import API_ROUTES, JobsApi
from functions.web.ingest import INGEST_ROUTES, Ingest
from functions.web.pages import PAGE_ROUTES, Pages
from functions.web.reference import DOC_ROUTES, Reference
from functions.web.routes import Handler, Route, Router


def web_routes() -> list[Route]:
    """Every route jobs_api serves, in the order the document lists them."""
    return [*API_ROUTES, *DOC_ROUTES, *PAGE_ROUTES]


def web_router(service: FanoutService) -> Router:
    """jobs_api's router: every route of `web_routes()` with its handler."""
    routes = web_routes()
    settings = service.settings
    reference = Reference(
        routes,
        api_url=settings.api_url,
        ingest_routes=INGEST_ROUTES,
        ingest_url=settings.ingest_url,
        sources=processor_names(),
    )
    handlers = _merged(JobsApi(service).handlers(), reference.handlers(), Pages(service).handlers())
    return Router(routes, handlers)


def ingest_router(service: FanoutService) -> Router:
    """ingest's router: its one route (POST /)."""
    return Router(INGEST_ROUTES, Ingest(service).handlers())


def _merged(*groups: dict[str, Handler]) -> dict[str, Handler]:
    handlers: dict[str, Handler] = {}
    for group in groups:
        clash = handlers.keys() & group.keys()
        if clash:
            raise ValueError(f"endpoints named twice: {sorted(clash)}")
        handlers |= group
    return handlers


RouterFactory = Callable[[FanoutService], Router]
_lock = threading.Lock()
_routers: weakref.WeakKeyDictionary[FanoutService, dict[RouterFactory, Router]] = (
    weakref.WeakKeyDictionary()
)


def router_for(service: FanoutService, factory: RouterFactory) -> Router:
    """`factory(service)`, built at the first request of this instance and then reused."""
    with _lock:
        built = _routers.setdefault(service, {})
        if factory not in built:
            built[factory] = factory(service)
        return built[factory]
