"""The per-instance service: built on first use, once, from the environment.

Cloud Functions reuse an instance for many requests, so clients (Firestore, Cloud Tasks,
SQLite connections) are built lazily on the first request and kept, never at import time.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from functions.config import Settings
from functions.queue.factory import open_queue
from functions.service import FanoutService
from functions.store import open_store

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_settings: Settings | None = None
_service: FanoutService | None = None


def instance_settings() -> Settings:
    """The instance's settings, read once, with logging routed by them (structured lines
    to stdout, or to the local stack's log file)."""
    global _settings
    if _settings is None:
        with _lock:
            if _settings is None:
                settings = Settings.from_env()
                # Imported here: google-cloud-logging's handler is a third of this module's
                # import time, and a process that never serves a request never needs it.
                from functions.observability.handler import configure_logging

                configure_logging(
                    project=settings.gcp_project, log_dir=settings.log_dir, level=settings.log_level
                )
                _settings = settings
    return _settings


def configured(entry_point: Callable[P, R]) -> Callable[P, R]:
    """An entry point whose every line is structured, including the lines of a request
    refused before the service is needed (a malformed Pub/Sub message on a new instance).
    The wrapper keeps the entry point's name: the Functions Framework looks it up by name."""

    @functools.wraps(entry_point)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        instance_settings()
        return entry_point(*args, **kwargs)

    return wrapper


def get_service() -> FanoutService:
    global _service
    if _service is None:
        settings = instance_settings()
        with _lock:
            if _service is None:
                _service = FanoutService(open_store(settings), open_queue(settings), settings)
    return _service
