"""Settings: the one place that reads environment variables (all prefixed `FANOUT_`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from functions.errors import ConfigError

PREFIX = "FANOUT_"

StoreKind = Literal["sqlite", "firestore"]
DEFAULT_SQLITE_PATH = Path(".local/fanout.sqlite3")
DEFAULT_FIRESTORE_DATABASE = "(default)"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with the embedded local defaults."""

    store: StoreKind = "sqlite"
    sqlite_path: Path = DEFAULT_SQLITE_PATH
    gcp_project: str | None = None
    firestore_database: str = DEFAULT_FIRESTORE_DATABASE
    retention: timedelta = timedelta(days=30)
    lease: timedelta = timedelta(minutes=10)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        store = _read(env, "STORE") or "sqlite"
        if store not in ("sqlite", "firestore"):
            raise ConfigError(f"{PREFIX}STORE must be 'sqlite' or 'firestore', got {store!r}")
        return cls(
            store=store,  # type: ignore[arg-type]  # checked just above
            sqlite_path=Path(_read(env, "SQLITE_PATH") or DEFAULT_SQLITE_PATH),
            gcp_project=_read(env, "GCP_PROJECT"),
            firestore_database=_read(env, "FIRESTORE_DATABASE") or DEFAULT_FIRESTORE_DATABASE,
            retention=timedelta(days=_positive_int(env, "RETENTION_DAYS", 30)),
            lease=timedelta(seconds=_positive_int(env, "LEASE_SECONDS", 600)),
        )


def _read(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(PREFIX + name, "").strip()
    return value or None


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _read(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{PREFIX}{name} must be at least 1, got {value}")
    return value
