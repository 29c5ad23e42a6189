"""Desired against actual, field by field, for the connection page (pure).

The manifest's side is what the planner compares (`desired_doc`: display name,
non-secret credentials, settings, automation); the platform's is `observed_doc`. A
secret is never shown on either side, only whether it is set: a field is secret when
the driver's schema marks it write-only or the manifest gives it as a `secretRef`, and
a literal secret in a manifest (allowed, with a warning) is hidden the same way.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from chanops.engine import pointers
from chanops.engine.diff import desired_doc, observed_doc
from chanops.manifests.model import Manifest
from chanops.platform.models import Connection
from chanops.sensitive import SENSITIVE_VALUE

NOT_SET = "(not set)"
_MISSING = object()


@dataclass(frozen=True, slots=True)
class FieldRow:
    """One field of one connection; `state` is one of the `STATES` below."""

    path: str  # the JSON pointer relative to spec, e.g. /settings/defaultLanguage
    label: str  # the platform UI's label, or the dotted path
    desired: str | None  # None: the manifest does not set it
    actual: str | None  # None: the platform has no such field (or no connection)
    state: str

    def to_view(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "label": self.label,
            "desired": self.desired,
            "actual": self.actual,
            "state": self.state,
        }


# equal: the same; differs: the next reconcile heals it; ignored: differs, but
# spec.ignoreDifferences keeps it; sensitive: a secret, compared by HMAC, never shown;
# unmanaged: only the platform has it (the manifest leaves it alone).
STATES = ("equal", "differs", "ignored", "sensitive", "unmanaged")


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _is_secret_ref(value: Any) -> bool:
    return hasattr(value, "describe") or (isinstance(value, Mapping) and "secretRef" in value)


def _desired_secrets(manifest: Manifest, secret_paths: Collection[str]) -> set[str]:
    found = pointers.leaves(manifest.credentials, "/credentials")
    return {p for p, v in found.items() if p in secret_paths or _is_secret_ref(v)}


def _label(path: str, labels: Mapping[str, str]) -> str:
    if path == "/name":
        return "Name (displayName)"
    return labels.get(path) or ".".join(pointers.split(path))


def field_rows(
    manifest: Manifest | None,
    connection: Connection | None,
    *,
    secret_paths: Collection[str] = frozenset(),
    labels: Mapping[str, str] | None = None,
) -> list[FieldRow]:
    """Every field either side sets, secrets masked, in a stable order (desired first)."""
    labels = labels or {}
    secrets = set(secret_paths)
    if manifest is not None:
        secrets |= _desired_secrets(manifest, secrets)
    want = pointers.leaves(desired_doc(manifest, secrets)) if manifest is not None else {}
    have = pointers.leaves(observed_doc(connection)) if connection is not None else {}
    ignore = manifest.ignore_differences if manifest is not None else ()
    rows: list[FieldRow] = []
    if manifest is not None:
        rows.append(_enabled_row(manifest, connection))
    for path, value in want.items():
        current = have.get(path, _MISSING)
        actual = None if current is _MISSING else _show(current)
        state = "equal" if current == value else "differs"
        if state == "differs" and any(pointers.related(path, p) for p in ignore):
            state = "ignored"
        rows.append(FieldRow(path, _label(path, labels), _show(value), actual, state))
    for path in sorted(_desired_secrets(manifest, secrets) if manifest is not None else ()):
        actual_secret = have.get(path, _MISSING)
        actual = None if actual_secret is _MISSING or connection is None else SENSITIVE_VALUE
        rows.append(FieldRow(path, _label(path, labels), SENSITIVE_VALUE, actual, "sensitive"))
    shown = {r.path for r in rows}
    for path, value in have.items():
        if path in shown:
            continue
        if path in secrets:
            # The platform never returns a write-only value; whatever stands there is hidden.
            actual = NOT_SET if value is None else SENSITIVE_VALUE
            rows.append(FieldRow(path, _label(path, labels), None, actual, "sensitive"))
            continue
        rows.append(FieldRow(path, _label(path, labels), None, _show(value), "unmanaged"))
    return rows


def _enabled_row(manifest: Manifest, connection: Connection | None) -> FieldRow:
    actual = None if connection is None else _show(connection.status == "active")
    want = _show(manifest.enabled)
    state = "equal" if actual == want else "differs"
    return FieldRow("/enabled", "Enabled", want, actual, state)
