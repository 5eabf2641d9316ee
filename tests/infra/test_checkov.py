"""checkov, pinned in tests/support/requirements-checkov.txt and installed by `make setup` into
.venv-checkov, scans infra/ with every framework it has (Terraform, secrets, Dockerfile) and
every check on. A check Fanout does not follow is skipped inside its resource, with the reason
(`#checkov:skip=CKV_...:why`), never here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra.terraform_config import INFRA_DIR, REPO_DIR

CHECKOV = REPO_DIR / ".venv-checkov" / "bin" / "checkov"
PINNED = REPO_DIR / "tests" / "support" / "requirements-checkov.txt"


def _pinned_version() -> str:
    for line in PINNED.read_text(encoding="utf-8").splitlines():
        if line.startswith("checkov=="):
            return line.removeprefix("checkov==")
    raise AssertionError(f"{PINNED.name} pins no checkov")


@pytest.fixture(scope="module")
def reports() -> list[dict[str, Any]]:
    """One report per framework that found files in infra/."""
    assert CHECKOV.exists(), f"{CHECKOV.relative_to(REPO_DIR)} is missing: run `make setup`"
    result = subprocess.run(
        # --skip-download: no calls to Prisma Cloud for guidelines (offline, and private).
        [str(CHECKOV), "-d", str(INFRA_DIR), "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert result.stdout.strip(), result.stderr[-2000:]
    parsed = json.loads(result.stdout)
    return parsed if isinstance(parsed, list) else [parsed]


def _failures(reports: list[dict[str, Any]]) -> list[str]:
    return [
        f"{check['check_id']} {check['resource']} ({Path(check['file_path']).name}:"
        f"{check['file_line_range'][0]}): {check['check_name']}"
        for report in reports
        for check in report["results"].get("failed_checks", [])
    ]


def test_infra_passes_every_checkov_check(reports: list[dict[str, Any]]) -> None:
    """Nobody ships a Terraform change that checkov fails without a written, in-place reason."""
    frameworks = {report["check_type"] for report in reports}
    assert "terraform" in frameworks
    assert sum(report["summary"]["parsing_errors"] for report in reports) == 0
    assert _failures(reports) == []


def test_checkov_is_the_pinned_version(reports: list[dict[str, Any]]) -> None:
    """The scan that passed is the one the pin names: a newer checkov's new checks come in by
    a deliberate change of tests/support/requirements-checkov.txt."""
    versions = {report["summary"]["checkov_version"] for report in reports}
    assert versions == {_pinned_version()}


def test_every_skip_gives_a_reason(reports: list[dict[str, Any]]) -> None:
    """Each skipped check says why it does not apply to Fanout, where it is skipped; the
    ingress check is skipped on exactly the two functions people call from outside."""
    skipped = [check for report in reports for check in report["results"].get("skipped_checks", [])]
    unexplained = [
        f"{check['check_id']} {check['resource']}"
        for check in skipped
        if len(str(check["check_result"].get("suppress_comment") or "").strip()) < 20
    ]
    assert unexplained == []
    ingress = sorted(c["resource"] for c in skipped if c["check_id"] == "CKV_GCP_124")
    assert ingress == [
        "google_cloudfunctions2_function.ingest",
        "google_cloudfunctions2_function.jobs_api",
    ]
