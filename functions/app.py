"""The per-instance service: built on first use, once, from the environment.

Cloud Functions reuse an instance for many requests, so clients (Firestore, Cloud Tasks,
SQLite connections) are built lazily on the first request and kept, never at import time.
"""

from __future__ import annotations

import threading

from functions.config import Settings
from functions.queue.factory import open_queue
from functions.service import FanoutService
from functions.store import open_store

_lock = threading.Lock()
_service: FanoutService | None = None


def get_service() -> FanoutService:
    global _service
    if _service is None:
        with _lock:
            if _service is None:
                settings = Settings.from_env()
                # Imported here: google-cloud-logging's handler is a third of this module's
                # import time, and a process that never serves a request never needs it.
                from functions.observability.handler import configure_logging

                configure_logging(
                    project=settings.gcp_project, log_dir=settings.log_dir, level=settings.log_level
                )
                _service = FanoutService(open_store(settings), open_queue(settings), settings)
    return _service
