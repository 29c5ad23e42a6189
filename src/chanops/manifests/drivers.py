"""What chanops knows about each driver, derived from the `x-chanops-*` schema keywords.

The schemas are the single source of truth: `driver_info("amazon").immutable_paths`
is `{"/credentials/marketplace"}` because `drivers/amazon.schema.json` marks that field
`x-chanops-immutable`. Pointers are JSON pointers relative to `spec`.

Reads package data only (through `schemas`); otherwise pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any, Literal

from chanops.manifests import schemas
from chanops.pointer import escape

__all__ = [
    "DRIVER_NAMES",
    "DriverInfo",
    "FieldDoc",
    "SyncTrigger",
    "driver_info",
    "field_docs",
]

DRIVER_NAMES: tuple[str, ...] = schemas.driver_names()

# When a change to a field marked `x-chanops-sync-after-change` needs a sync: "change"
# (any change, the keyword's `true`) or "enable" (the field turns true).
SyncTrigger = Literal["change", "enable"]


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
    # fields whose change the vendor's procedures follow with a sync (x-chanops-sync-after-change)
    sync_after_change: Mapping[str, SyncTrigger] = field(default_factory=dict)
    # fields (or a whole section) settable only after the initial sync (x-chanops-after-sync)
    after_sync_paths: frozenset[str] = frozenset()


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
    sync_after: dict[str, SyncTrigger] = {}
    after_sync: set[str] = set()
    for pointer, sub in _walk(body, ""):
        trigger = sub.get("x-chanops-sync-after-change")
        if trigger:
            sync_after[pointer] = "enable" if trigger == "enable" else "change"
        if sub.get("x-chanops-after-sync"):
            after_sync.add(pointer)
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
        sync_after_change=MappingProxyType(sync_after),
        after_sync_paths=frozenset(after_sync),
    )


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One field of a driver as the reference documentation lists it."""

    section: str  # "credentials" | "settings"
    key: str  # dotted within the section, list items as "[]": "taxClasses[].code"
    label: str  # the schema title: the platform's UI label
    required: str  # "" (optional), "yes", or the condition under which it is
    rules: tuple[str, ...]  # what the schema's keywords say, in words


# The description every secret field shares: the rules column says "secret" already.
_SHARED_DESCRIPTION_START = "Secret (write-only)."


def _children(node: dict[str, Any], key: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(dotted key, subschema, required within `node`) of each named child, items included."""
    required = set(node.get("required") or ())
    for name, sub in (node.get("properties") or {}).items():
        if isinstance(sub, dict):
            yield (f"{key}.{name}" if key else name), sub, name in required
    items = node.get("items")
    if isinstance(items, dict) and items.get("properties"):
        yield from _children(items, f"{key}[]")


def _type_rule(sub: Mapping[str, Any]) -> str | None:
    if "enum" in sub:
        return "one of: " + ", ".join(str(v) for v in sub["enum"])
    kind = sub.get("type")
    if kind == "object" and "additionalProperties" in sub and not sub.get("properties"):
        return "a mapping"
    if kind == "array":
        return "a list"
    if isinstance(kind, list):
        return " or ".join(kind)
    fmt = sub.get("format")
    return f"{kind} ({fmt})" if fmt and kind else kind


def _keyword_rules(sub: Mapping[str, Any], after_sync: bool) -> Iterator[str]:
    if sub.get("x-chanops-secret"):
        yield "secret (write-only, never printed)"
    if sub.get("x-chanops-immutable"):
        yield "cannot change after create"
    if sub.get("x-chanops-oauth"):
        yield "set by the AUTHORIZE flow, never by a manifest"
    if "default" in sub:
        yield f"default {json.dumps(sub['default'])}"
    if sub.get("x-chanops-append-only"):
        yield "an item a sync has used cannot be removed"
    if after_sync or sub.get("x-chanops-after-sync"):
        yield "set after the initial sync"
    locked = sub.get("x-chanops-locked-unless")
    if locked:
        yield f"locked unless `{locked}` is true"
    plugins = sub.get("x-chanops-requires-plugins")
    if plugins:
        yield f"offered only with the {' and '.join(plugins)} plugins installed"
    trigger = sub.get("x-chanops-sync-after-change")
    if trigger:
        yield "turning it on starts a sync" if trigger == "enable" else "a change starts a sync"


def _field_rules(sub: Mapping[str, Any], after_sync: bool) -> tuple[str, ...]:
    out = [r for r in (_type_rule(sub),) if r]
    out.extend(_keyword_rules(sub, after_sync))
    description = sub.get("description")
    if isinstance(description, str) and not description.startswith(_SHARED_DESCRIPTION_START):
        out.append(description.rstrip("."))
    return tuple(out)


def _conditionally_required(body: Mapping[str, Any], section: str) -> frozenset[str]:
    """Fields a driver requires only without spec.connectionId (a hand-made connection)."""
    then = body.get("then") or {}
    inner = (then.get("properties") or {}).get(section) or {}
    return frozenset(inner.get("required") or ())


def field_docs(name: str) -> tuple[FieldDoc, ...]:
    """Every field of driver `name`, credentials then settings, in schema order."""
    body = schemas.driver_body(name)
    out: list[FieldDoc] = []
    for section in ("credentials", "settings"):
        root = (body.get("properties") or {}).get(section) or {}
        by_hand = _conditionally_required(body, section)
        after_sync = bool(root.get("x-chanops-after-sync"))
        stack = [(k, s, r, True) for k, s, r in _children(root, "")]
        while stack:
            key, sub, required, parent_required = stack.pop(0)
            needed = "yes" if required and parent_required else ""
            if required and not parent_required:
                parent = key.rsplit(".", 1)[0]
                needed = "in each item" if parent.endswith("[]") else f"when `{parent}` is set"
            if key in by_hand:
                needed = "without spec.connectionId"
            label = str(sub.get("title", ""))
            # A whole section after the sync is said once per top-level field.
            rules = _field_rules(sub, after_sync and "." not in key)
            out.append(FieldDoc(section, key, label, needed, rules))
            kids = [(k, s, r, required and parent_required) for k, s, r in _children(sub, key)]
            stack[0:0] = kids
    return tuple(out)
