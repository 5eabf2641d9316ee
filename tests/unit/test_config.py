"""Settings come from FANOUT_* variables, with local defaults, and refuse bad values."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from functions.config import Settings
from functions.errors import ConfigError
from functions.store import open_store
from functions.store.firestore import FirestoreJobStore
from functions.store.sqlite import SqliteJobStore


def test_defaults_are_the_embedded_local_stack() -> None:
    """With nothing set, Fanout runs on SQLite under .local/."""
    settings = Settings.from_env({})
    assert settings.store == "sqlite"
    assert settings.sqlite_path == Path(".local/fanout.sqlite3")
    assert settings.retention == timedelta(days=30)


def test_values_are_read_from_prefixed_variables(tmp_path: Path) -> None:
    """FANOUT_* variables override the defaults and choose the backend."""
    env = {
        "FANOUT_STORE": "firestore",
        "FANOUT_GCP_PROJECT": "p",
        "FANOUT_RETENTION_DAYS": "7",
        "FANOUT_LEASE_SECONDS": "90",
        "STORE": "ignored",
    }
    settings = Settings.from_env(env)
    assert (settings.store, settings.gcp_project) == ("firestore", "p")
    assert settings.retention == timedelta(days=7) and settings.lease == timedelta(seconds=90)
    assert isinstance(open_store(settings), FirestoreJobStore)
    local = Settings.from_env({"FANOUT_SQLITE_PATH": str(tmp_path / "s.db")})
    store = open_store(local)
    assert isinstance(store, SqliteJobStore) and store.path == tmp_path / "s.db"
    store.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FANOUT_STORE": "redis"}, "FANOUT_STORE must be 'sqlite' or 'firestore'"),
        ({"FANOUT_RETENTION_DAYS": "soon"}, "FANOUT_RETENTION_DAYS must be a whole number"),
        ({"FANOUT_LEASE_SECONDS": "0"}, "FANOUT_LEASE_SECONDS must be at least 1"),
        (
            {"FANOUT_MALLOC_MMAP_THRESHOLD": "-1"},
            "FANOUT_MALLOC_MMAP_THRESHOLD must be at least 0",
        ),
    ],
)
def test_bad_values_raise_config_error(env: dict[str, str], message: str) -> None:
    """An unusable setting fails at start-up with a message naming the variable."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
