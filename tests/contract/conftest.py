"""Runs every contract test against every backend: SQLite, and Firestore on the emulators,
for the store; the local queue and Cloud Tasks on its emulator, for the queue.

Tests that hit a documented gap of the npm Firestore emulator carry
`@pytest.mark.firestore_gap("...")`; on that emulator they become strict xfails, so the gap
list stays explicit and the same tests run for real on Google's emulator. Tests marked
`@pytest.mark.firestore_only("why")` pin a race SQLite cannot have, and run on Firestore only.
Queue tests that hit a gap of `gcloud-tasks-emulator` carry `@pytest.mark.tasks_emulator_gap`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.cloud import firestore

from functions.local.emulators import Emulator, google_firestore_available
from functions.store.firestore import FirestoreJobStore
from functions.store.protocol import JobStore
from functions.store.sqlite import SqliteJobStore

StoreFactory = Callable[[], JobStore]


def _backends(config: pytest.Config) -> list[str]:
    choice = config.getoption("--firestore")
    firestores = {
        "auto": ["firestore-npm", *(["firestore-google"] if google_firestore_available() else [])],
        "npm": ["firestore-npm"],
        "google": ["firestore-google"],
        "both": ["firestore-npm", "firestore-google"],
        "none": [],
    }[choice]
    return ["sqlite", *firestores]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = _backends(metafunc.config)
        if metafunc.definition.get_closest_marker("firestore_only"):
            backends = [b for b in backends if b != "sqlite"]
        metafunc.parametrize("backend", backends)


# A gap marker, the fixture that picks the backend, the backend with the gap, its name.
EMULATOR_GAPS = [
    ("firestore_gap", "backend", "firestore-npm", "npm Firestore emulator"),
    ("tasks_emulator_gap", "queue_backend", "cloud-tasks-emulator", "gcloud-tasks-emulator"),
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        for marker, fixture, backend, emulator in EMULATOR_GAPS:
            gap = item.get_closest_marker(marker)
            if gap and callspec is not None and callspec.params.get(fixture) == backend:
                item.add_marker(
                    pytest.mark.xfail(strict=True, reason=f"{emulator} gap: {gap.args[0]}")
                )


@pytest.fixture
def store_factory(
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[StoreFactory]:
    """Builds stores that share one fresh state: a new SQLite file, or a new Firestore
    project on the emulator (projects are isolated from each other)."""
    opened: list[JobStore] = []
    project = f"fanout-test-{uuid.uuid4().hex[:12]}"
    if backend != "sqlite":
        emulator: Emulator = request.getfixturevalue(f"{backend.replace('-', '_')}_emulator")
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.host)

    def make() -> JobStore:
        store: JobStore
        if backend == "sqlite":
            store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        else:
            store = FirestoreJobStore(client=firestore.Client(project=project))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> JobStore:
    return store_factory()
