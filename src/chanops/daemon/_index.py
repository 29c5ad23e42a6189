"""Which connection names each manifest file defines: the file -> names index.

A watcher batch names files; the queue wants connection names. A file's names are the
ones it defines now (this load) and the ones it defined last time (the previous load,
and the state store's `source_file`), so that an edit, a rename inside the file, a
broken file and a deleted file all reach every connection they concern.

Files are keyed relative to the manifests root (`source_key`, as the engine stores
them), so the index survives a root that moves: a git-sync symlink swap, or `--git`,
where every commit is a new checkout directory. Watcher paths are real paths; the real
path of each loader path is memoised here (thousands of paths are compared per edit),
and the memo is dropped by `forget_paths` whenever the layout may have changed (a full
resync, which a root swap or a directory move always causes). One index per daemon: no
module-level state.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from chanops.engine.diff import source_key
from chanops.manifests.model import LoadResult, Manifest
from chanops.state.store import Record

_MEMO_LIMIT = 200_000  # real paths remembered before the memo starts again


class FileIndex:
    def __init__(self, root: str) -> None:
        self.root = root  # what the loader reports as LoadResult.root
        self._real: dict[str, str] = {}
        self._from_loads: dict[str, set[str]] = {}  # file key -> names (loads)
        self._from_records: dict[str, set[str]] = {}  # file key -> names (store)
        self._record_file: dict[str, str] = {}  # name -> its record's file key
        self._manifests: dict[str, Manifest] = {}  # name -> manifest, current load
        # name -> its manifest when its file last loaded, for recorded or frozen names
        # the current load lacks (a broken or deleted file): what a notice names
        self._gone: dict[str, Manifest] = {}
        self.frozen_names: frozenset[str] = frozenset()  # names whose file fails now

    # -- paths -------------------------------------------------------------------------

    def canonical(self, path: str) -> str:
        """The real path of `path`, memoised."""
        real = self._real.get(path)
        if real is None:
            if len(self._real) > _MEMO_LIMIT:
                self._real.clear()
            real = self._real[path] = os.path.realpath(path)
        return real

    def forget_paths(self, root: str | None = None) -> None:
        """Drop the real-path memo (the layout may have changed); `root`: a new root."""
        self._real.clear()
        if root is not None:
            self.root = root

    def key(self, path: str) -> str:
        """A manifest path as the engine stores it: relative to the root (source_key).

        Loader paths carry the root as given; watcher paths are real paths; store
        records are keys already (or, from older stores, paths as discovered).
        """
        key = source_key(path, self.root)
        if key != path or not os.path.isabs(path):
            return key
        real, root = self.canonical(path), self.canonical(self.root)
        if real.startswith(root + os.sep):
            return real[len(root) + 1 :]
        return path

    # -- loads and records ---------------------------------------------------------------

    def note_load(self, load: LoadResult) -> None:
        """Remember which names each file defines now. A file that fails to load keeps
        the names it defined last time, so a later fix or deletion still reaches them."""
        mapping: dict[str, set[str]] = {}
        for m in load.manifests:
            mapping.setdefault(self.key(m.source.file), set()).add(m.name)
        for failed in load.failed_files:
            path = self.key(failed)
            if path in self._from_loads:
                mapping.setdefault(path, set()).update(self._from_loads[path])
        self._from_loads = mapping
        manifests = {m.name: m for m in load.manifests}
        self.frozen_names = frozenset(self.frozen(load))
        gone = {n: m for n, m in self._manifests.items() if n not in manifests}
        self._gone = {
            n: m
            for n, m in {**self._gone, **gone}.items()
            if n not in manifests and (n in self._record_file or n in self.frozen_names)
        }
        self._manifests = manifests

    def note_refresh(self, load: LoadResult, files: Iterable[str], previous: LoadResult) -> None:
        """`note_load` for a load that re-read only `files` (loader paths) after
        `previous`: only their entries change (an edit must not cost a pass over 10,000
        manifests). When the failed files changed (a duplicate appears or goes away, which
        can change what *other* files contribute) it is a whole `note_load`."""
        if load.failed_files != previous.failed_files:
            self.note_load(load)
            return
        changed = set(files)
        failing = {self.key(f) for f in load.failed_files}
        for key in {self.key(f) for f in changed}:
            names = self._from_loads.get(key, set())
            for name in names:
                if (m := self._manifests.pop(name, None)) is not None:
                    self._gone[name] = m
            if key not in failing:  # a file that fails keeps the names it defined
                self._from_loads.pop(key, None)
        for m in load.manifests:
            if m.source.file in changed:
                self._from_loads.setdefault(self.key(m.source.file), set()).add(m.name)
                self._manifests[m.name] = m
                self._gone.pop(m.name, None)
        self.frozen_names = frozenset(self.frozen(load))

    def note_records(self, records: Mapping[str, Record | None]) -> None:
        """Remember the store's file of each named record (None: the record is gone)."""
        for name, record in records.items():
            old = self._record_file.pop(name, None)
            if record is None:
                self._gone.pop(name, None)
            if old is not None:
                self._from_records.get(old, set()).discard(name)
            if record is not None and record.source_file:
                key = self.key(record.source_file)
                self._record_file[name] = key
                self._from_records.setdefault(key, set()).add(name)

    # -- questions -------------------------------------------------------------------------

    def names_of(self, files: Iterable[str]) -> set[str]:
        """Names the (real) `files` define as far as the index knows: in the loads noted so
        far and in the store. Called before and after noting a load, it gives the names
        the files defined last time and define now."""
        names: set[str] = set()
        for file in files:
            key = self.key(file)
            names |= self._from_loads.get(key, set())
            names |= self._from_records.get(key, set())
        return names

    def defined_by(self, file: str) -> set[str]:
        """Names `file` defined in the loads so far (what a broken file freezes)."""
        return set(self._from_loads.get(self.key(file), ()))

    def frozen(self, load: LoadResult) -> set[str]:
        """Names whose file fails to load now."""
        return {n for f in load.failed_files for n in self._from_loads.get(self.key(f), ())}

    def manifest(self, name: str) -> Manifest | None:
        return self._manifests.get(name)

    def last_known(self, name: str) -> Manifest | None:
        """The manifest of `name` in the current load, else as its file last loaded
        (a file that fails to load now, or a deleted one whose record is still kept)."""
        return self._manifests.get(name) or self._gone.get(name)

    def record_file(self, name: str) -> str | None:
        """The file key the store's record of `name` names (None: no record)."""
        return self._record_file.get(name)

    def manifests(self) -> Mapping[str, Manifest]:
        return self._manifests
