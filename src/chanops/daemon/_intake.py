"""Trigger intake: what happened -> which names to reconcile, or a full resync.

- A watcher batch of changed files: the changed files are re-read (`Loads.refresh`, no
  walk of the root), and the names those files define now or defined last time go to
  the queue, urgent, with their backoff forgotten (the manifest changed).
- A layout change (the root swapped, a directory moved), SIGHUP, a new git commit: a
  full resync is requested (`request_full`); the resync driver takes it.
- A load that is clean again releases the removals the planner held back while the
  root was unhealthy (Guard.UNHEALTHY_ROOT): they are enqueued like an edit.

`Loads` owns the loader and every load the daemon makes: it logs new manifest errors
(`manifest.invalid`, once each), keeps the file -> names index, the manifests' revision
and the sync schedules current. Loads run one at a time (the loader's cache carries
from one to the next), so the newest load is always the daemon's desired state.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chanops.daemon._loader import IncrementalLoader
from chanops.daemon._outcomes import Outcomes
from chanops.daemon._parts import Parts
from chanops.daemon._queue import Cause, WorkQueue
from chanops.daemon._revision import RevisionReader
from chanops.daemon._watcher import Batch
from chanops.manifests.model import Diagnostic, LoadResult
from chanops.observability.logging import describe_error

SETTLE_SECONDS = 0.25  # an editor saving in place truncates first: let the write land


@dataclass(frozen=True, slots=True)
class FullRequest:
    reason: str
    include_parked: bool = True  # retry refused names too (not on a periodic resync)


class Loads:
    def __init__(
        self,
        parts: Parts,
        *,
        secrets_dirs: tuple[Path, ...],
        min_sync_interval: float,
        on_root_changed: Callable[[], None],
    ) -> None:
        self.events = parts.events
        self.sources = parts.sources
        self.index = parts.index
        self.scheduler = parts.scheduler
        self.metrics = parts.metrics
        self.logging = parts.logging
        self.secrets_dirs = secrets_dirs
        self.min_sync_interval = min_sync_interval
        self.on_root_changed = on_root_changed
        self.current: LoadResult | None = None
        self._loader = self._new_loader(Path(self.sources.root))
        self._revision = RevisionReader(Path(self.sources.root))
        self._lock = asyncio.Lock()
        self._logged: set[tuple[str, int, int, str]] = set()
        self._in_work_tree = False  # the last resync found the root in a git work tree

    async def full(self) -> LoadResult:
        """A walk of the root: what a resync plans with."""
        self.index.forget_paths()
        load, _ = await self._load(lambda: self._loader.load(), set(), walk=True)
        return load

    async def refresh(self, files: set[str]) -> tuple[LoadResult, set[str]]:
        """Only `files` (real paths) re-read: what an edit plans with, and the names those
        files define now or defined last time."""
        return await self._load(lambda: self._loader.refresh(files), files)

    def switch_root(self, path: Path) -> None:
        """Read from now on from `path` (a new git checkout); between resyncs only."""
        self.sources.root = str(path)
        self.index.forget_paths(str(path))
        self._loader = self._new_loader(path)

    def _new_loader(self, root: Path) -> IncrementalLoader:
        return IncrementalLoader(
            root, secrets_dirs=self.secrets_dirs, min_sync_interval=self.min_sync_interval
        )

    async def _load(
        self, read: Callable[[], LoadResult], changed: set[str], *, walk: bool = False
    ) -> tuple[LoadResult, set[str]]:
        async with self._lock:
            # A root behind a symlink (git-sync) can be swapped while it is read. The
            # watcher reports a swap only when the link resolves to a new target, so a
            # swap and back during the read would go unreported: check around it.
            target = self._root_target()
            load, revision = await asyncio.gather(
                asyncio.to_thread(read), self._read_revision(walk)
            )
            if target is not None and self._root_target() != target:
                self.on_root_changed()
            if self.sources.revision is None and (walk or revision is not None):
                self.logging.revision.value = revision
                self._in_work_tree = revision is not None
            before = self.index.names_of(changed)
            self._note(load, changed)
            refreshed, previous = self._loader.refreshed, self.current
            if refreshed is not None and previous is not None:
                self.index.note_refresh(load, refreshed, previous)
            else:
                self.index.note_load(load)
            self.scheduler.update(load.manifests, frozen=self.index.frozen_names)
            self.current = load
            return load, before | self.index.names_of(changed)

    async def _read_revision(self, walk: bool) -> str | None:
        """The commit of the root; an edit outside a git work tree does not ask git
        (a subprocess per edit), a resync always does."""
        if self.sources.revision is not None:
            return self.sources.revision.sha
        if not walk and not self._in_work_tree:
            return None
        return await self._revision.read()

    def _root_target(self) -> str | None:
        """Where the root resolves now (None for a git source: its roots never move)."""
        return None if self.sources.source is not None else os.path.realpath(self.sources.root)

    def _note(self, load: LoadResult, changed: set[str]) -> None:
        """Log new manifest errors (once each; again when their file changes)."""
        errors = [d for d in load.diagnostics if d.severity == "error"]
        current = {_diag_key(d) for d in errors}
        self._logged &= current
        for d in errors:
            key = _diag_key(d)
            if key in self._logged and self.index.canonical(d.file) not in changed:
                continue
            self._logged.add(key)
            self.events.emit(
                "manifest.invalid",
                "error",
                file=d.file,
                line=d.line,
                column=d.column,
                field=d.path or None,
                code=d.code or None,
                error=d.message,
                frozen=sorted(self.index.defined_by(d.file)),
            )
        self.metrics.manifest_errors.set(len(errors))


class Intake:
    def __init__(self, *, loads: Loads, queue: WorkQueue, outcomes: Outcomes) -> None:
        self.events = outcomes.events
        self.loads = loads
        self.queue = queue
        self.outcomes = outcomes
        self._files: set[str] = set()
        self._files_changed = asyncio.Event()
        self._full: FullRequest | None = None
        self.full_requested = asyncio.Event()
        self.have_revision = asyncio.Event()

    # -- triggers (synchronous: called from callbacks and signal handlers) -------------

    def on_batch(self, batch: Batch) -> None:
        """The watcher's callback."""
        if batch.rescan:
            self.request_full(batch.reason)
        if batch.files:
            self._files |= {self.loads.index.canonical(f) for f in batch.files}
            self._files_changed.set()

    def on_hup(self) -> None:
        self.events.emit("signal.received", "info", signal="SIGHUP", action="full reconcile")
        self.request_full("SIGHUP")
        source = self.loads.sources.source
        if source is not None:
            source.trigger()  # and fetch now: a new commit becomes the next resync

    def request_full(self, reason: str, *, include_parked: bool = True) -> None:
        """Ask for a full resync; requests made before it starts are one resync."""
        if self._full is None:
            self._full = FullRequest(reason, include_parked)
        elif include_parked and not self._full.include_parked:
            self._full = FullRequest(self._full.reason, True)
        self.full_requested.set()

    def take_full(self) -> FullRequest | None:
        request, self._full = self._full, None
        self.full_requested.clear()
        return request

    # -- the edit loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Turn changed files into urgent names, one load per batch of changes."""
        while True:
            await self._files_changed.wait()
            self._files_changed.clear()
            files, self._files = self._files, set()
            if not files:
                continue
            if any(_empty(f) for f in files):
                # An empty file for a moment would read as "its connections were
                # removed": let the write land, then look.
                await asyncio.sleep(SETTLE_SECONDS)
                files |= self._files
                self._files = set()
            await self.edited(files)

    async def edited(self, files: set[str]) -> None:
        load, names = await self.loads.refresh(files)
        if not names:
            # A change that defines nothing (an empty file, comments): nothing to do.
            self.events.emit("reconcile.skipped", "debug", reason="files changed", kind="partial")
        self.queue.forget(names)  # a manifest change resets its backoff, and unparks
        self.queue.add(names, Cause.EDIT)
        self.release_held(load)

    def release_held(self, load: LoadResult) -> None:
        """A clean load lets the deletions held back while the root was unhealthy go."""
        if load.root_ok and not load.failed_files and self.outcomes.held:
            held, self.outcomes.held = self.outcomes.held, set()
            self.queue.add(held, Cause.EDIT)

    # -- git -----------------------------------------------------------------------------

    async def follow(self) -> None:
        """Each new checkout asks for a full resync; the resync switches to it.

        `updates()` swallows fetch failures itself; anything else escaping it would
        silently end the following, so it is logged and the loop starts again.
        """
        source = self.loads.sources.source
        assert source is not None
        while True:
            try:
                async for revision in source.updates():
                    self.loads.sources.next_revision = revision
                    self.have_revision.set()
                    self.request_full(f"git revision {revision.short}")
            except Exception as exc:
                self.events.emit("git.follow_failed", "error", error=describe_error(exc))
                await asyncio.sleep(min(source.interval, 30.0))


def _empty(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def _diag_key(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.file, d.line, d.column, d.message)
