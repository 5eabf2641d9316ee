"""A schema-only Terraform provider: serves one provider's schema from schema.json, accepts
every config, and implements nothing else.

    python stub_provider.py SCHEMA_JSON PROVIDER_ADDRESS

Enough for `terraform validate`, which checks a module against the schema itself (unknown
arguments and blocks, missing required ones, types, references) and asks the provider only
to run its own checks, which this stub skips. It speaks plugin protocol 6 on the grpcio the
project already has; the few messages it sends are encoded here by field number, from
https://github.com/hashicorp/terraform/blob/main/docs/plugin-protocol/tfplugin6.proto
(GetProviderSchema.Response, Schema, Schema.Block, Schema.Attribute, Schema.NestedBlock).
The handshake and the go-plugin services are those of github.com/hashicorp/go-plugin.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]

_NESTING = {"single": 1, "list": 2, "set": 3, "map": 4}  # Schema.NestedBlock.NestingMode


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _message(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, embedded message, map entry)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _number(number: int, value: int) -> bytes:
    """A varint field (int64, bool, enum); zero is the default and is left out."""
    return _varint(number << 3) + _varint(value) if value else b""


def _block(block: dict[str, Any]) -> bytes:
    out = b""
    for name, attribute in sorted(block.get("attributes", {}).items()):
        out += _message(
            2,
            _message(1, name.encode())
            + _message(2, json.dumps(attribute["type"]).encode())  # a cty type, as JSON
            + _number(4, attribute.get("required", False))
            + _number(5, attribute.get("optional", False))
            + _number(6, attribute.get("computed", False)),
        )
    for name, nested in sorted(block.get("block_types", {}).items()):
        out += _message(
            3,
            _message(1, name.encode())
            + _message(2, _block(nested["block"]))
            + _number(3, _NESTING[nested["nesting_mode"]])
            + _number(4, nested.get("min_items", 0))
            + _number(5, nested.get("max_items", 0)),
        )
    return out


def _schema(schema: dict[str, Any]) -> bytes:
    return _number(1, schema.get("version", 0)) + _message(2, _block(schema["block"]))


def _schemas(number: int, schemas: dict[str, Any]) -> bytes:
    """A map<string, Schema> field: one {key = 1, value = 2} entry per type."""
    return b"".join(
        _message(number, _message(1, name.encode()) + _message(2, _schema(schema)))
        for name, schema in sorted(schemas.items())
    )


def provider_schema_response(schema: dict[str, Any]) -> bytes:
    """GetProviderSchema.Response: provider = 1, resource_schemas = 2, data_source_schemas = 3."""
    return (
        _message(1, _schema(schema["provider"]))
        + _schemas(2, schema["resource_schemas"])
        + _schemas(3, schema["data_source_schemas"])
    )


Handler = Callable[[bytes, Any], bytes]


def _service(name: str, methods: dict[str, Handler]) -> Any:
    # No (de)serializers: requests and responses stay raw bytes.
    return grpc.method_handlers_generic_handler(
        name, {method: grpc.unary_unary_rpc_method_handler(h) for method, h in methods.items()}
    )


def _answer(payload: bytes) -> Handler:
    return lambda request, context: payload


def serve(schema: dict[str, Any]) -> None:
    shutdown = threading.Event()
    accept = _answer(b"")  # an empty response: no diagnostics
    # Every other method (identity schemas, plan, apply, …) answers UNIMPLEMENTED, which
    # Terraform accepts where it is optional and reports as an error where it is not.
    provider: dict[str, Handler] = {
        "GetProviderSchema": _answer(provider_schema_response(schema)),
        "ValidateProviderConfig": accept,
        "ValidateResourceConfig": accept,
        "ValidateDataResourceConfig": accept,
        "StopProvider": accept,
    }

    def stop(request: bytes, context: Any) -> bytes:
        shutdown.set()
        return b""

    services: Iterable[Any] = [
        _service("tfplugin6.Provider", provider),
        # go-plugin asks the plugin to exit through its controller, then waits 2 s before
        # killing it: exiting at once keeps each terraform command fast.
        _service("plugin.GRPCController", {"Shutdown": stop}),
        # HealthCheckResponse{status: SERVING} for go-plugin's ping of service "plugin".
        _service("grpc.health.v1.Health", {"Check": _answer(_number(1, 1))}),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(tuple(services))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    # The go-plugin handshake: core protocol 1, plugin protocol 6, address, gRPC. No server
    # certificate, so Terraform connects without TLS.
    print(f"1|6|tcp|127.0.0.1:{port}|grpc", flush=True)
    shutdown.wait()
    server.stop(grace=0.2).wait()


def main() -> int:
    schema_path, address = sys.argv[1:3]
    document = json.loads(Path(schema_path).read_text(encoding="utf-8"))
    serve(document["provider_schemas"][address])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
