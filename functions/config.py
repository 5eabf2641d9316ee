"""Settings: the one place that reads environment variables (prefixed `FANOUT_`, plus the
`K_SERVICE` and `K_REVISION` that Cloud Run sets)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from functions.errors import ConfigError
from functions.planner import PAGE_ITEMS
from functions.priority import Priority

PREFIX = "FANOUT_"

StoreKind = Literal["sqlite", "firestore"]
QueueKind = Literal["local", "cloud_tasks"]
EmbedderKind = Literal["local", "vertex", "none"]
DEFAULT_SQLITE_PATH = Path(".local/fanout.sqlite3")
# The local stack's URLs at its default port base (`make dev`).
DEFAULT_INGEST_URL = "http://127.0.0.1:8081"
DEFAULT_WORKER_URL = "http://127.0.0.1:8082/"
DEFAULT_API_URL = "http://127.0.0.1:8083"
DEFAULT_FIRESTORE_DATABASE = "(default)"
DEFAULT_LANCEDB_URI = ".local/lancedb"
DEFAULT_MODEL_CACHE = Path(".local/models")
MiB = 1024 * 1024
# An HMAC key shorter than this is refused (the cloud's is 48 random characters).
MIN_SECRET_CHARS = 16


@dataclass(frozen=True, slots=True)
class IngestionSettings:
    """Where the `documents` processor reads from, how it embeds, and where it writes."""

    # LanceDB database: a directory locally, a gs:// URI in production.
    lancedb_uri: str = DEFAULT_LANCEDB_URI
    # The default embedder of a request that names none.
    embedder: EmbedderKind = "local"
    # The model `local` runs (functions/ingestion/embedders/local_models.py), and where
    # its int8 copy is cached.
    local_model: str = "minilm-l3"
    model_cache: Path = DEFAULT_MODEL_CACHE
    vertex_model: str = "text-embedding-005"
    vertex_location: str = "us-central1"
    # gs:// sources must be in one of these buckets; none allowed when empty.
    allowed_buckets: tuple[str, ...] = ()
    # A file larger than this fails (that file only) without being read.
    max_file_bytes: int = 32 * MiB
    # A batch closes before its items' bytes would pass this (one giant file runs alone).
    max_batch_bytes: int = 64 * MiB
    # Native allocations of this many bytes or more get their own mapping, unmapped when
    # freed (functions/ingestion/native_heap.py); 0 leaves glibc's sliding threshold.
    malloc_mmap_threshold: int = 128 * 1024


@dataclass(frozen=True, slots=True)
class PriorityShares:
    """How the local dispatcher shares its slots between the priority classes while more
    than one has tasks due: in proportion to the dispatch rates infra/queue.tf gives their
    Cloud Tasks queues (its defaults; tests/infra keeps the two in step). Every share is
    above zero, so no class starves."""

    high: int = 500
    normal: int = 500
    low: int = 100

    def of(self, priority: Priority) -> int:
        share: int = getattr(self, priority.value)
        return share


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """Cloud Tasks' queue semantics. In the cloud they are set on the queue (infra/);
    locally the dispatcher process applies them."""

    max_concurrent: int = 16
    # Retries at 1, 2, 4 ... 60 s: the 10 attempts span about 4 minutes, so the queue
    # itself rides out a worker restart or a deploy (infra/queue.tf keeps the same).
    max_attempts: int = 10
    min_backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(seconds=60)
    deadline: timedelta = timedelta(minutes=10)
    queue_name: str = "fanout-batches"
    # The queues of the other priority classes (CloudTasksSettings' names, for the headers).
    high_queue_name: str = "fanout-batches-high"
    low_queue_name: str = "fanout-batches-low"
    # Chaos knob for tests and demos: the local dispatcher delivers every task twice.
    duplicate_delivery: bool = False
    shares: PriorityShares = PriorityShares()

    def queue_name_for(self, priority: Priority) -> str:
        """The queue a task of `priority` stands in (X-CloudTasks-QueueName)."""
        return {Priority.HIGH: self.high_queue_name, Priority.LOW: self.low_queue_name}.get(
            priority, self.queue_name
        )


_DISPATCH = DispatchSettings()  # the defaults, for Settings.from_env
MIN_BACKOFF = _DISPATCH.min_backoff.total_seconds()


def retry_window(dispatch: DispatchSettings) -> timedelta:
    """The longest the queue can keep one task alive after its first dispatch: every
    attempt running to its deadline, plus the backoff before each retry, doubling from
    `min_backoff` and capped at `max_backoff` (Cloud Tasks' `max_doublings` = 16 doubles
    1 s past the 60 s cap; functions/queue/local.py retries the same way). A task whose
    batch is still pending after this has been dropped: no attempt reached the worker."""
    low, high = dispatch.min_backoff.total_seconds(), dispatch.max_backoff.total_seconds()
    # In float seconds, with the exponent bounded: a timedelta overflows long before.
    waits = sum(min(high, low * 2.0 ** min(n - 1, 1000)) for n in range(1, dispatch.max_attempts))
    return dispatch.max_attempts * dispatch.deadline + timedelta(seconds=waits)


@dataclass(frozen=True, slots=True)
class CloudTasksSettings:
    project: str | None = None
    location: str = "us-central1"
    # The normal class's queue; high and low have their own (infra/queue.tf).
    queue: str = "fanout-batches"
    high_queue: str = "fanout-batches-high"
    low_queue: str = "fanout-batches-low"
    # OIDC token Cloud Tasks attaches to each request; IAM checks it at the worker.
    service_account: str | None = None
    audience: str | None = None
    # host:port of a Cloud Tasks emulator (tests); None means the real service.
    emulator_host: str | None = None

    def queue_for(self, priority: Priority) -> str:
        """The queue the tasks of `priority` jobs go to."""
        return {Priority.HIGH: self.high_queue, Priority.LOW: self.low_queue}.get(
            priority, self.queue
        )


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Where this instance runs: Cloud Run sets K_SERVICE and K_REVISION on every function
    instance; locally they are unset and the host and pid say where a batch ran."""

    service: str | None = None
    revision: str | None = None

    @property
    def in_cloud(self) -> bool:
        return self.revision is not None


LOG_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with the embedded local defaults."""

    store: StoreKind = "sqlite"
    sqlite_path: Path = DEFAULT_SQLITE_PATH
    gcp_project: str | None = None
    firestore_database: str = DEFAULT_FIRESTORE_DATABASE
    retention: timedelta = timedelta(days=30)
    lease: timedelta = timedelta(minutes=10)
    queue: QueueKind = "local"
    # Where tasks are delivered: the run_batch function's URL.
    worker_url: str = DEFAULT_WORKER_URL
    # Local stack only: run_batch refuses calls without this shared secret header.
    worker_secret: str | None = None
    dispatch: DispatchSettings = DispatchSettings()
    cloud_tasks: CloudTasksSettings = CloudTasksSettings()
    # Input locations must lie under one of these directories.
    allowed_roots: tuple[Path, ...] = (Path("samples"),)
    # Public base URL of the jobs API, for the status_url in ingest replies.
    api_url: str = DEFAULT_API_URL
    # Public URL of the ingest function, where /openapi.json says to POST requests.
    ingest_url: str = DEFAULT_INGEST_URL
    # A running batch writes progress (and checks for cancellation) at most this often.
    progress_interval: timedelta = timedelta(seconds=1)
    # Batches recorded this long ago and still not enqueued are enqueued by the sweeper.
    # The same grace is added to the queue's retry window (`retry_window`) before the
    # sweeper takes a pending batch's task for dropped: the queue's pick-up delay and
    # clock skew.
    enqueue_grace: timedelta = timedelta(seconds=60)
    # The sweeper enqueues a batch whose task was dropped again, under a new task name, this
    # many times; when the last of those is dropped too, it fails the batch.
    max_dispatch_rounds: int = 3
    # A job still pending (never planned) this long after its creation is failed by the
    # sweeper: the instance that was planning it died.
    planning_timeout: timedelta = timedelta(minutes=15)
    # A planner page (functions/planner.py) reads at most this many items; a location whose
    # listing holds more than one page is planned by pages, not in the request.
    plan_page_items: int = PAGE_ITEMS
    # Fault injection (functions/queue/chaos.py): refuse tasks past this many per submit.
    chaos_enqueue_limit: int | None = None
    # Every callback is signed with this (functions/signing.py); required in the cloud, and
    # without it no callback is sent.
    callback_secret: str | None = None
    # A callback still failing after its sender's retries is sent again by the sweeper, at
    # most this many times (each a lease after the previous attempt started).
    callback_max_sweeps: int = 5
    ingestion: IngestionSettings = IngestionSettings()
    # The `noop` source (tests and benchmarks: it reads a file a request names). On in
    # `Settings()` and on the local stack, which sets FANOUT_ENABLE_NOOP; off in the
    # environment's absence, so a deployed function refuses `noop` requests.
    enable_noop: bool = True
    # Logs: stdout (Cloud Logging) unless a directory is given (the local stack).
    log_dir: Path | None = None
    log_level: int = logging.INFO
    # Deployed functions are named PREFIX + entry point (infra/); logs links filter on them.
    service_prefix: str = "fanout-"
    runtime: RuntimeSettings = RuntimeSettings()

    def __post_init__(self) -> None:
        if self.callback_secret is not None and len(self.callback_secret) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"{PREFIX}CALLBACK_SECRET must be at least {MIN_SECRET_CHARS} characters"
            )
        if self.runtime.in_cloud and self.callback_secret is None:
            raise ConfigError(
                f"{PREFIX}CALLBACK_SECRET must be set in the cloud: callbacks are signed"
            )

    @property
    def local(self) -> bool:
        """The embedded local stack (SQLite queue), as opposed to Cloud Tasks."""
        return self.queue == "local"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            store=_choice(env, "STORE", ("sqlite", "firestore"), "sqlite"),  # type: ignore[arg-type]
            sqlite_path=Path(_read(env, "SQLITE_PATH") or DEFAULT_SQLITE_PATH),
            gcp_project=_read(env, "GCP_PROJECT"),
            firestore_database=_read(env, "FIRESTORE_DATABASE") or DEFAULT_FIRESTORE_DATABASE,
            retention=timedelta(days=_positive_int(env, "RETENTION_DAYS", 30)),
            lease=timedelta(seconds=_positive_int(env, "LEASE_SECONDS", 600)),
            queue=_choice(env, "QUEUE", ("local", "cloud_tasks"), "local"),  # type: ignore[arg-type]
            worker_url=_read(env, "WORKER_URL") or DEFAULT_WORKER_URL,
            worker_secret=_read(env, "WORKER_SECRET"),
            dispatch=DispatchSettings(
                max_concurrent=_positive_int(env, "MAX_CONCURRENT_DISPATCHES", 16),
                max_attempts=_positive_int(env, "MAX_ATTEMPTS", _DISPATCH.max_attempts),
                min_backoff=timedelta(
                    seconds=_positive_float(env, "MIN_BACKOFF_SECONDS", MIN_BACKOFF)
                ),
                max_backoff=timedelta(seconds=_positive_float(env, "MAX_BACKOFF_SECONDS", 60)),
                deadline=timedelta(seconds=_positive_float(env, "DISPATCH_DEADLINE_SECONDS", 600)),
                queue_name=_read(env, "TASKS_QUEUE") or "fanout-batches",
                high_queue_name=_read(env, "TASKS_QUEUE_HIGH") or "fanout-batches-high",
                low_queue_name=_read(env, "TASKS_QUEUE_LOW") or "fanout-batches-low",
                duplicate_delivery=_flag(env, "DUPLICATE_DELIVERY"),
            ),
            allowed_roots=_paths(env, "ALLOWED_ROOTS") or (Path("samples"),),
            api_url=(_read(env, "API_URL") or DEFAULT_API_URL).rstrip("/"),
            ingest_url=(_read(env, "INGEST_URL") or DEFAULT_INGEST_URL).rstrip("/"),
            progress_interval=timedelta(
                seconds=_positive_float(env, "PROGRESS_INTERVAL_SECONDS", 1.0)
            ),
            enqueue_grace=timedelta(seconds=_positive_float(env, "ENQUEUE_GRACE_SECONDS", 60)),
            max_dispatch_rounds=_positive_int(env, "MAX_DISPATCH_ROUNDS", 3),
            planning_timeout=timedelta(
                seconds=_positive_float(env, "PLANNING_TIMEOUT_SECONDS", 900)
            ),
            plan_page_items=_positive_int(env, "PLAN_PAGE_ITEMS", PAGE_ITEMS),
            chaos_enqueue_limit=(
                _positive_int(env, "CHAOS_ENQUEUE_LIMIT", 1)
                if _read(env, "CHAOS_ENQUEUE_LIMIT")
                else None
            ),
            callback_secret=_read(env, "CALLBACK_SECRET"),
            callback_max_sweeps=_positive_int(env, "CALLBACK_MAX_SWEEPS", 5),
            ingestion=IngestionSettings(
                lancedb_uri=_read(env, "LANCEDB_URI") or DEFAULT_LANCEDB_URI,
                embedder=_choice(env, "EMBEDDER", ("local", "vertex", "none"), "local"),  # type: ignore[arg-type]
                local_model=_read(env, "LOCAL_MODEL") or "minilm-l3",
                model_cache=Path(_read(env, "MODEL_CACHE") or DEFAULT_MODEL_CACHE),
                vertex_model=_read(env, "VERTEX_MODEL") or "text-embedding-005",
                vertex_location=_read(env, "VERTEX_LOCATION") or "us-central1",
                allowed_buckets=tuple(
                    b.strip() for b in (_read(env, "ALLOWED_BUCKETS") or "").split(",") if b.strip()
                ),
                max_file_bytes=_positive_int(env, "MAX_FILE_BYTES", 32 * MiB),
                max_batch_bytes=_positive_int(env, "MAX_BATCH_BYTES", 64 * MiB),
                malloc_mmap_threshold=_positive_int(
                    env, "MALLOC_MMAP_THRESHOLD", 128 * 1024, minimum=0
                ),
            ),
            enable_noop=_flag(env, "ENABLE_NOOP"),
            log_dir=Path(log_dir) if (log_dir := _read(env, "LOG_DIR")) else None,
            log_level=LOG_LEVELS[_choice(env, "LOG_LEVEL", tuple(LOG_LEVELS), "INFO")],
            service_prefix=_read(env, "SERVICE_PREFIX") or "fanout-",
            runtime=RuntimeSettings(
                service=env.get("K_SERVICE") or None, revision=env.get("K_REVISION") or None
            ),
            cloud_tasks=CloudTasksSettings(
                project=_read(env, "TASKS_PROJECT") or _read(env, "GCP_PROJECT"),
                location=_read(env, "TASKS_LOCATION") or "us-central1",
                queue=_read(env, "TASKS_QUEUE") or "fanout-batches",
                high_queue=_read(env, "TASKS_QUEUE_HIGH") or "fanout-batches-high",
                low_queue=_read(env, "TASKS_QUEUE_LOW") or "fanout-batches-low",
                service_account=_read(env, "TASKS_SERVICE_ACCOUNT"),
                audience=_read(env, "TASKS_AUDIENCE"),
                emulator_host=_read(env, "TASKS_EMULATOR_HOST"),
            ),
        )


@dataclass(frozen=True, slots=True)
class CliSettings:
    """Where the `fanout` command sends its requests (functions/cli/target.py): a deployed
    API's URLs, or None for the local stack's. FANOUT_API_URL is the jobs API's public base
    URL, the same setting the functions read. `allowed_roots`: folders of your own that
    `make dev` and `make run` let the stack ingest, besides the sample corpus
    (FANOUT_ALLOWED_ROOTS, the functions' own setting)."""

    api_url: str | None = None
    ingest_url: str | None = None
    allowed_roots: tuple[Path, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CliSettings:
        env = os.environ if environ is None else environ
        return cls(
            api_url=_read(env, "API_URL"),
            ingest_url=_read(env, "INGEST_URL"),
            allowed_roots=_paths(env, "ALLOWED_ROOTS"),
        )


def _paths(env: Mapping[str, str], name: str) -> tuple[Path, ...]:
    """A `os.pathsep`-separated list of paths; empty when unset."""
    return tuple(Path(p) for p in (_read(env, name) or "").split(os.pathsep) if p)


def _read(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(PREFIX + name, "").strip()
    return value or None


def _positive_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = _read(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{PREFIX}{name} must be at least {minimum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = _read(env, name) or default
    if value not in allowed:
        options = " or ".join(repr(a) for a in allowed)
        raise ConfigError(f"{PREFIX}{name} must be {options}, got {value!r}")
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _read(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{PREFIX}{name} must be above 0, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (_read(env, name) or "false").lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{PREFIX}{name} must be true or false, got {raw!r}")
    return raw in ("true", "1", "yes")
