"""The packaged JSON Schemas, read once, and the per-driver validation schemas built from them.

The files under `chanops/schemas/` are the single source of truth. For validation we
build one self-contained schema per driver: the connection schema with its
`if driver == X then $ref drivers/X` chain replaced by driver X's schema, every `$ref`
inlined. That schema is what both the compiled fast path (fastjsonschema) and the
message-producing validator (jsonschema) run, so they cannot disagree about the rules.

Reads package data only; otherwise pure.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "JSONDict",
    "bundled_schema",
    "connection_schema",
    "driver_body",
    "driver_names",
    "driver_schema",
    "validation_schema",
]

JSONDict = dict[str, Any]


def _read(name: str) -> JSONDict:
    text = resources.files("chanops").joinpath("schemas", *name.split("/")).read_text("utf-8")
    data: JSONDict = json.loads(text)
    return data


@cache
def connection_schema() -> JSONDict:
    """`connection.schema.json` as shipped (do not mutate)."""
    return _read("connection.schema.json")


@cache
def driver_names() -> tuple[str, ...]:
    """Driver names in schema order: the `spec.driver` enum."""
    names = connection_schema()["properties"]["spec"]["properties"]["driver"]["enum"]
    return tuple(str(n) for n in names)


@cache
def driver_schema(name: str) -> JSONDict:
    """`drivers/<name>.schema.json` as shipped (do not mutate). KeyError if unknown."""
    if name not in driver_names():
        raise KeyError(name)
    return _read(f"drivers/{name}.schema.json")


def _inline_local_refs(node: Any, defs: JSONDict) -> Any:
    """Replace `{"$ref": "#/$defs/X"}` with a copy of defs[X] (recursively)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = _inline_local_refs(copy.deepcopy(defs[ref[len("#/$defs/") :]]), defs)
            rest = {k: _inline_local_refs(v, defs) for k, v in node.items() if k != "$ref"}
            return {**target, **rest} if rest else target
        return {k: _inline_local_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_local_refs(v, defs) for v in node]
    return node


@cache
def driver_body(name: str) -> JSONDict:
    """Driver `name`'s schema with local refs inlined and the document keywords dropped."""
    raw = driver_schema(name)
    body = _inline_local_refs(raw, raw.get("$defs", {}))
    for key in ("$schema", "$id"):
        body.pop(key, None)
    result: JSONDict = body
    return result


@cache
def validation_schema(driver: str | None) -> JSONDict:
    """The self-contained schema for a document of `driver` (None: envelope only).

    `None` is used when `spec.driver` is missing or unknown: the envelope still reports
    every other problem, and the driver enum names the closest driver.
    """
    schema = copy.deepcopy(connection_schema())
    schema.pop("$id", None)
    spec = schema["properties"]["spec"]
    spec.pop("allOf", None)
    if driver is not None:
        spec["allOf"] = [driver_body(driver)]
    result: JSONDict = schema
    return result


@cache
def bundled_schema() -> JSONDict:
    """One self-contained schema for editors (yaml-language-server): drivers under `$defs`."""
    schema = copy.deepcopy(connection_schema())
    schema.pop("$id", None)
    defs: JSONDict = {}
    for rule in schema["properties"]["spec"]["allOf"]:
        ref = rule["then"]["$ref"]
        name = ref.split("/")[-1].removesuffix(".schema.json")
        defs[f"driver-{name}"] = driver_body(name)
        rule["then"] = {"$ref": f"#/$defs/driver-{name}"}
    schema["$defs"] = defs
    return schema
