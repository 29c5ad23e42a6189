"""Pure document work the planner and the executor share: no I/O, no planning.

- `Desired`, `Observed`, `DriverMeta`: the planner's inputs about one manifest, the
  platform, and a driver's fields.
- `desired_doc` / `observed_doc`: a manifest and a connection in the platform's shape.
- `diff`: the field-level, three-way diff of one connection; `create_changes` the body
  of a create. `fingerprint` digests what a manifest asks for; `source_key` is how a
  manifest file is remembered (relative to the root).

The executor uses `diff` once more when the platform answers 412 (someone wrote
between plan and apply): it re-diffs against what it just read, by the same rules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from chanops.engine import pointers
from chanops.engine.plan import FieldChange, Ignored
from chanops.manifests.model import Manifest
from chanops.platform.models import Connection
from chanops.state.store import Record

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class DriverMeta:
    """What the planner needs to know about a driver's fields (pointers relative to spec)."""

    creatable: bool = True
    secret_paths: frozenset[str] = frozenset()
    immutable_paths: frozenset[str] = frozenset()
    oauth_paths: frozenset[str] = frozenset()
    # pointer -> "change" | "enable": a write that changes it is followed by a sync
    sync_after_change: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Desired:
    """One manifest as the planner sees it: the manifest plus its secrets' HMACs."""

    manifest: Manifest
    secret_hmacs: Mapping[str, str] = field(default_factory=dict)  # pointer -> HMAC
    secret_error: str | None = None  # a secretRef that did not resolve (names the ref)
    # `fingerprint(self)`, when the shell computed it ahead (off the critical path);
    # "" = compute on demand.
    fingerprint: str = ""

    @property
    def name(self) -> str:
        return self.manifest.name


@dataclass(frozen=True, slots=True)
class Observed:
    """What the platform said. `scope` None = the complete list; otherwise the ids read."""

    connections: tuple[Connection, ...]
    scope: frozenset[int] | None = None
    # `by_id`, built once: a daemon plans every batch of a resync against one listing.
    _by_id: dict[int, Connection] | None = field(default=None, compare=False, repr=False)

    def saw(self, connection_id: int) -> bool:
        return self.scope is None or connection_id in self.scope

    def by_id(self) -> Mapping[int, Connection]:
        """The connections by id. Built whole before it is published: planning threads
        may ask at the same time, and none may see part of it."""
        index = self._by_id
        if index is None:
            index = {c.id: c for c in self.connections}
            object.__setattr__(self, "_by_id", index)  # a cache, not a change of value
        return index


def source_key(file: str, root: str) -> str:
    """How `source_file` is stored and compared: `file` relative to the manifests root.

    A loader reports files as discovered under the root as given (`root/sub/a.yaml`);
    the key is `sub/a.yaml`. With a git source the root is a fresh checkout directory
    per commit, so an absolute or root-prefixed path would never match the one stored
    for the previous commit. A value that is not under `root` (already a key, or a
    file given on its own) is returned unchanged. Pure string work, no filesystem.
    """
    if not root or not file:
        return file
    prefix = root if root.endswith("/") else root + "/"
    return file[len(prefix) :] if file.startswith(prefix) else file


def desired_doc(manifest: Manifest, secret_paths: Set[str]) -> dict[str, Any]:
    """The non-secret part of a manifest in the platform's shape (pointers relative to spec)."""
    credentials = {
        p: v
        for p, v in pointers.leaves(manifest.credentials, "/credentials").items()
        if p not in secret_paths and not _is_secret_ref(v)
    }
    doc: dict[str, Any] = {"name": manifest.display_name}
    doc.update(pointers.build(credentials.items()))
    if manifest.settings:
        doc["settings"] = pointers.plain(manifest.settings)
    if manifest.automation:
        doc["automation"] = dict(manifest.automation)
    return doc


def _is_secret_ref(value: Any) -> bool:
    return hasattr(value, "describe") or (isinstance(value, Mapping) and "secretRef" in value)


def observed_doc(conn: Connection) -> dict[str, Any]:
    return {
        "name": conn.name,
        "credentials": dict(conn.credentials),
        "settings": dict(conn.settings),
        "automation": dict(conn.automation),
    }


def fingerprint(desired: Desired) -> str:
    """Digest of everything a manifest asks for (secrets by HMAC); changes whenever a write would.

    Stored after a successful apply. With the platform `version` it gives the planner a
    fast path: same fingerprint and same version as after our last write means nothing
    can differ, so the field-level diff is skipped (10,000 converged connections).
    """
    m = desired.manifest
    body = [
        m.driver,
        m.display_name,
        m.credentials,
        m.settings,
        m.automation,
        m.enabled,
        m.deletion_policy,
        sorted(desired.secret_hmacs.items()),
    ]
    text = json.dumps(body, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    return repr(value)  # a SecretRef: its reference, never a value


def diff(
    desired: Desired,
    conn: Connection,
    record: Record | None,
    meta: DriverMeta,
) -> tuple[list[FieldChange], list[Ignored], list[FieldChange]]:
    """Field-level diff of one connection: (changes, ignored, immutable changes).

    Three-way: desired vs observed for the keys the manifest sets; keys the last apply
    set (memory) and the manifest dropped are removed if still present. Secrets compare
    by HMAC. Differences `spec.ignoreDifferences` matches are reported, not healed.
    """
    m = desired.manifest
    secret_paths = meta.secret_paths | set(desired.secret_hmacs)
    want = pointers.leaves(desired_doc(m, secret_paths))
    have = pointers.leaves(observed_doc(conn))
    applied = pointers.leaves(record.applied_spec) if record else {}
    changes = [
        *_wanted_changes(want, have),
        *_dropped_keys(applied, want, have, secret_paths | meta.oauth_paths),
        *_secret_changes(desired, conn, record, secret_paths),
    ]
    ignored = [
        Ignored(
            m.name,
            c.path,
            None if c.sensitive else c.before,
            None if c.sensitive else c.after,
        )
        for c in changes
        if _ignored(c, m.ignore_differences)
    ]
    kept = [c for c in changes if not _ignored(c, m.ignore_differences)]
    immutable = [
        c
        for c in kept
        if c.path in meta.immutable_paths and c.op == "change" and c.before is not None
    ]
    if m.driver != conn.driver:
        immutable.insert(0, FieldChange("/driver", "change", conn.driver, m.driver))
    return kept, ignored, immutable


def _wanted_changes(want: Mapping[str, Any], have: Mapping[str, Any]) -> list[FieldChange]:
    """The keys the manifest sets whose observed value differs."""
    changes: list[FieldChange] = []
    for path, value in want.items():
        current = have.get(path, _MISSING)
        if current is _MISSING:
            # The observed value may hold `path` as a non-object leaf higher up.
            current = _lookup_leaf(have, path)
        if current != value:
            op = "add" if current is _MISSING or current is None else "change"
            before = None if current is _MISSING else current
            changes.append(FieldChange(path, op, before, value))
    return changes


def _dropped_keys(
    applied: Mapping[str, Any],
    want: Mapping[str, Any],
    have: Mapping[str, Any],
    not_ours: Set[str],
) -> list[FieldChange]:
    """Keys chanops applied last time that the manifest no longer sets: remove them.

    Secrets and OAuth fields are never read back, so they are not removed this way.
    """
    changes: list[FieldChange] = []
    for path in applied:
        if path in want or any(pointers.related(path, w) for w in want) or path in not_ours:
            continue
        if path in have and have[path] is not None and not _is_default(path, have[path]):
            changes.append(FieldChange(path, "remove", have[path], None))
    return changes


def _secret_changes(
    desired: Desired, conn: Connection, record: Record | None, secret_paths: Set[str]
) -> list[FieldChange]:
    """Secrets by HMAC; a version moved by someone else re-applies them all."""
    moved = record is not None and record.version is not None and record.version != conn.version
    known = record.secret_hmacs if record else {}
    changes = [
        FieldChange(path, "change" if path in known else "add", sensitive=True)
        for path, digest in sorted(desired.secret_hmacs.items())
        if known.get(path) != digest or moved
    ]
    changes.extend(
        FieldChange(path, "remove", sensitive=True)
        for path in sorted(known)
        if path not in desired.secret_hmacs and path not in secret_paths
    )
    return changes


def _ignored(change: FieldChange, ignore_differences: Iterable[str]) -> bool:
    return any(pointers.related(change.path, p) for p in ignore_differences)


def _is_default(path: str, value: Any) -> bool:
    """A removed automation key reads back as the platform default "never"."""
    return path.startswith("/automation/") and value == "never"


def _lookup_leaf(have: Mapping[str, Any], path: str) -> Any:
    """The observed non-object value standing where `path` wants to go, if any."""
    for existing, value in have.items():
        if pointers.is_under(path, existing) and not isinstance(value, Mapping):
            return value
    return _MISSING


def create_changes(desired: Desired, meta: DriverMeta) -> list[FieldChange]:
    secret_paths = meta.secret_paths | set(desired.secret_hmacs)
    doc = desired_doc(desired.manifest, secret_paths)
    out = [FieldChange(p, "add", None, v) for p, v in pointers.leaves(doc).items()]
    out.extend(FieldChange(p, "add", sensitive=True) for p in sorted(desired.secret_hmacs))
    return out


__all__ = [
    "Desired",
    "DriverMeta",
    "Observed",
    "create_changes",
    "desired_doc",
    "diff",
    "fingerprint",
    "observed_doc",
    "source_key",
]
