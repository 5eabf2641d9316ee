"""Read ``infra/*.tf`` for the static tests: python-hcl2 parses every file, no terraform
binary or provider download needed. Blocks come back as lists of dicts; expressions as
strings such as ``"${var.region}"``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from functions.local import terraform_env

REPO_DIR = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_DIR / "infra"

Body = dict[str, Any]
Config = dict[str, list[Body]]

_LOCAL_REF = re.compile(r"\$\{local\.(\w+)\}")


def parse(path: Path) -> Config:
    """One .tf file, without comments, strings unquoted (as the emulated shape reads it)."""
    return terraform_env.parse(path)


def tf_files() -> list[Path]:
    return sorted(INFRA_DIR.glob("*.tf"))


def load_config() -> Config:
    """Every top-level block of every infra/*.tf file, merged by block type."""
    merged: Config = {}
    for path in tf_files():
        for block_type, blocks in parse(path).items():
            merged.setdefault(block_type, []).extend(blocks)
    return merged


def labelled(config: Config, block_type: str) -> dict[str, Body]:
    """Blocks with one label (variable, output, provider), by label."""
    found: dict[str, Body] = {}
    for block in config.get(block_type, []):
        for label, body in block.items():
            assert label not in found, f"duplicate {block_type} {label!r}"
            found[label] = body
    return found


def _two_labelled(config: Config, block_type: str, kind: str) -> dict[str, Body]:
    found: dict[str, Body] = {}
    for block in config.get(block_type, []):
        for name, body in block.get(kind, {}).items():
            assert name not in found, f"duplicate {block_type} {kind}.{name}"
            found[name] = body
    return found


def resources(config: Config, resource_type: str) -> dict[str, Body]:
    """Resources of one type, by resource name."""
    return _two_labelled(config, "resource", resource_type)


def data_sources(config: Config, data_type: str) -> dict[str, Body]:
    """Data sources of one type, by name."""
    return _two_labelled(config, "data", data_type)


def locals_(config: Config) -> Body:
    """Every local value, from all `locals` blocks."""
    merged: Body = {}
    for block in config.get("locals", []):
        for name, value in block.items():
            assert name not in merged, f"duplicate local {name!r}"
            merged[name] = value
    return merged


def resolve_local(config: Config, value: Any) -> Any:
    """`value`, or the local it names when it is exactly `${local.NAME}`."""
    if isinstance(value, str) and (match := _LOCAL_REF.fullmatch(value)):
        return resolve_local(config, locals_(config)[match[1]])
    return value


def config_env_names() -> set[str]:
    """The FANOUT_* names functions/config.py reads (`_read(env, "NAME")` and friends)."""
    source = (REPO_DIR / "functions" / "config.py").read_text(encoding="utf-8")
    return {"FANOUT_" + name for name in re.findall(r'\(env, "([A-Z0-9_]+)"', source)}


def environment(config: Config, body: Body) -> dict[str, Any]:
    """A function's service_config.environment_variables, resolved. It must be one local map
    or `merge()` of local maps (the form functions.tf uses), so a test can read it."""
    expression = body["service_config"][0]["environment_variables"]
    match = re.fullmatch(r"\$\{(?:merge\(([^()]*)\)|(local\.\w+))\}", expression)
    assert match, f"environment_variables is not local maps merged: {expression}"
    env: dict[str, Any] = {}
    for argument in (match[1] or match[2]).split(","):
        value = resolve_local(config, "${" + argument.strip() + "}")
        assert isinstance(value, dict), f"{argument.strip()} is not a map of local values"
        env.update({key: resolve_local(config, item) for key, item in value.items()})
    return env
