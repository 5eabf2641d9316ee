"""Job state: the `JobStore` protocol and its two backends (SQLite locally, Firestore in
production). `open_store` picks one from the settings; backends import their client
libraries only when chosen."""

from __future__ import annotations

from functions.config import Settings
from functions.store.protocol import JobStore


def open_store(settings: Settings) -> JobStore:
    """The configured store. Its client connects lazily, on first use."""
    if settings.store == "firestore":
        from functions.store.firestore import FirestoreJobStore

        return FirestoreJobStore(
            project=settings.gcp_project,
            database=settings.firestore_database,
            retention=settings.retention,
        )
    from functions.store.sqlite import SqliteJobStore

    return SqliteJobStore(settings.sqlite_path, retention=settings.retention)
