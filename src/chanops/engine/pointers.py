"""JSON pointers over nested JSON-like values (pure: no I/O).

The planner diffs leaves: objects recurse, anything else (scalars, lists, empty
objects) is a leaf, because the platform's merge patch replaces lists and scalars
whole and merges objects key by key (RFC 7396).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# One escaping for chanops (the manifests package cannot import the engine).
from chanops.pointer import escape as escape
from chanops.pointer import unescape as unescape


def split(pointer: str) -> list[str]:
    if not pointer:
        return []
    return [unescape(p) for p in pointer.lstrip("/").split("/")]


def join(parts: Iterable[str]) -> str:
    return "".join("/" + escape(p) for p in parts)


def leaves(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of `value` by pointer: {"/a/b": 1} for {"a": {"b": 1}}."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        pointer = f"{prefix}/{escape(key) if '/' in key or '~' in key else key}"
        if (type(item) is dict or isinstance(item, Mapping)) and item:
            out.update(leaves(item, pointer))
        else:
            out[pointer] = plain(item)
    return out


def plain(value: Any) -> Any:
    """Plain JSON types (tuples to lists, mappings to dicts) so equality is by value."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def is_under(pointer: str, base: str) -> bool:
    """True when `pointer` is `base` or inside it."""
    return pointer == base or pointer.startswith(base + "/")


def related(a: str, b: str) -> bool:
    """One pointer is the other or contains it."""
    return is_under(a, b) or is_under(b, a)


def get(value: Mapping[str, Any], pointer: str, default: Any = None) -> Any:
    current: Any = value
    for part in split(pointer):
        if not isinstance(current, Mapping) or part not in current:
            return default
        current = current[part]
    return current


def build(assignments: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """A nested object (a merge patch) from (pointer, value) pairs."""
    out: dict[str, Any] = {}
    for pointer, value in assignments:
        parts = split(pointer)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return out
