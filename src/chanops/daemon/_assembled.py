"""The last `LoadResult` the daemon's loader assembled, kept so an edit can patch it.

`assemble_result` (the manifests package's one place for the load rules) walks every
file's outcome: about 30 ms at 10,000 manifests, per edit, while a resync competes for
the same interpreter. An edit that re-reads files the last load already had (no file
added or removed) changes only those files' part of the result, so `Assembled.patch`
swaps just that part, in time proportional to the edited files:

- the manifests of each re-read file replace its old ones, in place (files are sorted,
  and a file's manifests are consecutive);
- its diagnostics replace its old ones (the discovery's stay), sorted as
  `assemble_result` sorts them;
- it fails if its new outcome fails or discovery failed it, as before.

The cross-file rule (a `metadata.name` or `spec.connectionId` defined twice drops every
definition) is the one thing a patch cannot decide locally: `patch` returns None, and
the loader assembles in full, whenever the last result had a duplicate or a re-read file
defines a name or id that another file defines. A result with a duplicate is never
kept. `tests/daemon/test_loader_patch.py` checks that a patch equals a full assembly.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chanops.manifests import Diagnostic, Discovered, FileOutcome, LoadResult, Manifest
from chanops.manifests.discovery import DIRECTORY_FAILURES

_DUPLICATES = frozenset({"duplicate-name", "duplicate-connection-id"})


def _file_of(m: Manifest) -> str:
    return m.source.file


def _diagnostic_order(d: Diagnostic) -> tuple[str, int, int]:
    return (d.file, d.line, d.column)


@dataclass(slots=True)
class Assembled:
    result: LoadResult
    outcomes: dict[str, FileOutcome]  # file -> the outcome the result was built from
    names: dict[str, str]  # metadata.name -> its file
    ids: dict[int, str]  # spec.connectionId -> its file
    discovery_failed: frozenset[str]  # files the walk itself failed

    @classmethod
    def of(
        cls, found: Discovered, outcomes: Sequence[FileOutcome], result: LoadResult
    ) -> Assembled | None:
        """What a later patch needs, or None for a result with a duplicate."""
        if any(d.code in _DUPLICATES for d in result.diagnostics):
            return None
        names: dict[str, str] = {}
        ids: dict[int, str] = {}
        for m in result.manifests:
            names[m.name] = m.source.file
            if m.connection_id is not None:
                ids[m.connection_id] = m.source.file
        files = set(found.files)
        failed = {
            d.file
            for d in found.diagnostics
            if (d.severity == "error" and d.file in files) or d.code in DIRECTORY_FAILURES
        }
        by_file = {o.file: o for o in outcomes}
        return cls(result, by_file, names, ids, frozenset(failed))

    def patch(self, files: Sequence[str], new: Mapping[str, FileOutcome]) -> LoadResult | None:
        """The result with the outcomes of `new` (files the last result had) swapped in;
        None when only a full assembly can decide (see the module docstring)."""
        before = self.result
        if len(files) != len(before.files) or not self._fits(files, new):
            return None
        manifests = list(before.manifests)
        for file in sorted(new, reverse=True):  # from the end: earlier offsets hold
            old = self.outcomes[file].manifests
            start = bisect.bisect_left(manifests, file, key=_file_of)
            window = manifests[start : start + len(old)]
            if len(window) != len(old) or any(a is not b for a, b in zip(window, old, strict=True)):
                return None  # not laid out as expected: let the full assembly decide
            manifests[start : start + len(old)] = new[file].manifests
        gone = {id(d) for file in new for d in self.outcomes[file].diagnostics}
        diagnostics = [d for d in before.diagnostics if id(d) not in gone]
        diagnostics += [d for file in sorted(new) for d in new[file].diagnostics]
        diagnostics.sort(key=_diagnostic_order)
        failed = set(before.failed_files).difference(new)
        for file, outcome in new.items():
            directory = any(d.code in DIRECTORY_FAILURES for d in outcome.diagnostics)
            if outcome.failed or directory or file in self.discovery_failed:
                failed.add(file)
        self._note(new)
        self.result = LoadResult(
            root=before.root,
            manifests=tuple(manifests),
            diagnostics=tuple(diagnostics),
            files=tuple(files),
            failed_files=frozenset(failed),
            root_ok=before.root_ok,
        )
        return self.result

    def _fits(self, files: Sequence[str], new: Mapping[str, FileOutcome]) -> bool:
        """Every file of `new` was and is a file of the root, and no name or id it
        defines is defined by another file (or twice among them)."""
        for file in new:
            at = bisect.bisect_left(files, file)
            if file not in self.outcomes or at == len(files) or files[at] != file:
                return False
        names: set[str] = set()
        ids: set[int] = set()
        for file, outcome in new.items():
            for m in outcome.manifests:
                if m.name in names or self.names.get(m.name, file) not in new:
                    return False
                names.add(m.name)
                cid = m.connection_id
                if cid is not None and (cid in ids or self.ids.get(cid, file) not in new):
                    return False
                if cid is not None:
                    ids.add(cid)
        return True

    def _note(self, new: Mapping[str, FileOutcome]) -> None:
        for file, outcome in new.items():
            for m in self.outcomes[file].manifests:
                if self.names.get(m.name) == file:
                    del self.names[m.name]
                if m.connection_id is not None and self.ids.get(m.connection_id) == file:
                    del self.ids[m.connection_id]
            for m in outcome.manifests:
                self.names[m.name] = file
                if m.connection_id is not None:
                    self.ids[m.connection_id] = file
            self.outcomes[file] = outcome
