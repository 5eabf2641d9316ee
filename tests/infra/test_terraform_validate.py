"""`terraform validate` of infra/ against the providers' real schemas, offline.

The schemas are committed (tests/infra/offline_validate/schema.json, rebuilt from pinned npm
packages) and served by a stub provider, so this runs from a fresh clone without the
registry. See tests/infra/offline_validate/ for how, and for what it cannot catch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.infra.offline_validate.extract_schema import PACKAGES
from tests.infra.offline_validate.runner import Validation, validate
from tests.infra.offline_validate.schema import REGENERATE, load_schema, needs
from tests.infra.terraform_config import INFRA_DIR

# One deliberate mistake per block; a copy of infra/ with this file must fail on each of them,
# and on nothing else.
_BROKEN = """
resource "google_pubsub_topic" "unknown_argument" {
  name      = "x"
  retention = "1d"
}

output "undeclared_resource" {
  value = google_storage_bucket.nope.name
}

resource "google_storage_bucket" "valid" {
  name     = "x"
  location = "EU"
}

output "unknown_attribute" {
  value = google_storage_bucket.valid.nope
}

output "set_indexed" {
  value = google_storage_bucket.valid.lifecycle_rule[0].condition[0].age
}

resource "google_cloud_tasks_queue" "block_as_argument" {
  name         = "x"
  location     = "europe-west1"
  retry_config = { max_attempts = 3 }
}

resource "google_cloud_tasks_queue" "missing_required" {
  name = "x"
}

resource "google_cloud_tasks_queue" "wrong_type" {
  name     = "x"
  location = "europe-west1"
  retry_config {
    max_attempts = "three"
  }
}
"""


def test_schema_covers_every_type_infra_uses() -> None:
    """Adding a provider or a resource type to infra/ asks for a schema regeneration, by name."""
    schema = load_schema()
    for address, types in needs().items():
        assert address in schema["provider_schemas"], f"no schema for {address}: run {REGENERATE}"
        provider = schema["provider_schemas"][address]
        missing = sorted(
            {f"resource {name}" for name in types["resource"] - set(provider["resource_schemas"])}
            | {f"data {name}" for name in types["data"] - set(provider["data_source_schemas"])}
        )
        assert not missing, f"schema.json lacks {missing}: run {REGENERATE}"


def test_schema_comes_from_the_pinned_packages() -> None:
    """Bumping a pinned binding package without regenerating schema.json is caught."""
    recorded = {address: package["npm"] for address, package in load_schema()["packages"].items()}
    assert recorded == {address: PACKAGES.get(address) for address in recorded}, (
        f"schema.json was built from other packages than extract_schema.PACKAGES: run {REGENERATE}"
    )


def test_infra_is_valid(tmp_path: Path) -> None:
    """infra/ passes `terraform validate` against the real provider schemas."""
    result = validate(INFRA_DIR, tmp_path)
    assert result.valid, result.output
    assert [d for d in result.diagnostics if d.severity == "error"] == [], result.output


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Validation:
    module = tmp_path_factory.mktemp("broken") / "infra"
    shutil.copytree(INFRA_DIR, module, ignore=shutil.ignore_patterns(".terraform*"))
    (module / "zz_broken.tf").write_text(_BROKEN, encoding="utf-8")
    return validate(module, tmp_path_factory.mktemp("work"))


@pytest.mark.parametrize(
    ("context", "summary", "detail"),
    [
        ('resource "google_pubsub_topic" "unknown_argument"', "Unsupported argument", "retention"),
        ('output "undeclared_resource"', "Reference to undeclared resource", "nope"),
        ('output "unknown_attribute"', "Unsupported attribute", "nope"),
        ('output "set_indexed"', "Cannot index a set value", "set"),
        (
            'resource "google_cloud_tasks_queue" "block_as_argument"',
            "Unsupported argument",
            "retry_config",
        ),
        (
            'resource "google_cloud_tasks_queue" "missing_required"',
            "Missing required argument",
            "location",
        ),
        (
            'resource "google_cloud_tasks_queue" "wrong_type"',
            "Incorrect attribute value type",
            "number",
        ),
    ],
)
def test_a_mistake_is_refused(broken: Validation, context: str, summary: str, detail: str) -> None:
    """A config mistake (argument, block, reference or type) fails validate with its own error."""
    assert not broken.valid
    found = [d for d in broken.diagnostics if d.context == context and d.severity == "error"]
    assert [d.summary for d in found] == [summary], broken.output
    assert detail in found[0].detail, found[0].detail


def test_only_the_mistakes_are_refused(broken: Validation) -> None:
    """Validate's errors name the broken file only: infra/ itself is not blamed."""
    errors = [d for d in broken.diagnostics if d.severity == "error"]
    assert errors and {d.filename for d in errors} == {"zz_broken.tf"}, broken.output
