"""The callback settings: the secret (required in the cloud, never short) and how many
sweeps redeliver."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.config import Settings
from functions.errors import ConfigError
from functions.queue.local import LocalTaskQueue
from functions.service import FanoutService
from functions.store.sqlite import SqliteJobStore
from tests.support.callbacks import SECRET


def test_defaults_and_environment() -> None:
    """No secret and 5 sweeps by default; both come from FANOUT_*."""
    default = Settings.from_env({})
    assert (default.callback_secret, default.callback_max_sweeps) == (None, 5)
    configured = Settings.from_env(
        {"FANOUT_CALLBACK_SECRET": SECRET, "FANOUT_CALLBACK_MAX_SWEEPS": "2"}
    )
    assert (configured.callback_secret, configured.callback_max_sweeps) == (SECRET, 2)
    with pytest.raises(ConfigError, match="FANOUT_CALLBACK_MAX_SWEEPS"):
        Settings.from_env({"FANOUT_CALLBACK_MAX_SWEEPS": "0"})


def test_the_cloud_refuses_to_start_without_a_secret() -> None:
    """On Cloud Run (K_REVISION set) a deployment without the secret is a configuration
    error, not unsigned callbacks."""
    cloud = {"K_SERVICE": "fanout-run-batch", "K_REVISION": "fanout-run-batch-00001-abc"}
    with pytest.raises(ConfigError, match="FANOUT_CALLBACK_SECRET must be set in the cloud"):
        Settings.from_env(cloud)
    assert Settings.from_env({**cloud, "FANOUT_CALLBACK_SECRET": SECRET}).runtime.in_cloud


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        Settings.from_env({"FANOUT_CALLBACK_SECRET": "short"})


def test_the_service_signs_with_the_configured_secret(tmp_path: Path) -> None:
    settings = Settings(sqlite_path=tmp_path / "f.sqlite3", callback_secret=SECRET)
    store = SqliteJobStore(settings.sqlite_path)
    queue = LocalTaskQueue(settings.sqlite_path, settings.dispatch)
    try:
        service = FanoutService(store, queue, settings)
        assert service.callbacks.secret == SECRET
        assert service.callbacks.allow_local_http
    finally:
        store.close()
        queue.close()
