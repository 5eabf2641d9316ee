"""Cloud Storage fixtures (a pytest plugin, see tests/conftest.py): one emulator
(fake-gcs-server) for the session, and fresh buckets filled through the real client."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from google.cloud import storage  # type: ignore[attr-defined]  # untyped package

from functions.local.emulators import start_fake_gcs

# Object name -> its bytes, or (bytes, content type).
GcsObjects = Mapping[str, bytes | tuple[bytes, str]]
MakeBucket = Callable[[GcsObjects], str]

# The client's connection pool holds 10 connections; more threads would only queue.
UPLOAD_THREADS = 8


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The emulator's URL. While the session lasts, `STORAGE_EMULATOR_HOST` points every
    `storage.Client` of this process at it; the server stops at the end, even on failure."""
    emulator = start_fake_gcs(tmp_path_factory.mktemp("fake-gcs"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator.host}")
            yield f"http://{emulator.host}"
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def gcs_client(fake_gcs: str) -> Iterator[Any]:
    """A real google-cloud-storage client on the emulator (anonymous credentials)."""
    client = storage.Client(project="fanout-test")
    yield client
    client.close()


@pytest.fixture
def make_bucket(gcs_client: Any) -> MakeBucket:
    """Creates a bucket with a fresh name holding `objects`, and returns its name."""

    def make(objects: GcsObjects) -> str:
        bucket = gcs_client.create_bucket(f"fanout-test-{uuid.uuid4().hex[:16]}")

        def upload(entry: tuple[str, bytes | tuple[bytes, str]]) -> None:
            name, value = entry
            data, content_type = value if isinstance(value, tuple) else (value, None)
            bucket.blob(name).upload_from_string(data, content_type=content_type)

        with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
            list(pool.map(upload, objects.items()))  # list(): re-raise any upload's error
        return str(bucket.name)

    return make
