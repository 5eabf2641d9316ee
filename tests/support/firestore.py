"""Firestore emulators, one of each per test session (per xdist worker), shared by the
contract suite and the end-to-end stacks: each user takes a project of its own on them
(projects are isolated from each other), instead of a Java process of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.local.emulators import (
    Emulator,
    google_firestore_available,
    start_google_firestore,
    start_npm_firestore,
)


@pytest.fixture(scope="session")
def firestore_npm_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = start_npm_firestore(tmp_path_factory.mktemp("emulators"))
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def firestore_google_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = start_google_firestore(tmp_path_factory.mktemp("emulators"))
    yield emulator
    emulator.stop()


@pytest.fixture
def firestore_emulator(request: pytest.FixtureRequest) -> Emulator:
    """The emulator a local stack uses: Google's when it is installed (as `LocalStack`
    picks), else the npm one."""
    kind = "google" if google_firestore_available() else "npm"
    emulator: Emulator = request.getfixturevalue(f"firestore_{kind}_emulator")
    return emulator
