"""Which files are manifests, and which places a manifest may be read from.

Whoever writes a manifest is not trusted with the host (docs/manifests.md, "What a
manifest can reach"): only files whose real path lies inside a manifests root are
manifests. Discovery follows a symlinked directory only when it resolves inside the
root, and `inside_roots` is the rule `reading` applies again to each file it opens.
Reads directories, never file contents.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chanops.manifests.model import Diagnostic, file_error

__all__ = [
    "DIRECTORY_FAILURES",
    "MANIFEST_SUFFIXES",
    "Discovered",
    "discover",
    "discover_roots",
    "inside_roots",
    "is_manifest_name",
    "within",
]

MANIFEST_SUFFIXES = (".yaml", ".yml")
# Diagnostic codes on a directory rather than a file: its path is still a failed file.
DIRECTORY_FAILURES = frozenset({"symlink-loop", "outside-root"})


def is_manifest_name(name: str) -> bool:
    """Whether a file name is a manifest: *.yaml / *.yml, not hidden, not an editor's temp.

    The one rule for both discovery and the daemon's watcher (which must wake for
    exactly the files a load reads): `.x.yaml`, `#x.yaml#`, `~x.yaml` and `x.yaml~` are
    not manifests; `x.tmp.yaml` is.
    """
    if name.startswith((".", "#", "~")) or name.endswith(("~", "#")):
        return False
    return name.endswith(MANIFEST_SUFFIXES)


def within(real: str, base: str) -> bool:
    """Whether the resolved path `real` is `base` or lies under it (both resolved)."""
    return real == base or real.startswith(base if base.endswith("/") else base + "/")


# Resolved roots, by root as given: resolving once per file would cost a stat per path
# component. Refreshed when a file does not fit, since a root that is a symlink
# (git-sync) may have been swapped to a new checkout since.
_REAL_ROOTS: dict[str, str] = {}


def inside_roots(real: str, path: str, roots: Sequence[str]) -> bool:
    """Whether `real` (where `path` leads) lies inside the root `path` was found under.

    That root is the one in `roots` that `path` is named under; a file named under none
    (given on its own) is judged against the directory it is named in.
    """
    mine = [r for r in roots if path.startswith(r if r.endswith("/") else r + "/")]
    if not mine:
        return within(real, os.path.realpath(os.path.dirname(os.path.abspath(path))))
    for refresh in (False, True):
        for root in mine:
            base = None if refresh else _REAL_ROOTS.get(root)
            if base is None:
                base = _REAL_ROOTS[root] = os.path.realpath(root)
            if within(real, base):
                return True
    return False


class _Walk:
    """One discovery walk: the files found, the problems met, the resolved root."""

    def __init__(self, root: str) -> None:
        self.base = os.path.realpath(root)
        self.files: list[str] = []
        self.problems: list[Diagnostic] = []

    def directory(self, directory: str, ancestors: frozenset[str]) -> bool:
        """Walk `directory`; False when it, or a directory under it, could not be walked."""
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            message = f"cannot read directory: {exc.strerror}"
            self.problems.append(file_error(directory, message, code="unreadable"))
            return False
        whole = True
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir and is_manifest_name(entry.name):
                # `a.yaml` that became a directory is a broken manifest, not a removed
                # one: listed, it fails to read ("is a directory"), so what it defined
                # freezes instead of being deleted. Its content is not walked.
                self.files.append(entry.path)
            elif is_dir:
                whole = self.subdirectory(entry.path, ancestors) and whole
            elif is_manifest_name(entry.name):
                self.files.append(entry.path)
        return whole

    def subdirectory(self, path: str, ancestors: frozenset[str]) -> bool:
        real = os.path.realpath(path)
        if not within(real, self.base):
            # Walking it would list (and then read) host files chosen by whoever wrote
            # the link; its target is not named either.
            message = (
                "symlinked directory leads out of the manifests root; not followed "
                "(manifests must lie inside the root)"
            )
            self.problems.append(file_error(path, message, code="outside-root"))
            return False
        if real in ancestors:
            message = f"symlink loop: {path} points back to {real}; not followed"
            self.problems.append(file_error(path, message, code="symlink-loop"))
            return True
        return self.directory(path, ancestors | {real})


def discover(root: str) -> tuple[list[str], list[Diagnostic], bool]:
    """(manifest files under `root` sorted, problems, whole tree readable).

    Symlinked directories are followed when they resolve inside the root (once: a link
    back to a directory already on the walk is a loop, reported and not followed); one
    that leads out of the root is refused unread. The third value is False when the
    root or any directory under it could not be walked (unreadable, or refused): files
    in it are unknown, so the caller must not take them for deleted.
    """
    walk = _Walk(root)
    whole = walk.directory(root, frozenset({walk.base}))
    return sorted(walk.files), walk.problems, whole


@dataclass(slots=True)
class Discovered:
    """The discovery half of a load: which files, and the problems with the roots."""

    roots: list[Path]  # as given
    directories: tuple[str, ...]  # the roots that are directories: where manifests may live
    files: list[str]
    diagnostics: list[Diagnostic]
    root_ok: bool  # every root exists, could be walked whole and holds a manifest

    @property
    def label(self) -> str:
        """The roots as `LoadResult.root` names them."""
        if len(self.roots) == 1:
            return str(self.roots[0])
        return ",".join(str(r) for r in self.roots)

    @classmethod
    def from_walk(
        cls, root: str, files: Sequence[str], problems: Sequence[Diagnostic], readable: bool
    ) -> Discovered:
        """One directory root from its `discover(root)` walk (say, one kept from earlier).

        A readable root without a manifest is an error and not OK: an empty checkout
        must not read as "every connection deleted".
        """
        diagnostics = list(problems)
        if readable and not files:
            message = "no manifest files (*.yaml, *.yml) found"
            diagnostics.append(file_error(root, message, code="empty-root"))
        return cls([Path(root)], (root,), list(files), diagnostics, readable and bool(files))


def discover_roots(paths: Sequence[str | Path]) -> Discovered:
    """Discovery over the roots of one load: directories are walked, files taken as given."""
    roots = [Path(p) for p in paths]
    found = Discovered(roots, (), [], [], bool(roots))
    directories: list[str] = []
    for root in roots:
        name = str(root)
        if root.is_dir():
            directories.append(name)
            walked = Discovered.from_walk(name, *discover(name))
            found.files.extend(walked.files)
            found.diagnostics.extend(walked.diagnostics)
            found.root_ok = found.root_ok and walked.root_ok
        elif root.exists() or os.path.islink(root):
            # A file named on its own is judged against the directory it is named in
            # (inside_roots), so a link there that leads elsewhere (say, from a glob
            # over a checkout) is refused like one found by discovery.
            found.files.append(name)
        else:
            found.root_ok = False
            found.diagnostics.append(file_error(name, "path does not exist", code="missing-root"))
    found.directories = tuple(dict.fromkeys(directories))
    return found
