"""Label selectors for notification routes, as Kubernetes writes them.

`team=emea,tier!=test`, `tier in (gold, silver)`, `region notin (cn)`, `team` (the
label is set), `!legacy` (it is not). Requirements are ANDed. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Requirement", "Selector", "SelectorError", "parse_selector"]

_KEY = r"[A-Za-z0-9]([A-Za-z0-9_.\-/]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([A-Za-z0-9_.\-]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s+\(([^()]*)\)$")
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")
_VALUE_ONLY = re.compile(rf"^{_VALUE}$")


class SelectorError(ValueError):
    """A selector that does not parse; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # in, notin, exists, !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def _requirement(part: str) -> Requirement:
    if not part:
        raise SelectorError("an empty requirement (two commas, or a trailing comma)")
    if m := _SET.match(part):
        values = [v.strip() for v in m.group(4).split(",")]
        bad = [v for v in values if not v or not _VALUE_ONLY.match(v)]
        if bad or not values:
            raise SelectorError(f"{part!r}: the set needs label values separated by commas")
        op = m.group(3)
        return Requirement(m.group(1), op, frozenset(values))
    if m := _EQUALITY.match(part):
        op = "notin" if m.group(3) == "!=" else "in"
        return Requirement(m.group(1), op, frozenset({m.group(4)}))
    if m := _EXISTS.match(part):
        return Requirement(m.group(2), "!exists" if m.group(1) else "exists")
    raise SelectorError(
        f"{part!r} is not a requirement: expected key=value, key!=value, "
        "key in (a, b), key notin (a, b), key or !key"
    )


def parse_selector(text: str) -> Selector:
    """A selector from its text (SelectorError when it does not parse)."""
    if not text.strip():
        raise SelectorError("the selector is empty: leave `selector` out to match every label")
    if text.count("(") != text.count(")"):
        raise SelectorError("unbalanced parentheses")
    return Selector(text, tuple(_requirement(p) for p in _split(text)))
