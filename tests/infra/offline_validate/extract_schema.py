"""Regenerate schema.json: the provider schemas of the resource and data-source types infra/
uses, in the shape of `terraform providers schema -json`.

    .venv/bin/python -m tests.infra.offline_validate.extract_schema

The registry is out of reach, so the schemas come from the cdktf bindings on npm, pinned
below. Each binding's lib/<type>/index.js carries its TypeScript source in an inline source
map, and that source spells out the schema: a `// name - computed: …, optional: …,
required: …` comment per attribute, and per settable argument an entry with `isBlock`,
`type` and `storageClassType` in synthesizeHclAttributes() (the resource) or
<struct>ToHclTerraform() (a nested block). Anything this reader does not recognise stops it,
naming the type and attribute, rather than writing a guessed schema.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.infra.offline_validate.schema import SCHEMA_PATH, needs

# One exact version each: the extraction reads generated code, so a new binding release is a
# deliberate regeneration, reviewed as a diff of schema.json.
PACKAGES = {
    "registry.terraform.io/hashicorp/google": "@cdktf/provider-google@16.12.1",
    "registry.terraform.io/hashicorp/random": "@cdktf/provider-random@12.0.1",
    "registry.terraform.io/hashicorp/archive": "@cdktf/provider-archive@11.0.1",
    "registry.terraform.io/hashicorp/time": "@cdktf/provider-time@11.0.1",
}

_TYPE_NAME = re.compile(r'tfResourceType = "(\w+)"')
_KIND = re.compile(r"extends cdktf\.Terraform(Resource|DataSource|Provider)\b")
_PROVIDER_VERSION = re.compile(r"providerVersion: '([\w.-]+)'")
_SOURCE_MAP = re.compile(r"sourceMappingURL=data:application/json;base64,(\S+)")
_CLASS = re.compile(r"^export class (\w+) extends [\w.]+ \{$(.*?)^\}$", re.M | re.S)
_ATTRIBUTE = re.compile(
    r"^  // (\w+) - computed: (true|false), optional: (true|false), required: (true|false)$", re.M
)
_HCL_FUNCTION = re.compile(
    r"^export function \w+ToHclTerraform\(struct\?: (?:\w+OutputReference \| )?(\w+)"
    r"(?: \| cdktf\.IResolvable)?\): any \{$(.*?)^\}$",
    re.M | re.S,
)
_HCL_METHOD = re.compile(r"protected synthesizeHclAttributes\(\)[^{]*\{(.*?)^  \}$", re.M | re.S)
_HCL_ENTRY = re.compile(
    r"^ +(\w+): \{\n +value: .*,\n +isBlock: (true|false),\n"
    r' +type: "(\w+)",\n +storageClassType: "(\w+)",\n +\},?$',
    re.M,
)
_INTERFACE = re.compile(r"^export interface (\w+) \{$(.*?)^\}$", re.M | re.S)
_FIELD = re.compile(r"^  readonly (\w+)(\??):", re.M)

_SCALAR = {"string": "string", "number": "number", "boolean": "bool"}
_NESTING = {"list": "list", "set": "set", "struct": "single", "map": "map"}
# Getters of computed-only attributes (not in the HCL map) and the type they read; the first
# that matches wins (a set is read as a list wrapped in tolist()).
_GETTERS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"cdktf\.Fn\.tolist\(this\.getListAttribute\("), ["set", "string"]),
    (re.compile(r"cdktf\.Fn\.tolist\(this\.getNumberListAttribute\("), ["set", "number"]),
    (re.compile(r"cdktf\.Fn\.tolist\(this\.getBooleanListAttribute\("), ["set", "bool"]),
    (re.compile(r"this\.getListAttribute\("), ["list", "string"]),
    (re.compile(r"this\.getNumberListAttribute\("), ["list", "number"]),
    (re.compile(r"this\.getBooleanListAttribute\("), ["list", "bool"]),
    (re.compile(r"this\.getStringAttribute\("), "string"),
    (re.compile(r"this\.getNumberAttribute\("), "number"),
    (re.compile(r"this\.getBooleanAttribute\("), "bool"),
    (re.compile(r"new cdktf\.StringMap\("), ["map", "string"]),
    (re.compile(r"new cdktf\.NumberMap\("), ["map", "number"]),
    (re.compile(r"new cdktf\.BooleanMap\("), ["map", "bool"]),
    (re.compile(r"new cdktf\.AnyMap\("), ["map", "dynamic"]),
    (re.compile(r"new cdktf\.StringMapList\(this, \"\w+\", true\)"), ["set", ["map", "string"]]),
    (re.compile(r"new cdktf\.StringMapList\(this, \"\w+\", false\)"), ["list", ["map", "string"]]),
]
_COMPLEX_FIELD = re.compile(
    r'new (\w+?)(List|Map|OutputReference)\(this, "(\w+)"(?:, (true|false))?\)'
)


class ExtractionError(Exception):
    """The bindings hold something this reader does not understand."""


@dataclass
class _Attribute:
    name: str
    computed: bool
    optional: bool
    required: bool
    code: str  # the field and getter lines that follow the comment


@dataclass
class _Source:
    """One binding's TypeScript source, indexed for the schema walk."""

    label: str
    classes: dict[str, list[_Attribute]]
    main: list[str]  # classes with synthesizeHclAttributes(): the resource itself
    hcl: dict[str, dict[str, tuple[bool, str, str]]]  # struct -> name -> (isBlock, type, class)
    required: dict[str, dict[str, bool]]  # interface -> camelCase field -> required

    @classmethod
    def parse(cls, label: str, ts: str) -> _Source:
        classes: dict[str, list[_Attribute]] = {}
        main: list[str] = []
        hcl: dict[str, dict[str, tuple[bool, str, str]]] = {}
        for match in _CLASS.finditer(ts):
            classes[match[1]] = _attributes(match[2])
            if method := _HCL_METHOD.search(match[2]):
                hcl[match[1]] = _hcl_entries(method[1])
                main.append(match[1])
        for function in _HCL_FUNCTION.finditer(ts):
            hcl[function[1]] = _hcl_entries(function[2])
        required = {
            interface[1]: {field[1]: not field[2] for field in _FIELD.finditer(interface[2])}
            for interface in _INTERFACE.finditer(ts)
        }
        return cls(label, classes, main, hcl, required)

    def fail(self, where: str, why: str) -> ExtractionError:
        return ExtractionError(f"{self.label}: {where}: {why}")

    def block(self, struct: str, class_name: str) -> dict[str, Any]:
        """The schema block of one struct: the resource itself or a nested block."""
        hcl = self.hcl.get(struct)
        if hcl is None:
            raise self.fail(struct, "no HCL attribute map")
        if class_name not in self.classes:
            # A provider's nested blocks have no OutputReference class: only the interface
            # says which fields are required.
            return self._block_from_interface(struct, hcl)
        block: dict[str, Any] = {"attributes": {}, "block_types": {}}
        for attribute in self.classes[class_name]:
            where = f"{struct}.{attribute.name}"
            entry = hcl.get(attribute.name)
            if entry is None:
                if attribute.optional or attribute.required:
                    raise self.fail(where, "settable but missing from the HCL map")
                block["attributes"][attribute.name] = {
                    "type": self._computed_type(where, attribute.code),
                    "computed": True,
                }
            elif entry[0]:
                block["block_types"][attribute.name] = self._nested(where, attribute, entry)
            else:
                block["attributes"][attribute.name] = {
                    "type": self._argument_type(where, entry),
                    **{flag: True for flag in _flags(attribute)},
                }
        missing = set(hcl) - {attribute.name for attribute in self.classes[class_name]}
        if missing:
            raise self.fail(struct, f"HCL map names {sorted(missing)} without a comment")
        return block

    def _block_from_interface(
        self, struct: str, hcl: dict[str, tuple[bool, str, str]]
    ) -> dict[str, Any]:
        fields = {_snake(name): req for name, req in self.required.get(struct, {}).items()}
        block: dict[str, Any] = {"attributes": {}, "block_types": {}}
        for name, entry in hcl.items():
            where = f"{struct}.{name}"
            if entry[0]:
                raise self.fail(where, "a block nested in a provider block")
            flag = "required" if fields.get(name) else "optional"
            block["attributes"][name] = {"type": self._argument_type(where, entry), flag: True}
        return block

    def _nested(
        self, where: str, attribute: _Attribute, entry: tuple[bool, str, str]
    ) -> dict[str, Any]:
        _, kind, storage = entry
        nesting = _NESTING.get(kind)
        if nesting is None:
            raise self.fail(where, f"block of type {kind!r}")
        # The storage class is <struct>List, <struct>Map or (a single block) <struct> itself.
        struct = storage.removesuffix({"list": "List", "set": "List", "map": "Map"}.get(kind, ""))
        nested: dict[str, Any] = {
            "nesting_mode": nesting,
            "block": self.block(struct, struct + "OutputReference"),
        }
        if attribute.required and nesting in ("list", "set"):
            nested["min_items"] = 1
        # A block the binding models as one object (not a List class) has MaxItems 1.
        field = _COMPLEX_FIELD.search(attribute.code)
        if nesting in ("list", "set") and field and field[2] == "OutputReference":
            nested["max_items"] = 1
        return nested

    def _argument_type(self, where: str, entry: tuple[bool, str, str]) -> Any:
        _, kind, storage = entry
        if kind == "simple" and storage in _SCALAR:
            return _SCALAR[storage]
        for suffix, collection in (("List", kind), ("Map", "map")):
            element = storage.removesuffix(suffix)
            if storage.endswith(suffix) and element in _SCALAR and kind in ("list", "set", "map"):
                return [collection, _SCALAR[element]]
        if kind == "simple" and storage == "any":
            return "dynamic"
        raise self.fail(where, f"argument of type {kind!r}/{storage!r}")

    def _computed_type(self, where: str, code: str) -> Any:
        field = _COMPLEX_FIELD.search(code)
        if field:
            element = self._object_type(where, field[1])
            if field[2] == "List":
                return ["set" if field[4] == "true" else "list", element]
            if field[2] == "Map":
                return ["map", element]
            return element
        for pattern, cty in _GETTERS:
            if pattern.search(code):
                return cty
        raise self.fail(where, f"computed attribute read by {code.strip()[:120]!r}")

    def _object_type(self, where: str, struct: str) -> list[Any]:
        """The cty object type of a computed-only nested object: every field, by getter."""
        class_name = struct + "OutputReference"
        if class_name not in self.classes:
            raise self.fail(where, f"no class {class_name}")
        return [
            "object",
            {
                attribute.name: self._computed_type(f"{where}.{attribute.name}", attribute.code)
                for attribute in self.classes[class_name]
            },
        ]


def _attributes(body: str) -> list[_Attribute]:
    comments = list(_ATTRIBUTE.finditer(body))
    return [
        _Attribute(
            name=comment[1],
            computed=comment[2] == "true",
            optional=comment[3] == "true",
            required=comment[4] == "true",
            code=body[
                comment.end() : comments[i + 1].start() if i + 1 < len(comments) else len(body)
            ],
        )
        for i, comment in enumerate(comments)
    ]


def _hcl_entries(text: str) -> dict[str, tuple[bool, str, str]]:
    return {
        entry[1]: (entry[2] == "true", entry[3], entry[4]) for entry in _HCL_ENTRY.finditer(text)
    }


def _flags(attribute: _Attribute) -> list[str]:
    return [
        flag
        for flag, on in (
            ("required", attribute.required),
            ("optional", attribute.optional),
            ("computed", attribute.computed),
        )
        if on
    ]


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()


def _typescript(js: str, label: str) -> str:
    source_map = _SOURCE_MAP.search(js)
    if source_map is None:
        raise ExtractionError(f"{label}: no inline source map")
    content: str = json.loads(base64.b64decode(source_map[1]))["sourcesContent"][0]
    return content


def _bindings(tarball: Path, wanted: Callable[[str, str], bool]) -> Iterator[tuple[str, str, str]]:
    """(kind, type name, TypeScript source) of each wanted binding: resource, data source or
    provider. The largest bindings keep their structs in lib/<dir>/index-structs/structs*.js:
    their sources are appended."""
    mains: dict[str, tuple[str, str, str]] = {}
    structs: dict[str, list[str]] = {}
    with tarfile.open(tarball) as archive:
        for member in archive:
            path = re.fullmatch(
                r"package/lib/([\w-]+)/(index|index-structs/structs\d+)\.js", member.name
            )
            if not path:
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            js = handle.read().decode("utf-8")
            if path[2] != "index":
                structs.setdefault(path[1], []).append(_typescript(js, member.name))
                continue
            base = _KIND.search(js)
            type_name = _TYPE_NAME.search(js)
            kind = base[1].lower() if base else ""
            name = type_name[1] if type_name else ""
            if base and wanted(kind, name):
                mains[path[1]] = (kind, name, _typescript(js, member.name))
    for directory, (kind, name, ts) in sorted(mains.items()):
        yield kind, name, "\n".join([ts, *structs.get(directory, [])])


def provider_schema(
    tarball: Path, resources: set[str], data_sources: set[str]
) -> tuple[str, dict[str, Any]]:
    """(provider version, its schema limited to these types) from one binding package."""
    version = ""
    schema: dict[str, Any] = {"resource_schemas": {}, "data_source_schemas": {}}
    wanted = {"resource": resources, "datasource": data_sources}
    key = {"resource": "resource_schemas", "datasource": "data_source_schemas"}
    for kind, name, ts in _bindings(tarball, lambda kind, name: name in wanted.get(kind, {name})):
        if kind == "provider":
            if found := _PROVIDER_VERSION.search(ts):
                version = found[1]
            schema["provider"] = _schema(ts, "provider", {"alias"})
        else:
            label = f"{'data ' if kind == 'datasource' else ''}{name}"
            schema[key[kind]][name] = _schema(ts, label, set())
    for kind, names in wanted.items():
        if missing := names - set(schema[key[kind]]):
            raise ExtractionError(f"{tarball.name} has no {kind} {sorted(missing)}")
    if not version or "provider" not in schema:
        raise ExtractionError(f"{tarball.name}: no provider binding or providerVersion")
    return version, schema


def _schema(ts: str, label: str, meta_arguments: set[str]) -> dict[str, Any]:
    source = _Source.parse(label, ts)
    if len(source.main) != 1:
        raise source.fail("classes", f"expected one resource class, found {source.main}")
    block = source.block(source.main[0], source.main[0])
    # `alias` is a cdktf property of every provider, not a provider argument.
    for name in meta_arguments:
        block["attributes"].pop(name, None)
    return {"version": 0, "block": block}


def _pack(spec: str, directory: Path) -> Path:
    result = subprocess.run(
        ["npm", "pack", "--silent", "--pack-destination", str(directory), spec],
        check=True,
        capture_output=True,
        text=True,
    )
    return directory / result.stdout.strip().splitlines()[-1]


def main() -> int:
    wanted = needs()
    if unpinned := sorted(set(wanted) - set(PACKAGES)):
        sys.exit(f"infra/ requires {unpinned}: pin their cdktf binding package in PACKAGES")
    document: dict[str, Any] = {"format_version": "1.0", "packages": {}, "provider_schemas": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for address, types in sorted(wanted.items()):
            tarball = _pack(PACKAGES[address], Path(tmp))
            version, schema = provider_schema(tarball, types["resource"], types["data"])
            document["packages"][address] = {"npm": PACKAGES[address], "provider_version": version}
            document["provider_schemas"][address] = schema
    SCHEMA_PATH.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    count = sum(len(names) for types in wanted.values() for names in types.values())
    print(f"wrote {SCHEMA_PATH}: {len(wanted)} providers, {count} resource and data-source types")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
