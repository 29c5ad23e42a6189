"""Manifests: find, parse, validate and model `kind: Connection` documents.

Public surface:

- `load_manifests(paths, *, secrets_dirs=(), strict=False, check_secrets=False) -> LoadResult`
  loads every manifest under the given roots (the normal case is one directory) and
  runs the cross-file checks. It never raises for bad input.
- `load_file(path, options=None) -> FileOutcome` (manifests, diagnostics, failed) for one
  file without cross-file checks, and `assemble_result(discover_roots(paths), outcomes)`
  for the LoadResult `load_manifests` would give with those outcomes: a daemon can
  re-load only the files that changed and keep the rules (failed files, duplicates,
  refused directories) in one place.
- `drivers` (DRIVER_NAMES, driver_info), `secrets` (resolve_credentials,
  iter_secret_refs), `durations` (parse_duration), `schedule` (what `spec.sync` may
  ask of the scheduler), `model` (the dataclasses).

Inside: `discovery` (which files, the root rules), `_reading` (one file, safely),
`_yaml` (safe YAML with limits and positions), `_mapping` (document -> Manifest),
`_crossfile` (duplicates), `_pool` (forked workers) and `load` (the orchestration).
"""

from __future__ import annotations

from chanops.manifests._crossfile import cross_file_diagnostics
from chanops.manifests.discovery import Discovered, discover, discover_roots
from chanops.manifests.load import assemble_result, load_file, load_manifests
from chanops.manifests.model import (
    Diagnostic,
    FileOutcome,
    LoadOptions,
    LoadResult,
    Manifest,
    SecretRef,
    SourceLocation,
    SyncSpec,
)

__all__ = [
    "Diagnostic",
    "Discovered",
    "FileOutcome",
    "LoadOptions",
    "LoadResult",
    "Manifest",
    "SecretRef",
    "SourceLocation",
    "SyncSpec",
    "assemble_result",
    "cross_file_diagnostics",
    "discover",
    "discover_roots",
    "load_file",
    "load_manifests",
]
