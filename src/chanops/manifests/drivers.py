"""What chanops knows about each driver, derived from the `x-chanops-*` schema keywords.

The schemas are the single source of truth: `driver_info("amazon").immutable_paths`
is `{"/credentials/marketplace"}` because `drivers/amazon.schema.json` marks that field
`x-chanops-immutable`. Pointers are JSON pointers relative to `spec`.

Reads package data only (through `schemas`); otherwise pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any

from chanops.manifests import schemas
from chanops.pointer import escape

__all__ = [
    "DRIVER_NAMES",
    "DriverInfo",
    "driver_info",
]

DRIVER_NAMES: tuple[str, ...] = schemas.driver_names()


@dataclass(frozen=True, slots=True)
class DriverInfo:
    name: str  # e.g. "shopware6"
    title: str  # the platform's UI label, e.g. "Shopware 6"
    creatable: bool  # False: only adoptable (shopify, actindo-pos)
    secret_paths: frozenset[str] = frozenset()  # write-only fields, e.g. "/credentials/apiKey"
    immutable_paths: frozenset[str] = frozenset()  # fixed after create
    oauth_paths: frozenset[str] = frozenset()  # set by an OAuth flow, never by a manifest
    labels: Mapping[str, str] = field(default_factory=dict)  # pointer -> UI label
    append_only_paths: frozenset[str] = frozenset()  # lists whose items cannot be removed


def _walk(node: Any, pointer: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(pointer, subschema) for every named property under `node`, depth first."""
    if not isinstance(node, dict):
        return
    for key, sub in (node.get("properties") or {}).items():
        if isinstance(sub, dict):
            here = f"{pointer}/{escape(key)}"
            yield here, sub
            yield from _walk(sub, here)


@cache
def driver_info(name: str) -> DriverInfo:
    """DriverInfo for `name`; KeyError for an unknown driver."""
    body = schemas.driver_body(name)
    secret: set[str] = set()
    immutable: set[str] = set()
    oauth: set[str] = set()
    append_only: set[str] = set()
    labels: dict[str, str] = {}
    for pointer, sub in _walk(body, ""):
        if sub.get("x-chanops-secret"):
            secret.add(pointer)
        if sub.get("x-chanops-immutable"):
            immutable.add(pointer)
        if sub.get("x-chanops-oauth"):
            oauth.add(pointer)
        if sub.get("x-chanops-append-only"):
            append_only.add(pointer)
        if isinstance(sub.get("title"), str):
            labels[pointer] = sub["title"]
    return DriverInfo(
        name=name,
        title=str(body.get("title", name)),
        creatable=bool(body.get("x-chanops-creatable", True)),
        secret_paths=frozenset(secret),
        immutable_paths=frozenset(immutable),
        oauth_paths=frozenset(oauth),
        labels=MappingProxyType(labels),
        append_only_paths=frozenset(append_only),
    )
