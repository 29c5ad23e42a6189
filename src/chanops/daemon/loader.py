"""Incremental loading of the manifests root for file-change reconciles.

A full `load_manifests` reads and validates every file (about 200 ms for 1,000 files on
two cores); an edit of one file should not pay that. `IncrementalLoader` keeps each
file's `FileOutcome` keyed by its stat (mtime, size, inode), re-reads only the files
that changed or were reported changed, and assembles the same `LoadResult` that
`load_manifests` produces for one directory root: discovery problems, per-file
diagnostics, `failed_files` and `root_ok` (DESIGN.md section 6). When the cross-file
check finds a duplicate (rare) it hands over to `load_manifests` for the exact result.

The daemon uses it for every load, full ones included: a resync of an unchanged root
costs a directory walk and a stat per file. It also keeps the daemon from forking a
parse pool out of a process that runs watcher and server threads.

Files are read by `load_file` with the root as the only place a manifest may live: a
symlink (file or directory) out of it is refused unread, and a FIFO or other non-file
is refused without blocking, so nothing in the root can hang the loader thread (which
SIGTERM would then wait for) or surface a host file (docs/manifests.md).

`load` runs in a worker thread (`asyncio.to_thread`) and is serialised by a lock: a
daemon reconcile that is preempted while loading leaves its thread running (a thread
cannot be cancelled), and the reconcile that follows must not load concurrently with it
on the same cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from chanops.manifests import (
    FileOutcome,
    LoadOptions,
    cross_file_diagnostics,
    discover,
    load_file,
    load_manifests,
)
from chanops.manifests.load import DIRECTORY_FAILURES
from chanops.manifests.model import Diagnostic, LoadResult, Manifest
from chanops.manifests.secrets import default_secrets_dirs

StatKey = tuple[int, int, int]


def _stat(path: str) -> StatKey | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class IncrementalLoader:
    def __init__(self, root: Path, *, secrets_dirs: tuple[Path, ...]) -> None:
        self._root = str(root)
        self._options = LoadOptions(
            secrets_dirs=secrets_dirs or default_secrets_dirs(root), roots=(self._root,)
        )
        self._cache: dict[str, tuple[StatKey, FileOutcome]] = {}
        self._lock = threading.Lock()

    def load(self, changed: Iterable[str] = ()) -> LoadResult:
        """The root's LoadResult; files in `changed` (real paths) are always re-read.

        Thread-safe: concurrent calls run one after the other (each sees the cache the
        previous one left).
        """
        forced = set(changed)
        with self._lock:
            return self._load(forced)

    def _load(self, forced: set[str]) -> LoadResult:
        root = self._root
        diagnostics: list[Diagnostic] = []
        if not os.path.isdir(root):
            self._cache.clear()
            missing = Diagnostic("error", root, 1, 1, "path does not exist", code="missing-root")
            return LoadResult(root, (), (missing,), (), frozenset(), False)
        files, problems, readable = discover(root)
        diagnostics.extend(problems)
        root_ok = readable and bool(files)
        if readable and not files:
            diagnostics.append(
                Diagnostic(
                    "error",
                    root,
                    1,
                    1,
                    "no manifest files (*.yaml, *.yml) found",
                    code="empty-root",
                )
            )
        failed = {d.file for d in diagnostics if d.severity == "error" and d.file in files}
        cache: dict[str, tuple[StatKey, FileOutcome]] = {}
        outcomes: list[FileOutcome] = []
        for file in files:
            key = _stat(file)
            cached = self._cache.get(file)
            if (
                key is not None
                and cached is not None
                and cached[0] == key
                and os.path.realpath(file) not in forced
            ):
                outcome = cached[1]
            else:
                outcome = load_file(file, self._options)
            if key is not None:
                cache[file] = (key, outcome)
            outcomes.append(outcome)
        self._cache = cache
        manifests: list[Manifest] = []
        for outcome in outcomes:
            diagnostics.extend(outcome.diagnostics)
            manifests.extend(outcome.manifests)
            if outcome.failed:
                failed.add(outcome.file)
        if cross_file_diagnostics(manifests):
            # Rare (a duplicated name or connection id): let the full loader produce its
            # exact diagnostics and freezes rather than re-implementing them here.
            return load_manifests([root], secrets_dirs=self._options.secrets_dirs)
        failed.update(d.file for d in diagnostics if d.code in DIRECTORY_FAILURES)
        return LoadResult(
            root=root,
            manifests=tuple(manifests),
            diagnostics=tuple(sorted(diagnostics, key=lambda d: (d.file, d.line, d.column))),
            files=tuple(files),
            failed_files=frozenset(failed),
            root_ok=root_ok,
        )
