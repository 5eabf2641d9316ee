"""Static checks of the build and deploy pipeline: cloudbuild.yaml tests on a prepared image
(infra/ci-image/Dockerfile, pushed by cloudbuild-ci-image.yaml to the repository in
infra/build.tf), then applies exactly the plan it saved, and keeps that plan with the build."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; types-PyYAML is not pinned

from tests.infra.terraform_config import INFRA_DIR, REPO_DIR, Config, load_config, resources

CI_IMAGE = "${_REGION}-docker.pkg.dev/${PROJECT_ID}/fanout/ci"


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_DIR / name).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    return _load("cloudbuild.yaml")


def _steps(build: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in build["steps"]}


def _script(step: dict[str, Any]) -> str:
    return " ".join(str(arg) for arg in step.get("args", []))


def test_tests_run_on_the_prepared_ci_image(build: dict[str, Any]) -> None:
    """The test step runs `make test` on the CI image from this project's registry, and
    installs nothing with apt on each build."""
    step = _steps(build)["test"]
    assert step["name"] == "${_CI_IMAGE}"
    assert build["substitutions"]["_CI_IMAGE"] == f"{CI_IMAGE}:latest"
    assert (step.get("entrypoint"), step["args"]) == ("make", ["test"])
    assert "apt-get" not in _script(step)
    assert build["options"]["dynamicSubstitutions"] is True


def test_ci_image_has_what_make_test_needs() -> None:
    """The Dockerfile starts from Google's gcloud image and adds Python 3.11 with venv, make,
    Node and npm, Java, the Firestore and Pub/Sub emulators and Debian's chromium."""
    dockerfile = (INFRA_DIR / "ci-image" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM gcr\.io/google\.com/cloudsdktool/google-cloud-cli:", dockerfile, re.M)
    for package in (
        "make",
        "python3-venv",
        "nodejs",
        "npm",
        "default-jre-headless",
        "chromium",
        "google-cloud-cli-firestore-emulator",
        "google-cloud-cli-pubsub-emulator",
    ):
        assert re.search(rf"\s{re.escape(package)}\s", dockerfile), package
    assert "sys.version_info[:2] == (3, 11)" in dockerfile


def test_ci_image_is_built_into_the_terraform_repository() -> None:
    """cloudbuild-ci-image.yaml builds infra/ci-image and pushes :latest to the fanout Docker
    repository that infra/build.tf creates."""
    ci = _load("cloudbuild-ci-image.yaml")
    assert ci["substitutions"]["_CI_IMAGE"] == CI_IMAGE
    (step,) = ci["steps"]
    assert step["args"][0] == "build"
    assert step["args"][-1] == "infra/ci-image"
    assert "${_CI_IMAGE}:latest" in ci["images"]
    config: Config = load_config()
    repository = resources(config, "google_artifact_registry_repository")["fanout"]
    assert (repository["repository_id"], repository["format"]) == ("fanout", "DOCKER")
    assert repository["location"] == "${var.region}"


def test_apply_uses_the_saved_plan(build: dict[str, Any]) -> None:
    """Terraform plans to a file after the tests pass, and the apply step applies that file,
    so what is applied is what was planned (and shown)."""
    steps = _steps(build)
    plan, apply = steps["plan"], steps["apply"]
    assert plan["waitFor"] == ["test"]
    assert apply["waitFor"] == ["plan"]
    assert plan["dir"] == apply["dir"] == "infra"
    assert re.search(r"terraform plan .*-out=tfplan", _script(plan), re.S)
    assert "terraform show -no-color tfplan > plan.txt" in _script(plan)
    assert re.search(r"terraform apply -input=false tfplan\b", _script(apply))
    assert "-auto-approve" not in _script(apply)
    assert "plan" not in _script(apply).replace("tfplan", "")


def test_plan_is_kept_with_the_build(build: dict[str, Any]) -> None:
    """The plan file and its text are uploaded next to the state (a private bucket: the plan
    holds the generated secret), under the build's id."""
    objects = build["artifacts"]["objects"]
    assert objects["location"] == "gs://${_TF_STATE_BUCKET}/plans/${BUILD_ID}/"
    assert sorted(objects["paths"]) == ["infra/plan.txt", "infra/tfplan"]
