"""Manifests: find, parse, validate and model `kind: Connection` documents.

Public surface:

- `load_manifests(paths, *, secrets_dirs=(), strict=False, check_secrets=False) -> LoadResult`
  loads every manifest under the given roots (the normal case is one directory) and
  runs the cross-file checks. It never raises for bad input.
- `load_file(path, options=None) -> FileOutcome` (manifests, diagnostics, failed) for one
  file without cross-file checks: a daemon can re-load one changed file cheaply and
  then run `cross_file_diagnostics(all_manifests)`.
- `drivers` (DRIVER_NAMES, driver_info), `secrets` (resolve_credentials,
  iter_secret_refs), `durations` (parse_duration), `model` (the dataclasses).
"""

from __future__ import annotations

from chanops.manifests.load import (
    FileOutcome,
    LoadOptions,
    cross_file_diagnostics,
    discover,
    load_file,
    load_manifests,
)
from chanops.manifests.model import (
    Diagnostic,
    LoadResult,
    Manifest,
    SecretRef,
    SourceLocation,
    SyncSpec,
)

__all__ = [
    "Diagnostic",
    "FileOutcome",
    "LoadOptions",
    "LoadResult",
    "Manifest",
    "SecretRef",
    "SourceLocation",
    "SyncSpec",
    "cross_file_diagnostics",
    "discover",
    "load_file",
    "load_manifests",
]
