"""Static checks of the deployable under ``infra/``: the five functions, their source archive,
the Cloud Tasks queue, the Pub/Sub trigger, the Cloud Scheduler job, and who may call what.

python-hcl2 parses the files (no terraform binary, no providers). Where the cloud must agree
with the code (environment names, queue semantics, entry points), the tests read the code's
side too: ``functions/config.py`` and ``main.py``.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.config import CloudTasksSettings, DispatchSettings
from functions.local.terraform_env import function_environments
from functions.observability.links import FUNCTIONS as LINKED_FUNCTIONS
from functions.observability.links import service_name
from tests.infra.terraform_config import (
    REPO_DIR,
    Body,
    Config,
    config_env_names,
    data_sources,
    environment,
    labelled,
    load_config,
    locals_,
    resolve_local,
    resources,
)
from tests.infra.terraform_eval import as_expression, evaluate

FUNCTION = "google_cloudfunctions2_function"
FUNCTIONS = ("ingest", "ingest_pubsub", "run_batch", "jobs_api", "cleanup_jobs")
# The functions that enqueue tasks (submit, retry, sweep): everyone but run_batch.
ENQUEUERS = ("ingest", "ingest_pubsub", "jobs_api", "cleanup_jobs")
TIMEOUTS = {
    "ingest": 60,
    "ingest_pubsub": 60,
    "run_batch": 3600,
    "jobs_api": 60,
    "cleanup_jobs": 540,
}
# Runtime files the archive ships; everything else at the top of the repository is excluded.
SHIPPED = {"main.py", "requirements.txt", "functions"}
MUST_EXCLUDE = {
    "tests",
    ".venv",
    "node_modules",
    ".local",
    "bench",
    "infra",
    ".git",
    "docs",
    # The local embedding model's requirements: the deployed functions embed with Vertex AI.
    "requirements-local.txt",
    # Development tooling and the command line, which the deployed functions never import.
    "functions/cli",
    "functions/local",
}
IAM_RESOURCE_TYPES = (
    "google_cloud_run_service_iam_member",
    "google_cloud_run_service_iam_binding",
    "google_cloud_run_service_iam_policy",
    "google_cloud_run_v2_service_iam_member",
    "google_cloud_run_v2_service_iam_binding",
    "google_cloud_run_v2_service_iam_policy",
    "google_cloudfunctions2_function_iam_member",
    "google_cloudfunctions2_function_iam_binding",
    "google_cloudfunctions2_function_iam_policy",
)
PROJECT_IAM_TYPES = (
    "google_project_iam_member",
    "google_project_iam_binding",
    "google_project_iam_policy",
)
INVOKER_ROLES = {"roles/run.invoker", "roles/cloudfunctions.invoker"}
# Ingress: the functions only Google's services call (Cloud Tasks, Cloud Scheduler, the Pub/Sub
# push, in this project: internal traffic to Cloud Run) and the two people call from outside.
INGRESS = {
    "run_batch": "ALLOW_INTERNAL_ONLY",
    "cleanup_jobs": "ALLOW_INTERNAL_ONLY",
    "ingest_pubsub": "ALLOW_INTERNAL_ONLY",
    "ingest": "ALLOW_ALL",
    "jobs_api": "ALLOW_ALL",
}


def _uri(function: str) -> str:
    return f"${{{FUNCTION}.{function}.service_config[0].uri}}"


def _sa_member(account: str) -> str:
    return f"serviceAccount:${{google_service_account.{account}.email}}"


def _email(account: str) -> str:
    return f"${{google_service_account.{account}.email}}"


@pytest.fixture(scope="module")
def config() -> Config:
    """Every top-level block of every infra/*.tf file, merged by block type."""
    return load_config()


@pytest.fixture(scope="module")
def functions(config: Config) -> dict[str, Body]:
    return resources(config, FUNCTION)


def _invoker_grants(config: Config) -> list[tuple[str, str, str]]:
    """(function, role, member) for every IAM grant on a function's Cloud Run service."""
    grants = []
    for resource_type in IAM_RESOURCE_TYPES:
        for name, body in resources(config, resource_type).items():
            target = body.get("service") or body.get("name") or body.get("cloud_function")
            match = re.fullmatch(rf"\$\{{{FUNCTION}\.(\w+)\.name\}}", str(target))
            assert match, f"{resource_type}.{name} does not target a function by name: {target}"
            members = body.get("members") or [body.get("member")]
            grants += [(match[1], body.get("role", ""), str(m)) for m in members]
    return grants


# -- the functions ---------------------------------------------------------------------------


def test_five_functions_one_per_entry_point(config: Config, functions: dict[str, Body]) -> None:
    """One function per entry point of main.py, entry_point = the Python function's name,
    runtime python311, and a kebab-case name (it becomes the Cloud Run service's name)."""
    tree = ast.parse((REPO_DIR / "main.py").read_text(encoding="utf-8"))
    entry_points = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert set(functions) == set(FUNCTIONS)
    for name, body in functions.items():
        (build,) = body["build_config"]
        assert build["entry_point"] == name
        assert name in entry_points, f"main.py has no {name}()"
        assert resolve_local(config, build["runtime"]) == "python311"
        deployed = body["name"].replace(
            "${local.service_prefix}", resolve_local(config, "${local.service_prefix}")
        )
        assert re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", deployed), deployed


def test_logs_links_name_the_deployed_services(config: Config, functions: dict[str, Body]) -> None:
    """The code's logs links filter on Cloud Run services named from FANOUT_SERVICE_PREFIX;
    each deployed function must carry exactly that name, or the links open no lines."""
    prefix = resolve_local(config, "${local.service_prefix}")
    for name, body in functions.items():
        env = environment(config, body)
        assert resolve_local(config, env["FANOUT_SERVICE_PREFIX"]) == prefix
        deployed = body["name"].replace("${local.service_prefix}", prefix)
        assert deployed == service_name(prefix, name)
    assert set(LINKED_FUNCTIONS) == set(FUNCTIONS)


def test_every_function_builds_from_the_uploaded_archive(
    config: Config, functions: dict[str, Body]
) -> None:
    """Each function builds from the one uploaded zip, whose object name carries the zip's
    md5: a change to the source is a new object and redeploys every function."""
    for name, body in functions.items():
        (build,) = body["build_config"]
        ((storage,),) = (source["storage_source"] for source in build["source"])
        assert storage["object"] == "${google_storage_bucket_object.source.name}", name
        assert storage["bucket"] == "${google_storage_bucket.source.name}", name
    obj = resources(config, "google_storage_bucket_object")["source"]
    assert "${data.archive_file.source.output_md5}" in obj["name"]
    assert obj["source"] == "${data.archive_file.source.output_path}"


@pytest.mark.parametrize(("name", "ingress"), INGRESS.items())
def test_function_ingress(functions: dict[str, Body], name: str, ingress: str) -> None:
    """run_batch, cleanup_jobs and ingest_pubsub take internal traffic only (their callers are
    Google services in this project); ingest and jobs_api stay reachable from people's machines,
    set explicitly rather than by default."""
    (service,) = functions[name]["service_config"]
    assert service["ingress_settings"] == ingress


def test_internet_facing_functions_are_guarded_by_iam(config: Config) -> None:
    """Every function open to all traffic has invoker grants for var.api_invokers only."""
    open_to_all = {name for name, ingress in INGRESS.items() if ingress == "ALLOW_ALL"}
    granted = {
        function: {member for f, _, member in _invoker_grants(config) if f == function}
        for function in open_to_all
    }
    assert granted == {name: {"${each.value}"} for name in open_to_all}


@pytest.mark.parametrize(("name", "timeout"), TIMEOUTS.items())
def test_function_timeout(functions: dict[str, Body], name: str, timeout: int) -> None:
    """run_batch may run 60 min (the HTTP maximum), cleanup_jobs 9 min, the others 1 min."""
    (service,) = functions[name]["service_config"]
    assert service["timeout_seconds"] == timeout


def test_every_function_runs_as_the_dedicated_account(
    config: Config, functions: dict[str, Body]
) -> None:
    """All five run as fanout-functions, not the default compute service account."""
    account = resources(config, "google_service_account")["functions"]
    assert account["account_id"] == "fanout-functions"
    for name, body in functions.items():
        assert body["service_config"][0]["service_account_email"] == _email("functions"), name


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_uses_firestore_and_cloud_tasks(config: Config, name: str) -> None:
    """Every function runs on the production backends (FANOUT_STORE=firestore,
    FANOUT_QUEUE=cloud_tasks), on the managed database, in this project and queue."""
    env = environment(config, resources(config, FUNCTION)[name])
    assert env["FANOUT_STORE"] == "firestore"
    assert env["FANOUT_QUEUE"] == "cloud_tasks"
    assert env["FANOUT_GCP_PROJECT"] == "${var.project_id}"
    assert env["FANOUT_FIRESTORE_DATABASE"] == "${google_firestore_database.main.name}"
    assert env["FANOUT_TASKS_PROJECT"] == "${var.project_id}"
    assert env["FANOUT_TASKS_LOCATION"] == "${google_cloud_tasks_queue.batches.location}"
    assert env["FANOUT_TASKS_QUEUE"] == "${google_cloud_tasks_queue.batches.name}"
    assert env["FANOUT_TASKS_QUEUE_HIGH"] == "${google_cloud_tasks_queue.batches_high.name}"
    assert env["FANOUT_TASKS_QUEUE_LOW"] == "${google_cloud_tasks_queue.batches_low.name}"
    assert env["FANOUT_TASKS_SERVICE_ACCOUNT"] == _email("tasks_invoker")
    assert env["FANOUT_RETENTION_DAYS"] == "${tostring(var.retention_days)}"
    assert env["FANOUT_DISPATCH_DEADLINE_SECONDS"] == "${tostring(var.dispatch_deadline_seconds)}"
    assert "FANOUT_ALLOWED_ROOTS" in env


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_environment_name_is_read_by_the_code(config: Config, name: str) -> None:
    """Each FANOUT_* variable set on a function is one functions/config.py reads: a typo
    would otherwise be ignored silently and the default used."""
    env = environment(config, resources(config, FUNCTION)[name])
    assert set(env) <= config_env_names()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_no_function_accepts_noop_jobs(config: Config, name: str) -> None:
    """Deployed functions refuse `noop` requests: none sets FANOUT_ENABLE_NOOP, whose
    absence turns the source off (its fail_items_file option reads files)."""
    env = environment(config, resources(config, FUNCTION)[name])
    assert "FANOUT_ENABLE_NOOP" in config_env_names()
    assert "FANOUT_ENABLE_NOOP" not in env
    secrets = resources(config, FUNCTION)[name]["service_config"][0].get(
        "secret_environment_variables", []
    )
    assert all(secret["key"] != "FANOUT_ENABLE_NOOP" for secret in secrets)


def test_sweeper_gives_up_when_the_queue_does(config: Config) -> None:
    """FANOUT_MAX_ATTEMPTS is the queue's own retry_config.max_attempts, not a copy."""
    for name in FUNCTIONS:
        env = environment(config, resources(config, FUNCTION)[name])
        assert env["FANOUT_MAX_ATTEMPTS"] == (
            "${tostring(google_cloud_tasks_queue.batches.retry_config[0].max_attempts)}"
        )


def test_sweeper_knows_the_queues_retry_window(config: Config) -> None:
    """The sweeper takes a pending batch's task for dropped once the queue's retry window
    has passed; the backoffs of that window come from the same numbers the queue is
    configured from (never read back from the queue, whose state says "0.100s" for "0.1s"
    and would redeploy every function on the next apply), and the code's defaults match
    them (the local dispatcher uses those)."""
    for name in FUNCTIONS:
        env = environment(config, resources(config, FUNCTION)[name])
        for bound in ("min", "max"):
            value = env[f"FANOUT_{bound.upper()}_BACKOFF_SECONDS"]
            assert value == f"${{tostring(local.tasks_backoff_seconds.{bound})}}"
            assert "google_cloud_tasks_queue" not in value
    (queue_retry,) = resources(config, "google_cloud_tasks_queue")["batches"]["retry_config"]
    for bound in ("min", "max"):
        assert queue_retry[f"{bound}_backoff"] == f"${{local.tasks_backoff_seconds.{bound}}}s"
    defaults = DispatchSettings()
    assert _backoff(config, "min") == defaults.min_backoff
    assert _backoff(config, "max") == defaults.max_backoff


def test_backoff_environment_evaluates_to_plain_numbers(config: Config, tmp_path: Path) -> None:
    """Terraform renders the queue's durations and the functions' numbers from one local:
    "1s" and "1", "60s" and "60", which functions/config.py reads as seconds."""
    backoff = locals_(config)["tasks_backoff_seconds"]
    expressions = {
        f"{bound}_{kind}": template.format(value=backoff[bound])
        for bound in ("min", "max")
        for kind, template in (("queue", '"${{{value}}}s"'), ("env", "tostring({value})"))
    }
    values = evaluate(tmp_path, expressions, {"project_id": "my-project"})
    assert values == {"min_queue": "1s", "min_env": "1", "max_queue": "60s", "max_env": "60"}


def _backoff(config: Config, bound: str) -> timedelta:
    return timedelta(seconds=float(locals_(config)["tasks_backoff_seconds"][bound]))


@pytest.mark.parametrize("name", ENQUEUERS)
def test_enqueuing_functions_send_tasks_to_run_batch(config: Config, name: str) -> None:
    """Functions that enqueue send tasks to run_batch's URL, with it as the OIDC audience."""
    env = environment(config, resources(config, FUNCTION)[name])
    assert env["FANOUT_WORKER_URL"] == _uri("run_batch")
    assert env["FANOUT_TASKS_AUDIENCE"] == _uri("run_batch")


def test_run_batch_does_not_refer_to_its_own_url(config: Config) -> None:
    """run_batch's environment holds no URL of run_batch: that would be a dependency cycle."""
    env = environment(config, resources(config, FUNCTION)["run_batch"])
    assert not any("run_batch" in str(value) for value in env.values())


def test_ingest_status_url_points_at_jobs_api(config: Config) -> None:
    """ingest's 202 reply links to jobs_api (FANOUT_API_URL = jobs_api's URL)."""
    env = environment(config, resources(config, FUNCTION)["ingest"])
    assert env["FANOUT_API_URL"] == _uri("jobs_api")


def test_run_batch_capacity_covers_the_queue(config: Config) -> None:
    """With the defaults, run_batch's instances x concurrency take every concurrent dispatch
    of the three priority queues together (a 429 costs Cloud Tasks an attempt, and the high
    share must be free when a high job comes), and the queue refuses a plan where they do
    not."""
    variables = labelled(config, "variable")
    (service,) = resources(config, FUNCTION)["run_batch"]["service_config"]
    assert service["max_instance_count"] == "${var.run_batch_max_instances}"
    assert service["max_instance_request_concurrency"] == "${var.run_batch_concurrency}"
    capacity = (
        variables["run_batch_max_instances"]["default"]
        * variables["run_batch_concurrency"]["default"]
    )
    shares = variables["max_concurrent_dispatches"]["default"] + sum(
        variables[f"{level}_priority_queue"]["default"]["max_concurrent_dispatches"]
        for level in ("high", "low")
    )
    assert capacity >= shares
    queue = resources(config, "google_cloud_tasks_queue")["batches"]
    (lifecycle,) = queue["lifecycle"]
    conditions = [p["condition"] for p in lifecycle["precondition"]]
    assert any(
        "run_batch_max_instances" in c
        and "var.max_concurrent_dispatches" in c
        and "var.high_priority_queue.max_concurrent_dispatches" in c
        and "var.low_priority_queue.max_concurrent_dispatches" in c
        for c in conditions
    )


# -- source archive ---------------------------------------------------------------------------


def test_source_archive_zips_the_repository_with_exclusions(config: Config) -> None:
    """The archive is the repository root minus tests, virtualenvs, node_modules, .local,
    bench, infra, docs, requirements-local.txt and caches, with fixed file modes (same
    tree, same md5)."""
    archive = data_sources(config, "archive_file")["source"]
    assert archive["type"] == "zip"
    assert archive["source_dir"] == "${path.module}/.."
    assert archive["output_file_mode"] == "0644"
    excludes = set(archive["excludes"])
    assert excludes >= MUST_EXCLUDE
    assert excludes >= {"**/__pycache__", "**/*.pyc"}
    assert not excludes & SHIPPED


def _git_paths(*options: str) -> list[str]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", *options],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [line.rstrip("/") for line in listed.splitlines() if line]


def _excluded(path: str, excludes: set[str]) -> bool:
    """Whether the archive leaves `path` out: a pattern matches it or one of its parent
    directories (a directory left out is skipped whole). `**/` matches any depth, none too."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in excludes:
        if pattern.startswith("**/"):
            tail = pattern.removeprefix("**/")
            if any(fnmatch.fnmatchcase(part, tail) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def test_source_archive_ships_only_runtime_files(config: Config) -> None:
    """Every top-level entry of the repository (tracked, or new and not ignored) other than
    main.py, requirements.txt and functions/ is excluded from the archive by name."""
    listed = _git_paths("--cached", "--others", "--exclude-standard")
    top_level = {line.split("/", 1)[0] for line in listed}
    excludes = set(data_sources(config, "archive_file")["source"]["excludes"])
    assert top_level >= SHIPPED
    assert top_level - SHIPPED - excludes == set()


def test_source_archive_leaves_out_ignored_build_outputs(config: Config) -> None:
    """What this machine built and git ignores (virtualenvs, caches, fanout.egg-info, ...) is
    left out of the archive too: otherwise its md5, and so every function, would change with
    the machine that runs terraform apply."""
    ignored = _git_paths("--others", "--ignored", "--exclude-standard", "--directory")
    excludes = set(data_sources(config, "archive_file")["source"]["excludes"])
    for made_by_setup in ("fanout.egg-info", "functions/x.egg-info", ".venv-checkov"):
        assert _excluded(made_by_setup, excludes), made_by_setup
    assert [path for path in ignored if not _excluded(path, excludes)] == []


def test_archive_provider_is_pinned(config: Config) -> None:
    """hashicorp/archive is pinned to major 2, at least 2.5 (glob patterns in excludes)."""
    (terraform,) = config["terraform"]
    (providers,) = terraform["required_providers"]
    archive = providers["archive"]
    assert archive["source"] == "hashicorp/archive"
    match = re.fullmatch(r"~>\s*2\.(\d+)(\.\d+)?", archive["version"])
    assert match, archive["version"]
    assert int(match[1]) >= 5


# -- who may call what -----------------------------------------------------------------------


def test_nothing_is_public(config: Config) -> None:
    """No resource, local or variable default names allUsers or allAuthenticatedUsers, and
    nobody gets an invoker role project-wide (that would open run_batch and cleanup_jobs)."""
    defaults = [body.get("default") for body in labelled(config, "variable").values()]
    text = repr([config.get("resource"), config.get("locals"), defaults])
    assert "allUsers" not in text
    assert "allAuthenticatedUsers" not in text
    for resource_type in PROJECT_IAM_TYPES:
        for name, body in resources(config, resource_type).items():
            role = resolve_local(config, body.get("role", ""))
            roles = {role} if "each.value" not in role else set(_for_each_values(body))
            assert not roles & INVOKER_ROLES, f"{resource_type}.{name}"


def _for_each_values(body: Body) -> list[str]:
    return re.findall(r'"([^"]+)"', str(body.get("for_each", "")))


def test_run_batch_is_private(config: Config) -> None:
    """The only grant on run_batch is run.invoker to the tasks invoker account: Cloud Tasks
    calls it with that account's OIDC token, nobody else can."""
    grants = [g for g in _invoker_grants(config) if g[0] == "run_batch"]
    assert grants == [("run_batch", "roles/run.invoker", _sa_member("tasks_invoker"))]
    account = resources(config, "google_service_account")["tasks_invoker"]
    assert account["account_id"] == "fanout-tasks-invoker"


def test_tasks_invoker_invokes_nothing_else(config: Config) -> None:
    """The tasks invoker account is granted on run_batch only."""
    targets = {g[0] for g in _invoker_grants(config) if g[2] == _sa_member("tasks_invoker")}
    assert targets == {"run_batch"}


def test_cleanup_jobs_is_invoked_by_the_scheduler_account_only(config: Config) -> None:
    """cleanup_jobs' one grant is run.invoker to fanout-scheduler, which has no other."""
    grants = [g for g in _invoker_grants(config) if g[0] == "cleanup_jobs"]
    assert grants == [("cleanup_jobs", "roles/run.invoker", _sa_member("scheduler"))]
    targets = {g[0] for g in _invoker_grants(config) if g[2] == _sa_member("scheduler")}
    assert targets == {"cleanup_jobs"}
    assert resources(config, "google_service_account")["scheduler"]["account_id"] == (
        "fanout-scheduler"
    )


@pytest.mark.parametrize("name", ["ingest", "jobs_api"])
def test_public_api_is_open_to_api_invokers_only(config: Config, name: str) -> None:
    """ingest and jobs_api are invokable by var.api_invokers (default: nobody) and no one else."""
    assert labelled(config, "variable")["api_invokers"]["default"] == []
    grants = [g for g in _invoker_grants(config) if g[0] == name]
    assert grants == [(name, "roles/run.invoker", "${each.value}")]
    for resource_type in IAM_RESOURCE_TYPES:
        for body in resources(config, resource_type).values():
            if body.get("service") == f"${{{FUNCTION}.{name}.name}}":
                assert body["for_each"] == "${toset(var.api_invokers)}"


def test_runtime_account_roles(config: Config) -> None:
    """fanout-functions can use Firestore, write and read logs, call Vertex AI, create tasks on the
    queue, and act as the tasks invoker (needed to create a task with an OIDC token as that
    account)."""
    member = _sa_member("functions")
    project_roles: set[str] = set()
    for body in resources(config, "google_project_iam_member").values():
        if body["member"] == member:
            role = body["role"]
            project_roles |= set(_for_each_values(body)) if "each.value" in role else {role}
    assert {
        "roles/datastore.user",
        "roles/logging.logWriter",
        "roles/logging.viewer",
        "roles/aiplatform.user",
    } <= project_roles
    queue_roles = {
        body["role"]
        for body in resources(config, "google_cloud_tasks_queue_iam_member").values()
        if body["member"] == member and body["name"] == "${google_cloud_tasks_queue.batches.name}"
    }
    # Create tasks, and read them: the sweeper's GetTask tells a dropped task at once.
    assert {"roles/cloudtasks.enqueuer", "roles/cloudtasks.viewer"} <= queue_roles
    # The same on the high and low classes' queues.
    (classes,) = [
        body
        for body in resources(config, "google_cloud_tasks_queue_iam_member").values()
        if body["member"] == member and "each" in str(body["name"])
    ]
    roles = str(locals_(config)["class_queue_roles"])
    for level in ("high", "low"):
        assert f"google_cloud_tasks_queue.batches_{level}.name" in classes["name"]
        assert f'"{level}"' in roles
    assert "roles/cloudtasks.enqueuer" in roles and "roles/cloudtasks.viewer" in roles
    act_as = [
        body
        for body in resources(config, "google_service_account_iam_member").values()
        if body["member"] == member
    ]
    assert [(b["service_account_id"], b["role"]) for b in act_as] == [
        ("${google_service_account.tasks_invoker.name}", "roles/iam.serviceAccountUser")
    ]


# -- Cloud Tasks queue ------------------------------------------------------------------------


def test_queue_retry_config(config: Config) -> None:
    """10 attempts by default (the variable), backoff 1 s to 60 s doubling up to 16 times,
    no retry duration limit: max_attempts alone ends the retries, about 4 minutes after
    the first, so a worker restart or a deploy is ridden out by the queue itself."""
    queue = resources(config, "google_cloud_tasks_queue")["batches"]
    (retry,) = queue["retry_config"]
    assert retry == {
        "max_attempts": "${var.max_attempts}",
        "min_backoff": "${local.tasks_backoff_seconds.min}s",
        "max_backoff": "${local.tasks_backoff_seconds.max}s",
        "max_doublings": 16,
        "max_retry_duration": "0s",
    }
    assert _backoff(config, "min") == timedelta(seconds=1)
    assert _backoff(config, "max") == timedelta(seconds=60)
    assert labelled(config, "variable")["max_attempts"]["default"] == 10


def test_queue_rate_limits_and_logging(config: Config) -> None:
    """500 dispatches/s (the per-queue maximum), 700 concurrent by default (of run_batch's
    1000: the high and low queues have the rest), every dispatch logged."""
    queue = resources(config, "google_cloud_tasks_queue")["batches"]
    assert queue["name"] == "fanout-batches"
    assert queue["location"] == "${var.region}"
    (rate,) = queue["rate_limits"]
    assert rate == {
        "max_dispatches_per_second": 500,
        "max_concurrent_dispatches": "${var.max_concurrent_dispatches}",
    }
    assert labelled(config, "variable")["max_concurrent_dispatches"]["default"] == 700
    (logging_config,) = queue["stackdriver_logging_config"]
    assert logging_config["sampling_ratio"] == 1.0


@pytest.mark.parametrize("level", ["high", "low"])
def test_each_priority_class_has_its_queue_with_its_own_rate_and_share(
    config: Config, level: str
) -> None:
    """The high and low classes' queues: named as the code's defaults, their rate and
    concurrency from their variable, and the normal queue's retries (the sweeper knows one
    retry window for every task)."""
    queues = resources(config, "google_cloud_tasks_queue")
    queue = queues[f"batches_{level}"]
    assert queue["name"] == f"fanout-batches-{level}"
    assert queue["name"] == getattr(CloudTasksSettings(), f"{level}_queue")
    assert queue["name"] == getattr(DispatchSettings(), f"{level}_queue_name")
    assert queue["location"] == "${var.region}"
    (rate,) = queue["rate_limits"]
    assert rate == {
        "max_dispatches_per_second": f"${{var.{level}_priority_queue.max_dispatches_per_second}}",
        "max_concurrent_dispatches": f"${{var.{level}_priority_queue.max_concurrent_dispatches}}",
    }
    assert queue["retry_config"] == queues["batches"]["retry_config"]


def test_the_local_dispatcher_shares_slots_as_the_queues_dispatch(config: Config) -> None:
    """The local dispatcher's shares (PriorityShares) are the classes' default dispatch
    rates, so a stack on one machine favours high jobs as the cloud does; and every share,
    like every rate, is above zero: low jobs never starve."""
    variables = labelled(config, "variable")
    (normal_rate,) = resources(config, "google_cloud_tasks_queue")["batches"]["rate_limits"]
    rates = {
        "high": variables["high_priority_queue"]["default"]["max_dispatches_per_second"],
        "normal": normal_rate["max_dispatches_per_second"],
        "low": variables["low_priority_queue"]["default"]["max_dispatches_per_second"],
    }
    shares = DispatchSettings().shares
    assert {level: getattr(shares, level) for level in rates} == rates
    assert rates["high"] >= rates["normal"] > rates["low"] > 0


def test_queue_matches_the_local_dispatcher_defaults(config: Config) -> None:
    """The cloud queue and the code's defaults (what the local dispatcher applies) agree on
    name, attempts, backoff and dispatch deadline: what works locally works in the cloud."""
    dispatch, tasks = DispatchSettings(), CloudTasksSettings()
    queue = resources(config, "google_cloud_tasks_queue")["batches"]
    (retry,) = queue["retry_config"]
    variables = labelled(config, "variable")
    assert queue["name"] == dispatch.queue_name == tasks.queue
    assert variables["max_attempts"]["default"] == dispatch.max_attempts
    assert retry["min_backoff"] == "${local.tasks_backoff_seconds.min}s"
    assert _backoff(config, "min") == dispatch.min_backoff
    assert _backoff(config, "max") == dispatch.max_backoff
    deadline = variables["dispatch_deadline_seconds"]["default"]
    assert timedelta(seconds=deadline) == dispatch.deadline


def test_dispatch_deadline_is_checked_at_plan_time(config: Config) -> None:
    """dispatch_deadline_seconds is validated to Cloud Tasks' 15..1800 s for HTTP tasks."""
    variable = labelled(config, "variable")["dispatch_deadline_seconds"]
    (validation,) = variable["validation"]
    assert "15" in validation["condition"]
    assert "1800" in validation["condition"]


# -- Pub/Sub and Scheduler --------------------------------------------------------------------


def test_pubsub_invoker_invokes_ingest_pubsub_only(config: Config) -> None:
    """The account the push subscription signs as may invoke ingest_pubsub and nothing else."""
    grants = [g for g in _invoker_grants(config) if g[2] == _sa_member("pubsub_invoker")]
    assert grants == [("ingest_pubsub", "roles/run.invoker", _sa_member("pubsub_invoker"))]


def test_no_function_has_an_eventarc_trigger(config: Config, functions: dict[str, Body]) -> None:
    """ingest_pubsub is pushed to by a subscription Terraform owns (pubsub.tf), so no function
    has an event_trigger and the Eventarc API (whose service agent a first apply races, the
    trap this removes) is not enabled."""
    assert [name for name, body in functions.items() if "event_trigger" in body] == []
    assert "eventarc" not in repr(locals_(config)["services"])


def test_scheduler_calls_cleanup_jobs_with_an_oidc_token(config: Config) -> None:
    """Every 10 minutes by default, Cloud Scheduler POSTs to cleanup_jobs' URL with an OIDC
    token as fanout-scheduler (audience: that URL), waiting as long as cleanup may run."""
    job = resources(config, "google_cloud_scheduler_job")["cleanup"]
    assert job["schedule"] == "${var.cleanup_schedule}"
    assert labelled(config, "variable")["cleanup_schedule"]["default"] == "*/10 * * * *"
    (target,) = job["http_target"]
    assert target["http_method"] == "POST"
    assert target["uri"] == _uri("cleanup_jobs")
    (token,) = target["oidc_token"]
    assert token["service_account_email"] == _email("scheduler")
    assert token["audience"] == _uri("cleanup_jobs")
    assert "oauth_token" not in target
    assert "cleanup_jobs.service_config[0].timeout_seconds" in job["attempt_deadline"]


# -- APIs and outputs ------------------------------------------------------------------------


def test_apis_for_the_deployable_are_enabled(config: Config) -> None:
    """Every API the functions, queue, trigger, scheduler and ingestion (Vertex AI
    embeddings, Cloud Storage) need is in the services set."""
    services = set(re.findall(r"[a-z0-9-]+\.googleapis\.com", repr(locals_(config)["services"])))
    needed = {
        f"{api}.googleapis.com"
        for api in (
            "cloudfunctions",
            "run",
            "cloudbuild",
            "artifactregistry",
            "cloudtasks",
            "cloudscheduler",
            "pubsub",
            "storage",
            "monitoring",
            "cloudresourcemanager",
            "logging",
            "iam",
            "firestore",
            "aiplatform",
        )
    }
    assert needed <= services


def test_outputs_name_the_entry_points(config: Config) -> None:
    """The ingest and jobs_api URLs and the Pub/Sub topic are outputs."""
    outputs: dict[str, Any] = {
        name: body["value"] for name, body in labelled(config, "output").items()
    }
    assert outputs["ingest_url"] == _uri("ingest")
    assert outputs["jobs_api_url"] == _uri("jobs_api")
    assert outputs["ingest_topic"] == "${google_pubsub_topic.ingest.name}"


def test_the_emulated_shape_reads_every_function_environment_as_terraform_does(
    config: Config, tmp_path: Path
) -> None:
    """functions/local/terraform_env.py (what `make run CLOUD=emulated` starts each function
    with) gives each function exactly the variables functions.tf sets, and, for every value
    that depends on variables only, the value Terraform computes here on its own."""
    variables = {"project_id": "fanout-emulated", "source_buckets": ["a-bucket"]}
    emulated = function_environments(variables, lambda entry: f"http://127.0.0.1/{entry}")
    for name in FUNCTIONS:
        env = environment(config, resources(config, FUNCTION)[name])
        assert set(emulated[name]) == set(env), name
        expressions = {
            key: expression
            for key, value in env.items()
            if (expression := as_expression(config, value)) is not None
        }
        assert {"FANOUT_STORE", "FANOUT_GCP_PROJECT", "FANOUT_RETENTION_DAYS"} <= set(expressions)
        (tmp_path / name).mkdir()
        computed = evaluate(tmp_path / name, expressions, variables)
        assert {key: emulated[name][key] for key in computed} == {
            key: str(value) for key, value in computed.items()
        }, name
    urls = {name: emulated[name].get("FANOUT_WORKER_URL") for name in ENQUEUERS}
    assert set(urls.values()) == {"http://127.0.0.1/run_batch"}
    assert emulated["ingest"]["FANOUT_API_URL"] == "http://127.0.0.1/jobs_api"
