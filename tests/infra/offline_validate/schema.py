"""The committed provider schemas (schema.json) and what infra/ needs from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.infra.terraform_config import load_config

SCHEMA_PATH = Path(__file__).with_name("schema.json")
REGENERATE = ".venv/bin/python -m tests.infra.offline_validate.extract_schema"

Needs = dict[str, dict[str, set[str]]]  # provider address -> "resource"/"data" -> types


def needs() -> Needs:
    """Every provider infra/ requires, with the resource and data-source types it uses.

    A type belongs to the provider whose local name is its prefix (`google_…`, `random_…`),
    Terraform's own default; infra/ sets no `provider =` to another one."""
    config = load_config()
    found: Needs = {}
    local_names: dict[str, str] = {}
    for terraform in config.get("terraform", []):
        for required in terraform.get("required_providers", []):
            for local_name, requirement in required.items():
                address = f"registry.terraform.io/{requirement['source']}"
                local_names[local_name] = address
                found[address] = {"resource": set(), "data": set()}
    for kind in ("resource", "data"):
        for block in config.get(kind, []):
            for type_name in block:
                prefix = type_name.split("_", 1)[0]
                if prefix not in local_names:
                    raise LookupError(f"{kind} {type_name}: no required_providers entry {prefix!r}")
                found[local_names[prefix]][kind].add(type_name)
    return found


def load_schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return document
