"""Incremental loading of the manifests root: the daemon's only way to read manifests.

A full `load_manifests` reads and validates every file (about 1.3 s for 10,000 files on
two cores); the daemon must not pay that per edit. `IncrementalLoader` keeps each
file's `FileOutcome` keyed by its stat (mtime, size, inode) and assembles the same
`LoadResult` that `load_manifests` produces for one directory root, through the
manifests package's own `Discovered.from_walk` and `assemble_result`: discovery
problems, per-file diagnostics, duplicates, `failed_files` and `root_ok` (docs/engine.md,
"Safety rules") are decided in one place for both.

Two ways in:

- `load()` walks the root and stats every file, re-reading those whose stat changed
  (a resync: about 0.2 s for an unchanged root of 10,000 files);
- `refresh(changed)` re-reads only the files the watcher reported (real paths) and
  keeps the last walk for everything else: an edit costs its own file, not a walk of
  10,000. Anything it cannot map to that walk (no walk yet, a path outside it) falls
  back to `load()`. A directory added, removed or moved is the watcher's `rescan`,
  which the daemon answers with a full resync, so the walk never goes stale in shape.

Files are read by `load_file` with the root as the only place a manifest may live: a
symlink (file or directory) out of it is refused unread, and a FIFO or other non-file
is refused without blocking, so nothing in the root can hang the loader thread (which
SIGTERM would then wait for) or surface a host file (docs/manifests.md).

Both run in a worker thread (`asyncio.to_thread`) and are serialised by a lock, so a
load always starts from the cache the previous one left.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chanops.daemon._assembled import Assembled
from chanops.manifests import (
    Diagnostic,
    Discovered,
    FileOutcome,
    LoadOptions,
    LoadResult,
    assemble_result,
    discover,
    load_file,
)
from chanops.manifests.schedule import MIN_SYNC_INTERVAL_SECONDS
from chanops.manifests.secrets import default_secrets_dirs

StatKey = tuple[int, int, int]


def _stat(path: str) -> StatKey | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass(slots=True)
class _Walk:
    """What the last walk of the root found, kept for `refresh`."""

    files: list[str]  # sorted, as discovered (the root as given + relative path)
    problems: list[Diagnostic]
    readable: bool
    real_root: str
    # Real path -> discovered paths, for files reached through a symlink (a linked file
    # or directory inside the root): the watcher reports the real path only.
    aliases: dict[str, set[str]] = field(default_factory=dict)

    real_of: dict[str, str] = field(default_factory=dict)  # the reverse of `aliases`

    def real(self, file: str, root: str) -> str:
        """`file`'s real path, cheaply: only an aliased file needs resolving."""
        real = self.real_of.get(file)
        return (
            real if real is not None else os.path.join(self.real_root, os.path.relpath(file, root))
        )


class IncrementalLoader:
    def __init__(
        self,
        root: Path,
        *,
        secrets_dirs: tuple[Path, ...],
        min_sync_interval: float = MIN_SYNC_INTERVAL_SECONDS,
    ) -> None:
        self._root = str(root)
        self._options = LoadOptions(
            secrets_dirs=secrets_dirs or default_secrets_dirs(root),
            roots=(self._root,),
            min_sync_interval=min_sync_interval,
        )
        self._cache: dict[str, tuple[StatKey, FileOutcome]] = {}
        self._walk: _Walk | None = None
        self._lock = threading.Lock()
        # What the last `refresh` re-read or dropped (discovered paths); None after a walk.
        self.refreshed: set[str] | None = None
        self._assembled: Assembled | None = None  # the last result, for `_patch`

    def load(self, changed: Iterable[str] = ()) -> LoadResult:
        """The root's LoadResult after a walk; files in `changed` (real paths) are
        always re-read. Thread-safe: concurrent calls run one after the other."""
        forced = set(changed)
        with self._lock:
            self.refreshed = None
            return self._load(forced)

    def refresh(self, changed: Iterable[str]) -> LoadResult:
        """The root's LoadResult with just `changed` (real paths) re-read, no walk."""
        with self._lock:
            walk = self._walk
            self.refreshed = set()
            files = self._patched(walk, set(changed)) if walk is not None else None
            if walk is None or files is None:
                self.refreshed = None
                return self._load(set(changed))
            patched = self._patch(files)
            if patched is not None:
                return patched
            outcomes = []
            for file in files:
                cached = self._cache.get(file)
                outcomes.append(cached[1] if cached is not None else self._read(file))
            return self._assemble(files, walk.problems, walk.readable, outcomes)

    # -- a walk ----------------------------------------------------------------------------

    def _load(self, forced: set[str]) -> LoadResult:
        root = self._root
        if not os.path.isdir(root):
            self._cache.clear()
            self._walk = None
            self._assembled = None
            missing = Diagnostic("error", root, 1, 1, "path does not exist", code="missing-root")
            return LoadResult(root, (), (missing,), (), frozenset(), False)
        files, problems, readable = discover(root)
        walk = _Walk(files, problems, readable, os.path.realpath(root))
        walk.aliases = _aliases(files, root, walk.real_root)
        walk.real_of = {f: real for real, fs in walk.aliases.items() for f in fs}
        cache: dict[str, tuple[StatKey, FileOutcome]] = {}
        outcomes: list[FileOutcome] = []
        for file in files:
            key = _stat(file)
            cached = self._cache.get(file)
            unchanged = key is not None and cached is not None and cached[0] == key
            if (
                cached is not None
                and unchanged
                and not (forced and walk.real(file, root) in forced)
            ):
                outcomes.append(cached[1])
                cache[file] = cached
                continue
            outcome = load_file(file, self._options)
            if key is not None:
                cache[file] = (key, outcome)
            outcomes.append(outcome)
        self._cache = cache
        self._walk = walk
        return self._assemble(files, problems, readable, outcomes)

    # -- a refresh -------------------------------------------------------------------------

    def _patched(self, walk: _Walk, changed: set[str]) -> list[str] | None:
        """The walk's files with `changed` applied (added, removed, to re-read), or None
        when a changed path does not fit the walk (then the caller walks)."""
        files = list(walk.files)
        present = set(files)
        for real in changed:
            rel = os.path.relpath(real, walk.real_root)
            if rel.startswith(".."):
                return None
            targets = {os.path.join(self._root, rel)} | walk.aliases.get(real, set())
            if self.refreshed is not None:
                self.refreshed |= targets
            for file in targets:
                self._cache.pop(file, None)  # re-read, whatever its stat says
                exists = os.path.lexists(file)
                if exists and file not in present:
                    if os.path.isdir(file):
                        return None  # a new directory: its files are unknown
                    bisect.insort(files, file)
                    present.add(file)
                elif not exists and file in present:
                    files.remove(file)
                    present.discard(file)
        walk.files = files
        return files

    def _patch(self, files: list[str]) -> LoadResult | None:
        """The last result with only the re-read files' part swapped (an edit of files
        the last load had), or None: then the whole result is assembled again."""
        last, changed = self._assembled, self.refreshed or set()
        if last is None or not changed or len(files) != len(last.result.files):
            return None
        if not changed <= last.outcomes.keys():
            return None  # a file added (or one added and one removed)
        return last.patch(files, {file: self._read(file) for file in changed})

    def _read(self, file: str) -> FileOutcome:
        key = _stat(file)
        outcome = load_file(file, self._options)
        if key is not None:
            self._cache[file] = (key, outcome)
        return outcome

    # -- the result ------------------------------------------------------------------------

    def _assemble(
        self,
        files: Sequence[str],
        problems: Sequence[Diagnostic],
        readable: bool,
        outcomes: Sequence[FileOutcome],
    ) -> LoadResult:
        """The LoadResult, by the manifests package's own rules (empty root, failed
        files, duplicates, refused directories): the same as `load_manifests`."""
        found = Discovered.from_walk(self._root, files, problems, readable)
        result = assemble_result(found, outcomes)
        self._assembled = Assembled.of(found, outcomes, result)
        return result


def _aliases(files: Sequence[str], root: str, real_root: str) -> dict[str, set[str]]:
    """Files whose real path is not the root's real path + their relative path: reached
    through a symlinked directory or themselves a symlink. One realpath per directory
    and one lstat per file, so a walk of 10,000 files stays cheap."""
    aliases: dict[str, set[str]] = {}
    dirs: dict[str, bool] = {}
    for file in files:
        directory = os.path.dirname(file)
        linked = dirs.get(directory)
        if linked is None:
            naive = os.path.normpath(os.path.join(real_root, os.path.relpath(directory, root)))
            linked = dirs[directory] = os.path.realpath(directory) != naive
        if linked or os.path.islink(file):
            aliases.setdefault(os.path.realpath(file), set()).add(file)
    return aliases
