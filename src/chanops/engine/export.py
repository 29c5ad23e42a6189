"""Manifests for existing platform connections (for adoption): `chanops export`.

Pure: Connection -> YAML text. Each manifest binds by `spec.connectionId`, so applying
it adopts that very connection. Secret fields (write-only: the platform reads them back
as null) become `secretRef` placeholders naming an environment variable to provide;
OAuth-set fields are left out (never set by a manifest). Every credential and setting
carries the platform's UI label as a comment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from chanops.engine import pointers
from chanops.platform.models import Connection

_NAME_OK = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def manifest_name(conn: Connection, taken: set[str]) -> str:
    """A valid, unique metadata.name from the platform's display name."""
    base = re.sub(r"[^a-z0-9]+", "-", conn.name.lower()).strip("-")[:50].strip("-")
    if not base:
        base = f"{conn.driver}-{conn.id}"
    name = base if base not in taken else f"{base}-{conn.id}"
    if not _NAME_OK.match(name):
        name = f"connection-{conn.id}"
    taken.add(name)
    return name


def env_name(name: str, pointer: str) -> str:
    parts = [name, *pointers.split(pointer)[1:]]
    return re.sub(r"[^A-Z0-9]+", "_", "_".join(parts).upper()).strip("_")


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


@dataclass(frozen=True, slots=True)
class _Fields:
    """What `_emit` knows about a driver's fields, and the manifest being written."""

    labels: Mapping[str, str]
    secrets: frozenset[str]
    oauth: frozenset[str]
    name: str


def _emit(value: Mapping[str, Any], pointer: str, indent: int, f: _Fields, out: list[str]) -> None:
    pad = "  " * indent
    for key, item in value.items():
        here = f"{pointer}/{pointers.escape(str(key))}"
        if here in f.oauth:
            continue
        label = f.labels.get(here)
        comment = f"  # {label}" if label else ""
        if here in f.secrets:
            ref = f"{{secretRef: {{env: {env_name(f.name, here)}}}}}"
            out.append(f"{pad}{_scalar(str(key))}: {ref}{comment} (secret: provide it)")
        elif isinstance(item, Mapping) and item:
            out.append(f"{pad}{_scalar(str(key))}:{comment}")
            _emit(item, here, indent + 1, f, out)
        else:
            out.append(f"{pad}{_scalar(str(key))}: {_scalar(item)}{comment}")


def export_manifest(conn: Connection, name: str) -> str:
    from chanops.manifests.drivers import driver_info

    try:
        info = driver_info(conn.driver)
        labels: Mapping[str, str] = info.labels
        secrets, oauth, title = info.secret_paths, info.oauth_paths, info.title
    except KeyError:
        labels, secrets, oauth, title = {}, frozenset(), frozenset(), conn.driver
    out = [
        f"# Exported by chanops from platform connection {conn.id} ({title}).",
        "# Applying it adopts that connection (spec.connectionId); provide every secretRef.",
        "apiVersion: chanops/v1",
        "kind: Connection",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  displayName: {_scalar(conn.name)}",
        f"  connectionId: {conn.id}",
        f"  driver: {conn.driver}",
        f"  enabled: {'true' if conn.status == 'active' else 'false'}",
    ]
    credentials = {k: v for k, v in conn.credentials.items()}
    if credentials:
        out.append("  credentials:")
        _emit(credentials, "/credentials", 2, _Fields(labels, secrets, oauth, name), out)
        if out[-1] == "  credentials:":
            out.pop()
    plain = _Fields(labels, frozenset(), frozenset(), name)  # no secret or OAuth field here
    if conn.settings:
        out.append("  settings:")
        _emit(conn.settings, "/settings", 2, plain, out)
    automation = {k: v for k, v in conn.automation.items() if v != "never"}
    if automation:
        out.append("  automation:")
        _emit(automation, "/automation", 2, plain, out)
    return "\n".join(out) + "\n"
