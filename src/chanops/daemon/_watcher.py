"""Watch the manifests root and report batches of changed manifest files.

- watchfiles (inotify / FSEvents, polling as a fallback) on the resolved root,
  recursively. Only names a load reads wake the daemon: the file-name rule is the
  loader's own (`is_manifest_name`), under no hidden directory.
- A burst (a `git checkout` of 500 files) arrives as one batch: watchfiles groups
  changes until `step_ms` pass without a new one, and the daemon takes everything
  pending at once, so changes arriving during a reconcile coalesce into the next one.
- git-sync (and similar tools) publish a new checkout by atomically replacing a
  symlink: the watched directory never changes, the link does. The parent directory
  of the root is watched (not recursively) for that link; when the root resolves to a
  new target, the recursive watch moves there and a `root_changed` batch asks for a
  full reconcile.
- A directory added, removed or renamed under the root cannot be mapped to its files
  after the fact, so it asks for a full reconcile too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from watchfiles import Change, awatch

from chanops.manifests.load import is_manifest_name

log = structlog.get_logger(__name__)

_TEMP_SUFFIXES = ("~", ".swp", ".swx", ".swo", ".tmp", ".bak", ".orig", ".part", ".crdownload")


RESOLVE_POLL_S = 1.0  # safety net for a root swap the link watch missed


@dataclass(frozen=True, slots=True)
class Batch:
    """What changed since the last batch: absolute real paths of manifest files."""

    files: frozenset[str] = field(default_factory=frozenset)
    rescan: bool = False  # the layout changed (root swapped, directory moved): reload all
    reason: str = "files"


def is_temp_name(name: str) -> bool:
    """Editor and tool temp files: `x.yaml~`, `.x.yaml.swp`, `#x.yaml#`, vim's `4913`.

    Only for telling a new directory from a temp file (`_looks_like_directory`); which
    files are manifests is `is_manifest_name`'s rule.
    """
    return (
        name.startswith((".", "#", "~$"))
        or name.endswith(_TEMP_SUFFIXES)
        or name == "4913"
        or (name.endswith(".tmp") or ".tmp." in name)
    )


def is_manifest_path(path: str, root: str) -> bool:
    """A file under `root` that a load would read: no hidden directory on the way (the
    loader does not descend into one) and a manifest's name (the loader's own rule)."""
    rel = os.path.relpath(path, root)
    if rel.startswith(".."):
        return False
    parts = rel.split(os.sep)
    if any(p.startswith(".") for p in parts):
        return False
    return is_manifest_name(parts[-1])


def _looks_like_directory(path: str, root: str) -> bool:
    rel = os.path.relpath(path, root)
    parts = rel.split(os.sep)
    if rel.startswith("..") or any(p.startswith(".") for p in parts):
        return False
    if os.path.isdir(path):
        return True
    name = parts[-1]
    return "." not in name and not is_temp_name(name)


class ManifestWatcher:
    """Runs until `stop` is set; calls `on_batch` for every relevant batch of changes."""

    def __init__(
        self,
        root: Path,
        on_batch: Callable[[Batch], None],
        *,
        step_ms: int = 30,
        debounce_ms: int = 1600,
        force_polling: bool | None = None,
    ) -> None:
        self._root = Path(os.path.abspath(root))
        self._on_batch = on_batch
        self._step = step_ms
        self._debounce = debounce_ms
        self._polling = force_polling
        self.target: str | None = None
        # Set once the watches are in place. The daemon's first load waits for it, so a
        # change (or a root swap) can never fall between that load and the watch.
        self.armed = asyncio.Event()

    def _resolve(self) -> str | None:
        try:
            target = self._root.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        return str(target) if target.is_dir() else None

    async def run(self, stop: asyncio.Event) -> None:
        swapped = asyncio.Event()
        link_task = asyncio.create_task(self._watch_link(stop, swapped))
        try:
            while not stop.is_set():
                self.target = self._resolve()
                swapped.clear()
                inner_stop = asyncio.Event()
                waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(swapped.wait())]
                tree = (
                    asyncio.create_task(self._watch_tree(self.target, inner_stop))
                    if self.target
                    else None
                )
                if not self.armed.is_set():
                    # awatch adds its inotify watches synchronously on its first step.
                    for _ in range(3):
                        await asyncio.sleep(0)
                    if self._resolve() != self.target:
                        swapped.set()  # swapped while the watches were being set up
                    self.armed.set()
                while True:
                    done, _ = await asyncio.wait(
                        waiters, timeout=RESOLVE_POLL_S, return_when=asyncio.FIRST_COMPLETED
                    )
                    if done:
                        break
                    # inotify watches are armed in watchfiles' thread, so a swap can land
                    # before they exist; one cheap re-resolve a second closes that gap.
                    if self._resolve() != self.target:
                        swapped.set()
                        break
                inner_stop.set()
                for w in waiters:
                    w.cancel()
                if tree is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await asyncio.wait_for(tree, timeout=2)
                if swapped.is_set() and not stop.is_set():
                    log.info(
                        "manifests.root_changed",
                        root=str(self._root),
                        target=self._resolve(),
                    )
                    self._on_batch(Batch(rescan=True, reason="root changed"))
        finally:
            link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await link_task

    async def _watch_tree(self, target: str, stop: asyncio.Event) -> None:
        def keep(change: Change, path: str) -> bool:
            return is_manifest_path(path, target) or _looks_like_directory(path, target)

        async for changes in awatch(
            target,
            watch_filter=keep,
            step=self._step,
            debounce=self._debounce,
            stop_event=stop,
            force_polling=self._polling,
            ignore_permission_denied=True,
        ):
            files = frozenset(p for _, p in changes if is_manifest_path(p, target))
            rescan = any(
                not is_manifest_path(p, target) and _looks_like_directory(p, target)
                for _, p in changes
            )
            if files or rescan:
                self._on_batch(
                    Batch(files=files, rescan=rescan, reason="directory" if rescan else "files")
                )

    async def _watch_link(self, stop: asyncio.Event, swapped: asyncio.Event) -> None:
        """Watch the root's parent directory for the root itself being replaced."""
        parent = self._root.parent
        link = str(self._root)
        try:
            parent = parent.resolve(strict=True)
        except OSError:
            return
        link = str(parent / self._root.name)
        tmp_prefix = str(parent / ".")

        def keep(change: Change, path: str) -> bool:
            # The link itself, or the temp link git-sync renames over it.
            return path == link or path.startswith(tmp_prefix) or path == str(self._root)

        async for changes in awatch(
            parent,
            watch_filter=keep,
            step=self._step,
            debounce=self._debounce,
            stop_event=stop,
            recursive=False,
            force_polling=self._polling,
            ignore_permission_denied=True,
        ):
            # The link itself replaced counts even when it resolves to the same target
            # again: swaps A -> B -> A grouped into one batch may have been read mid-way
            # by a reconcile, which must then run again.
            if any(path == link for _, path in changes) or self._resolve() != self.target:
                swapped.set()
