"""Loading manifests: the orchestration of discovery, reading, parsing and checks.

The imperative shell of the manifests package. Every problem becomes a Diagnostic
with file:line:column and the field path; nothing raises for bad input, so one run
reports every problem in every file. The steps live in their own modules:

- `discovery`: which files are manifests, and the root rules (symlinks, realpath);
- `reading`: one file's text, only a regular file inside the root, never blocking;
- `_yaml`: safe YAML with limits, and positions for diagnostics;
- `mapping`: one document -> a validated Manifest (schema, schedule, secrets);
- `crossfile`: unique names and connection IDs across files;
- `pool`: many files over the CPU cores, in forked workers.

This module puts them together: `load_file` for one file, `assemble_result` for the
per-file outcomes of a root (the daemon's incremental loader calls it too), and
`load_manifests` / `start_load` for whole roots. It changes no process-wide state (the
garbage collector is the caller's business: measured, it costs a load of 10,000
manifests about 3%).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

from chanops.manifests import validation
from chanops.manifests._crossfile import cross_file_diagnostics, without_duplicates
from chanops.manifests._mapping import check_document
from chanops.manifests._pool import BACKGROUND_MIN_BYTES, ForkedLoad, load_files, start_forked
from chanops.manifests._reading import read_manifest
from chanops.manifests._yaml import parse
from chanops.manifests.discovery import (
    DIRECTORY_FAILURES,
    Discovered,
    discover,
    discover_roots,
    is_manifest_name,
)
from chanops.manifests.drivers import DRIVER_NAMES
from chanops.manifests.model import (
    FileOutcome,
    LoadOptions,
    LoadResult,
    Manifest,
    file_error,
)
from chanops.manifests.schedule import MIN_SYNC_INTERVAL_SECONDS
from chanops.manifests.secrets import default_secrets_dirs

# The re-exported names keep the import paths callers outside the package use.
__all__ = [
    "BACKGROUND_MIN_BYTES",
    "DIRECTORY_FAILURES",
    "FileOutcome",
    "LoadJob",
    "LoadOptions",
    "assemble_result",
    "cross_file_diagnostics",
    "discover",
    "is_manifest_name",
    "load_file",
    "load_manifests",
    "start_load",
]


def load_file(path: str | Path, options: LoadOptions | None = None) -> FileOutcome:
    """Read, parse and validate one file (no cross-file checks): a daemon's cheap re-load."""
    name = str(path)
    opts = options or LoadOptions()
    outcome = FileOutcome(name)
    text, problem = read_manifest(name, opts.roots)
    if problem is not None or text is None:
        outcome.diagnostics.append(
            problem or file_error(name, "cannot read file", code="unreadable")
        )
        outcome.failed = True
        return outcome
    documents, problems = parse(name, text)
    outcome.diagnostics.extend(problems)
    for doc in documents:
        manifest, diagnostics = check_document(name, doc, opts)
        outcome.diagnostics.extend(diagnostics)
        if manifest is not None:
            outcome.manifests.append(manifest)
    outcome.failed = any(d.severity == "error" for d in outcome.diagnostics)
    return outcome


def assemble_result(found: Discovered, outcomes: Iterable[FileOutcome]) -> LoadResult:
    """The LoadResult of a load: discovery, per-file outcomes, then the cross-file checks.

    The one place that decides which files failed: a file with an error (its own, or a
    duplicate it shares with another file), and a directory discovery refused. The
    daemon's incremental loader re-reads only changed files and calls this with the
    outcomes it kept, so both loads agree on every rule.
    """
    files = found.files
    diagnostics = list(found.diagnostics)
    failed = {d.file for d in diagnostics if d.severity == "error" and d.file in files}
    manifests: list[Manifest] = []
    for outcome in outcomes:
        diagnostics.extend(outcome.diagnostics)
        manifests.extend(outcome.manifests)
        if outcome.failed:
            failed.add(outcome.file)
    manifests, duplicates = without_duplicates(manifests, found.directories)
    diagnostics.extend(duplicates)
    failed.update(d.file for d in duplicates)
    # A directory in a loop or refused has no file entry; it still counts as failed.
    failed.update(d.file for d in diagnostics if d.code in DIRECTORY_FAILURES)
    return LoadResult(
        root=found.label,
        manifests=tuple(manifests),
        diagnostics=tuple(sorted(diagnostics, key=lambda d: (d.file, d.line, d.column))),
        files=tuple(files),
        failed_files=frozenset(failed),
        root_ok=found.root_ok,
    )


def _options(
    found: Discovered,
    secrets_dirs: Sequence[Path],
    *,
    strict: bool = False,
    check_secrets: bool = False,
    min_sync_interval: float = MIN_SYNC_INTERVAL_SECONDS,
) -> LoadOptions:
    """The options for loading what `found` found: secrets beside the first root by default."""
    if not secrets_dirs and found.roots:
        secrets_dirs = default_secrets_dirs(found.roots[0])
    return LoadOptions(
        tuple(secrets_dirs),
        strict,
        check_secrets,
        roots=found.directories,
        min_sync_interval=min_sync_interval,
    )


def _warm_validators() -> None:
    """Compile every driver's validator before forking, so every worker inherits them."""
    for name in DRIVER_NAMES:
        validation.fast_validator(name)


def load_manifests(
    paths: Sequence[str | Path],
    *,
    secrets_dirs: Sequence[Path] = (),
    strict: bool = False,
    check_secrets: bool = False,
    identities_only: bool = False,
    min_sync_interval: float = MIN_SYNC_INTERVAL_SECONDS,
    parallel: bool = False,
) -> LoadResult:
    """Load every manifest under `paths` (directories are searched recursively; files
    are taken as given). Never raises for bad input: see LoadResult.diagnostics.

    `identities_only` (for `chanops validate`): the manifests may carry only their
    identity (name, driver, display name, connection ID, source), not credentials or
    settings; diagnostics are complete either way. `min_sync_interval`: the operator's
    floor for `spec.sync.interval` (LoadOptions.min_sync_interval). `parallel`: the
    caller (a command, before any thread exists) allows forked workers for a large root;
    library code never forks on its own.
    """
    found = discover_roots(paths)
    options = _options(
        found,
        secrets_dirs,
        strict=strict,
        check_secrets=check_secrets,
        min_sync_interval=min_sync_interval,
    )
    outcomes = load_files(
        found.files,
        partial(load_file, options=options),
        identities_only=identities_only,
        before_fork=_warm_validators,
        parallel=parallel,
    )
    return assemble_result(found, outcomes)


def start_load(paths: Sequence[str | Path], *, secrets_dirs: Sequence[Path] = ()) -> LoadJob:
    """Begin loading `paths` in worker processes; `LoadJob.result()` collects it.

    For a command that has I/O of its own to do meanwhile (`plan` lists the platform
    while its manifests parse). Call it before any thread exists (workers are forked);
    otherwise, or when the manifests are too few to pay for a fork, the job loads
    in-process when its result is asked for.
    """
    found = discover_roots(paths)
    load_one = partial(load_file, options=_options(found, secrets_dirs))
    forked = start_forked(found.files, load_one, before_fork=_warm_validators)
    return LoadJob(found, load_one, forked)


class LoadJob:
    """A load begun by `start_load`."""

    def __init__(
        self,
        found: Discovered,
        load_one: partial[FileOutcome],
        forked: ForkedLoad | None,
    ) -> None:
        self._found = found
        self._load_one = load_one
        self._forked = forked
        self._result: LoadResult | None = None

    @property
    def workers(self) -> int:
        """How many worker processes the load was given (0: it runs in this process)."""
        return 0 if self._forked is None else self._forked.count

    def result(self) -> LoadResult:
        """The LoadResult; waits for the workers (safe to call from any one thread)."""
        if self._result is None:
            if self._forked is None:
                outcomes = load_files(
                    self._found.files, self._load_one, before_fork=_warm_validators, parallel=True
                )
            else:
                try:
                    outcomes = self._forked.collect()
                finally:
                    self._forked.close()
            self._result = assemble_result(self._found, outcomes)
        return self._result

    def close(self) -> None:
        """Stop the workers of a load whose result is no longer wanted."""
        if self._forked is not None:
            self._forked.close()
