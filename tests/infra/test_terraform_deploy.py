"""Static checks of what a first `terraform apply` on a fresh project, and later ones, rely on:
the APIs, the build account, the CPU quota check, secret rotation, the collections bucket's
soft delete, and infra/terraform.tfvars.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.terraform_config import (
    INFRA_DIR,
    Config,
    labelled,
    load_config,
    locals_,
    resources,
)
from tests.infra.terraform_eval import evaluate

FUNCTION = "google_cloudfunctions2_function"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config()


def test_project_iam_and_lookup_apis_are_enabled(config: Config) -> None:
    """Cloud Resource Manager is enabled: project IAM grants and the project-number lookup
    (the Pub/Sub service agent's name) fail on a fresh project without it."""
    services = locals_(config)["services"]
    assert "cloudresourcemanager.googleapis.com" in repr(services)
    (project,) = [body for body in config["data"] if "google_project" in body]
    assert "this" in project["google_project"]


def test_functions_build_as_a_terraform_made_account_by_default(config: Config) -> None:
    """Every function builds as local.build_service_account: var.build_service_account when
    set, else fanout-build, which Terraform creates with the documented build roles."""
    for name, body in resources(config, FUNCTION).items():
        (build,) = body["build_config"]
        assert build["service_account"] == "${local.build_service_account}", name
    chosen = locals_(config)["build_service_account"]
    assert "var.build_service_account != null ? var.build_service_account" in chosen
    assert "google_service_account.build[0].name" in chosen
    account = resources(config, "google_service_account")["build"]
    assert account["account_id"] == "fanout-build"
    assert account["count"] == "${var.build_service_account == null ? 1 : 0}"
    roles = resources(config, "google_project_iam_member")["build"]
    granted = set(re.findall(r'"(roles/[\w.]+)"', roles["for_each"]))
    assert granted == {
        "roles/logging.logWriter",
        "roles/artifactregistry.writer",
        "roles/storage.objectAdmin",
    }
    assert labelled(config, "variable")["build_service_account"]["default"] is None


def _quota_condition(config: Config) -> str:
    (lifecycle,) = resources(config, FUNCTION)["run_batch"]["lifecycle"]
    (precondition,) = lifecycle["precondition"]
    assert "quota" in precondition["error_message"]
    condition: str = precondition["condition"]
    return condition.removeprefix("${").removesuffix("}")


@pytest.mark.parametrize(
    ("variables", "fits"),
    [
        ({}, True),  # 250 instances x 2 vCPUs = 500, the default quota
        ({"run_batch_max_instances": 251}, False),
        ({"run_batch_cpu": "4"}, False),
        ({"run_batch_cpu": "4", "run_batch_vcpu_quota": 1000}, True),
        ({"run_batch_max_instances": 100, "run_batch_vcpu_quota": 200}, True),
    ],
)
def test_run_batch_must_fit_the_regional_cpu_quota(
    config: Config, tmp_path: Path, variables: dict[str, object], fits: bool
) -> None:
    """The plan stops, with a message naming the quota, when run_batch at full scale would
    need more vCPUs than run_batch_vcpu_quota (500 by default): Cloud Run would refuse the
    deploy half-way instead. Terraform itself evaluates the precondition's condition."""
    values = evaluate(
        tmp_path, {"fits": _quota_condition(config)}, {"project_id": "my-project", **variables}
    )
    assert values["fits"] is fits
    assert labelled(config, "variable")["run_batch_vcpu_quota"]["default"] == 500


def test_secret_rotation_creates_the_new_version_first(config: Config) -> None:
    """Rotating the callback secret creates the new version, and redeploys the functions on it,
    before the old version is destroyed: every function pins the version Terraform manages."""
    version = resources(config, "google_secret_manager_secret_version")["callback"]
    assert version["lifecycle"] == [{"create_before_destroy": True}]
    for name, body in resources(config, FUNCTION).items():
        (secret,) = body["service_config"][0]["secret_environment_variables"]
        assert secret["version"] == "${google_secret_manager_secret_version.callback.version}", name


def test_collections_bucket_keeps_no_soft_deleted_files(config: Config) -> None:
    """Lance compaction deletes files in bulk; with soft delete off they are not kept, and
    billed, for another 7 days."""
    bucket = resources(config, "google_storage_bucket")["collections"]
    assert bucket["soft_delete_policy"] == [{"retention_duration_seconds": 0}]


def test_tfvars_example_lists_every_variable(config: Config) -> None:
    """infra/terraform.tfvars.example names (set, or commented out at its default) every
    variable a team can set, once, each under a comment that explains it, and nothing
    Terraform does not declare."""
    lines = (INFRA_DIR / "terraform.tfvars.example").read_text(encoding="utf-8").splitlines()
    assignment = re.compile(r"^#?\s*(\w+)\s*=")
    named = []
    for index, line in enumerate(lines):
        if match := assignment.match(line):
            named.append(match[1])
            above = lines[index - 1]
            assert above.startswith("#") and not assignment.match(above), match[1]
    assert sorted(named) == sorted(labelled(config, "variable"))
