"""The typed in-memory model of manifests: what the rest of chanops reads.

Pure data, no I/O. Produced by `chanops.manifests.load`; consumed by the planner,
the daemon and the commands. Secret values are never resolved here: a secret field
holds a `SecretRef` (or a literal string, which validation warns about) until the
executor resolves it at apply time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from chanops.manifests.schedule import MIN_SYNC_INTERVAL_SECONDS

__all__ = [
    "DeletionPolicy",
    "Diagnostic",
    "FileOutcome",
    "LoadOptions",
    "LoadResult",
    "Manifest",
    "SecretRef",
    "Severity",
    "SourceLocation",
    "SyncSpec",
    "file_error",
]

DeletionPolicy = Literal["Delete", "Disable", "Orphan"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where a manifest (or one of its fields) was written."""

    file: str  # path as given/discovered (relative to the cwd when possible)
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in one file: every error or warning validate prints."""

    severity: Severity
    file: str
    line: int
    column: int
    message: str  # what was expected; never a secret value
    path: str = ""  # field path, e.g. "spec.credentials.url" ("" = whole document)
    code: str = ""  # stable machine code, e.g. "schema", "yaml", "duplicate-name"

    def __str__(self) -> str:
        where = f" {self.path}:" if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {self.severity}:{where} {self.message}"


def file_error(file: str, message: str, *, code: str, line: int = 1, column: int = 1) -> Diagnostic:
    """An error about a file as a whole (or one place in it), with no field path."""
    return Diagnostic("error", file, line, column, message, code=code)


@dataclass(frozen=True, slots=True)
class SecretRef:
    """`{secretRef: {env: NAME}}` or `{secretRef: {file: PATH}}`; exactly one is set."""

    env: str | None = None
    file: str | None = None

    def describe(self) -> str:
        return f"env:{self.env}" if self.env is not None else f"file:{self.file}"


@dataclass(frozen=True, slots=True)
class SyncSpec:
    interval_seconds: float | None = None  # `interval: 30m`
    cron: str | None = None  # `cron: "*/20 6-22 * * *"`
    jitter_seconds: float | None = None
    timeout_seconds: float = 45 * 60  # a sync job running longer is reported stuck


@dataclass(frozen=True, slots=True)
class Manifest:
    """One validated `kind: Connection` document: the desired state of a connection."""

    name: str  # metadata.name: identity in git
    driver: str
    display_name: str  # the platform's Name; defaults to name
    source: SourceLocation
    labels: Mapping[str, str] = field(default_factory=dict)
    connection_id: int | None = None
    enabled: bool = True
    # Nested JSON-like values; a secret leaf is a SecretRef or (discouraged) a literal str.
    credentials: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    automation: Mapping[str, str] = field(default_factory=dict)  # orderDownload/returnDownload
    sync: SyncSpec | None = None
    deletion_policy: DeletionPolicy = "Delete"
    suspend: bool = False
    ignore_differences: tuple[str, ...] = ()  # JSON pointers, e.g. "/settings/priceBooks"


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Everything loading a manifests root produced.

    Safety rules depend on the distinction between "this file is gone" and "this file
    failed": `failed_files` lists files that exist but did not load or validate, so the
    engine freezes the connections they defined last time (docs/engine.md, "Safety rules").
    `root_ok` is False when the root itself is missing, unreadable or holds no manifest
    file at all: then nothing may be deleted.
    """

    root: str
    manifests: tuple[Manifest, ...]
    diagnostics: tuple[Diagnostic, ...]
    files: tuple[str, ...]  # every manifest file discovered (loaded or not)
    failed_files: frozenset[str]
    root_ok: bool

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How files are loaded: the secret rules, and where a manifest may live."""

    secrets_dirs: tuple[Path, ...] = ()
    strict: bool = False  # warnings (literal secrets, numeric weekdays) are errors
    check_secrets: bool = False  # every secretRef must also resolve
    # The manifests roots (directories, as given): a file named under one must resolve
    # inside it (resolved when checked: a root that is a git-sync symlink may have been
    # swapped). A file named under none is judged against the directory it is named in.
    roots: tuple[str, ...] = ()
    # The shortest `spec.sync.interval` a manifest may ask for. The operator's to lower
    # (a platform that welcomes frequent syncs, a test); never a manifest writer's.
    min_sync_interval: float = MIN_SYNC_INTERVAL_SECONDS


@dataclass(slots=True)
class FileOutcome:
    """What one file produced. `failed`: it exists but something in it did not load."""

    file: str
    manifests: list[Manifest] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    failed: bool = False
