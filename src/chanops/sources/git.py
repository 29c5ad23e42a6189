"""A git repository as the manifests source: fetch, check out atomically, keep the last good.

Layout under `workdir` (a volume: it survives restarts, so a daemon that starts while
the remote is unreachable still has its last good checkout):

    workdir/
      repo.git/                 bare cache; the fetched commit is kept at refs/chanops/target
      checkouts/<sha>/          the --git-path subtree of one commit (two are kept)
      checkouts/<sha>.json      {"sha", "subject", "format"} of that checkout
      current -> checkouts/<sha>   switched with os.replace, never edited in place
      known_hosts               ssh host keys (accept-new), beside the state, not in ~/.ssh

A reader that resolves `current` (or holds a `Revision.path`) sees one complete tree:
a new commit is written into a temporary directory, renamed to its final name, and
only then does `current` change, in one rename of a symlink. The previous checkout is
kept, so a reader that resolved the old path mid-switch can finish.

Whoever can push to the repository is not trusted, so a commit is never unpacked by a
general-purpose extractor (tarfile's filters have had bypasses). The fetch checks every
object it receives (`fetch.fsckObjects`: duplicate tree entries, `..`, `.git` are
refused), and the checkout is written by an own walk of `git ls-tree`:

- only the --git-path subtree, and only regular files (modes 100644 and 100755), with
  their content from one `git cat-file --batch`; symlinks, submodules and anything else
  are skipped and named once per commit in `git.unsafe_entries_skipped`;
- a path component that is empty, `.`, `..`, `.git` (any case) or holds a NUL, a path
  that is both a file and a directory or deeper than MAX_PATH_DEPTH, a file over
  MAX_FILE_BYTES, a subtree over MAX_CHECKOUT_BYTES or MAX_CHECKOUT_ENTRIES: the whole
  commit is refused before anything is written (`plan_checkout`), and the previous
  checkout stays current;
- the accepted files are written by `chanops.sources._git_writer`, never through a link.

Only the system `git` is used, through subprocesses without a shell
(`chanops.sources._git_process`). Credentials embedded in an https URL never appear in
logs, errors or the argv of any git process (`chanops.sources._git_credentials`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from chanops.errors import SourceError
from chanops.events import EventSink, Level
from chanops.sources._git_credentials import (
    CREDENTIAL_HELPER,
    HttpCredentials,
    redact_url,
    split_credentials,
    ssh_command,
)
from chanops.sources._git_process import GitRunner
from chanops.sources._git_writer import FILE_MODES, CheckoutWriter, TreeFile, WrittenFile

__all__ = [
    "CheckoutPlan",
    "GitSource",
    "HttpCredentials",
    "Revision",
    "TreeFile",
    "plan_checkout",
    "redact_url",
    "split_credentials",
    "ssh_command",
]

log = structlog.get_logger(__name__)

TARGET_REF = "refs/chanops/target"
KEEP_CHECKOUTS = 2
# /readyz reports the source unhealthy after this many failed refreshes in a row (issue 6).
UNHEALTHY_AFTER = 3

# Caps on what one commit may make the daemon write. A commit over any of them is
# refused as a whole (checked on the listing, before anything is written). Manifests
# are a few KiB each; these leave two orders of magnitude of headroom.
MAX_FILE_BYTES = 1 << 20
MAX_CHECKOUT_BYTES = 64 << 20
MAX_CHECKOUT_ENTRIES = 50_000
# The walk holds one directory descriptor per level of the path it is writing.
MAX_PATH_DEPTH = 32
# `git ls-tree` output is read into memory before the caps above can be checked: this
# bounds it (about 200 000 entries of ordinary length, well over MAX_CHECKOUT_ENTRIES).
MAX_LISTING_BYTES = 32 << 20

# Written into checkouts/<sha>.json by the walk. A checkout without it was extracted by
# an older chanops through tarfile and may hold links planted by a bypass: it is never
# used, only replaced.
CHECKOUT_FORMAT = 2

_MODE_NAMES = {"120000": "symlink", "160000": "submodule"}
# `git ls-tree -l` prints mode, type, object id and size before the tab and the path.
_LS_TREE_FIELDS = 4
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")

# The name tests/security/test_git_escape.py patches to prove a refused commit writes
# nothing; the class lives in git_writer.
_Writer = CheckoutWriter


@dataclass(frozen=True, slots=True)
class Revision:
    """One checked-out commit. `path` is the manifests root inside the checkout."""

    sha: str
    subject: str
    path: Path

    @property
    def short(self) -> str:
        return self.sha[:12]


class GitSource:
    """Fetches `ref` of `url` on demand and keeps the newest commit checked out under `workdir`.

    `refresh()` does one fetch; `updates()` loops on the interval and on `trigger()`
    (the push webhook), yielding each new Revision. Failures never touch the checkout in
    use: they raise SourceError, count in `failure_streak`, and are logged once per streak.
    """

    def __init__(
        self,
        url: str,
        ref: str = "main",
        path: str = "connections.d",
        *,
        workdir: Path,
        ssh_key: Path | None = None,
        interval: float = 60.0,
        timeout: float = 120.0,
    ) -> None:
        if not url or url.startswith("-"):
            raise SourceError(f"invalid git URL {redact_url(url)!r}")
        if not ref or ref.startswith("-") or any(c in ref for c in " ~^:?*[\\"):
            raise SourceError(f"invalid git ref {ref!r}")
        rel = Path(path)
        if rel.is_absolute() or ".." in rel.parts:
            raise SourceError(f"--git-path {path!r} must be relative to the repository root")
        self.url = url
        self._fetch_url, credentials = split_credentials(url)
        self.ref = ref
        self.path = rel
        self.workdir = Path(workdir)
        self.ssh_key = ssh_key
        self.interval = interval
        self._git = GitRunner(
            repo=self.workdir / "repo.git",
            url=url,
            timeout=timeout,
            ssh_key=ssh_key,
            known_hosts=self.workdir / "known_hosts",
            credentials=credentials,
        )
        self.failure_streak = 0
        self.failures_total = 0
        self.last_error: str | None = None
        # The daemon's event sink (notifications, /status); None: log lines only.
        self.events: EventSink | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        # The files this process wrote into each kept checkout, for CheckoutTree.link.
        self._written: dict[str, dict[str, WrittenFile]] = {}
        self._current: Revision | None = self._read_current()

    # -- public surface ---------------------------------------------------------------

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    @property
    def timeout(self) -> float:
        """Seconds any one git command, or the writing of one checkout, may take."""
        return self._git.timeout

    @property
    def healthy(self) -> bool:
        """False after UNHEALTHY_AFTER failed refreshes in a row (for /readyz)."""
        return self.failure_streak < UNHEALTHY_AFTER

    @property
    def stable_path(self) -> Path:
        """`workdir/current/<path>`: always the newest checkout, through the symlink."""
        return self.workdir / "current" / self.path

    def current(self) -> Revision | None:
        """The last good checkout (also after a restart), or None before the first one."""
        return self._current

    async def read(self) -> str | None:
        """The SHA in use, for the daemon's revision reader.

        `git rev-parse` in the checkout cannot tell: the checkout has no .git.
        """
        return self._current.sha if self._current else None

    def trigger(self) -> None:
        """Cut the interval short: the next `updates()` iteration fetches now (webhook)."""
        self._wake.set()

    async def refresh(self) -> Revision | None:
        """Fetch the ref; check out and return the new Revision if the commit changed.

        Returns None when the commit is the one already checked out. Raises SourceError
        (after logging it once per failure streak) when fetch or checkout fails; the
        previous checkout stays current.
        """
        async with self._lock:
            try:
                try:
                    revision = await self._refresh()
                except OSError as exc:  # disk full, permissions on the workdir volume
                    raise SourceError(f"git source workdir {self.workdir}: {exc}") from None
            except SourceError as exc:
                self._record_failure(str(exc))
                raise
            self._record_success()
            return revision

    async def updates(self) -> AsyncIterator[Revision]:
        """Yield every new Revision: now, then every `interval` seconds or on `trigger()`.

        Failures are recorded (see refresh) and the loop goes on. The first item is the
        current checkout when one exists already, so a consumer can start from it even
        while the remote is unreachable.
        """
        if self._current is not None:
            yield self._current
        while True:
            self._wake.clear()
            with contextlib.suppress(SourceError):
                revision = await self.refresh()
                if revision is not None:
                    yield revision
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)

    # -- the steps --------------------------------------------------------------------

    async def _refresh(self) -> Revision | None:
        await self._ensure_repo()
        config = [
            # Check every object received, so a tree with duplicate entries, a `..` or
            # `.git` name, or a malformed object never reaches the cache. (The walk
            # checks names again: objects fetched by an older chanops were not checked.)
            ("fetch.fsckObjects", "true"),
            ("transfer.fsckObjects", "true"),
        ]
        if self._git.credentials is not None:
            # The empty value drops the helpers of the user's and system's config, so
            # none of them is asked to store the URL's token on disk.
            config += [("credential.helper", ""), ("credential.helper", CREDENTIAL_HELPER)]
        await self._git.text(
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--quiet",
            "--",
            self._fetch_url,
            # The + makes a force-push or reset a plain update: we follow the remote,
            # whether or not the new commit descends from the old one.
            f"+{self.ref}:{TARGET_REF}",
            config=config,
            credentials=True,
        )
        out = await self._git.text("log", "-1", "--format=%H%x00%s", TARGET_REF)
        sha, _, subject = out.rstrip("\n").partition("\x00")
        if not _SHA.match(sha):
            raise SourceError(f"git log returned no commit for {self.ref}")
        if self._current is not None and self._current.sha == sha:
            return None
        revision = await self._checkout(sha, subject)
        self._current = revision
        log.info(
            "git.checked_out",
            revision=sha,
            subject=subject,
            ref=self.ref,
            url=self.display_url,
        )
        return revision

    async def _ensure_repo(self) -> None:
        repo = self._git.repo
        if (repo / "HEAD").is_file():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Init into a temporary name and rename: a crash mid-init leaves no half repo.
        tmp = Path(tempfile.mkdtemp(prefix=".repo-", dir=self.workdir))
        await self._git.text("init", "--bare", "--quiet", str(tmp), git_dir=False)
        os.replace(tmp, repo)

    async def _checkout(self, sha: str, subject: str) -> Revision:
        checkouts = self.workdir / "checkouts"
        checkouts.mkdir(parents=True, exist_ok=True)
        final = checkouts / sha
        meta = checkouts / f"{sha}.json"
        if _walk_checkout_meta(final, meta) is None:
            await self._materialise(sha, final)
        _write_atomic(meta, json.dumps({"sha": sha, "subject": subject, "format": CHECKOUT_FORMAT}))
        os.utime(final)  # newest first when pruning
        self._switch(final)
        kept = await asyncio.to_thread(self._prune, final)
        self._written = {k: v for k, v in self._written.items() if k in kept}
        return Revision(sha=sha, subject=subject, path=final / self.path)

    async def _materialise(self, sha: str, final: Path) -> None:
        """Write the --git-path subtree of `sha` to `final` (see the module docstring)."""
        where = f"commit {sha[:12]} ({self.ref})"
        pathspec = ["--", str(self.path)] if self.path.parts else []
        listing = await self._git.output(
            "ls-tree", "-r", "-z", "-l", "--full-tree", sha, *pathspec, max_output=MAX_LISTING_BYTES
        )
        plan = plan_checkout(listing, self.path, where)
        checkouts = final.parent
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha[:12]}-", dir=checkouts))
        try:
            writer = CheckoutWriter(
                tmp, self._git.argv("cat-file", "--batch"), self._git.env(), where
            )
            reusable = self._reusable()
            written = await self._git.in_thread(
                lambda: writer.run(self.path.parts, plan.files, reusable),
                stop=writer.stop,
                what="writing the checkout",
            )
            # A checkout by an older chanops may sit at `final` (see CHECKOUT_FORMAT).
            # It is never current, so nothing reads it: move it aside so the rename
            # below can land.
            aside = checkouts / f".tmp-replaced-{sha[:12]}-{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.replace(final, aside)
                shutil.rmtree(aside, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._written[sha] = written
        if plan.skipped:
            log.warning(
                "git.unsafe_entries_skipped",
                revision=sha,
                count=len(plan.skipped),
                entries=plan.skipped[:20],
            )

    def _reusable(self) -> tuple[Path, Mapping[str, WrittenFile]] | None:
        """The checkout in use and the files this process wrote there, if it wrote it.

        Creating files dominates a checkout (about 1 ms each on a slow disk; a link costs
        a twentieth of that), and a push usually changes one manifest among hundreds:
        unchanged files are hard-linked from the checkout in use instead (nothing ever
        writes into a checkout, so two of them can share inodes). Only files recorded
        here are candidates, and CheckoutTree.link keeps a link only if it lands on the
        very file recorded: a tree this process did not write is never linked from.
        """
        current = self._current
        if current is None or current.sha not in self._written:
            return None
        return self.workdir / "checkouts" / current.sha, self._written[current.sha]

    def _switch(self, target: Path) -> None:
        link = self.workdir / "current"
        tmp = self.workdir / f".current-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        # Relative target: the workdir volume may be mounted elsewhere after a restart.
        tmp.symlink_to(Path("checkouts") / target.name)
        os.replace(tmp, link)

    def _prune(self, keep: Path) -> set[str]:
        """Remove all but the KEEP_CHECKOUTS newest checkouts; return the names kept."""
        checkouts = self.workdir / "checkouts"
        trees = sorted(
            (p for p in checkouts.iterdir() if p.is_dir() and _SHA.match(p.name)),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        kept = {keep.name}
        for tree in trees:
            if len(kept) >= KEEP_CHECKOUTS:
                break
            kept.add(tree.name)
        for tree in trees:
            if tree.name not in kept:
                shutil.rmtree(tree, ignore_errors=True)
                (checkouts / f"{tree.name}.json").unlink(missing_ok=True)
        # Leftovers of a crash mid-checkout.
        for stale in checkouts.glob(".tmp-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        return kept

    def _read_current(self) -> Revision | None:
        link = self.workdir / "current"
        try:
            target = link.resolve(strict=True)
        except OSError:
            return None
        info = _walk_checkout_meta(target, target.parent / f"{target.name}.json")
        if info is None or not (target / self.path).is_dir():
            return None
        return Revision(
            sha=target.name, subject=str(info.get("subject", "")), path=target / self.path
        )

    # -- failure accounting -----------------------------------------------------------

    def _record_failure(self, error: str) -> None:
        self.failure_streak += 1
        self.failures_total += 1
        self.last_error = error
        if self.failure_streak == 1:
            current = self._current
            self._tell(
                "git.fetch_failed",
                "warning",
                error=error,
                ref=self.ref,
                url=self.display_url,
                revision=current.sha if current else None,
                note="keeping the last good checkout" if current else "no checkout yet",
            )

    def _record_success(self) -> None:
        if self.failure_streak:
            self._tell(
                "git.fetch_recovered",
                "info",
                failures=self.failure_streak,
                ref=self.ref,
                url=self.display_url,
            )
        self.failure_streak = 0
        self.last_error = None

    def _tell(self, name: str, level: Level, **fields: Any) -> None:
        if self.events is not None:
            self.events.emit(name, level, **fields)
        else:
            getattr(log, level)(name, **fields)


# -- what a commit may make us write -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckoutPlan:
    files: list[TreeFile]
    skipped: list[str]  # "path (symlink)", ...: entries the walk refuses to write


def _unsafe_component(name: str) -> bool:
    # `.git` in a checkout would make a git command run inside it obey the committer's
    # hooks and config; the others would climb out of, or alias, a directory.
    return name in ("", ".", "..") or "\0" in name or name.lower() == ".git"


@dataclass(frozen=True, slots=True)
class _Entry:
    """One record of the listing, its path checked component by component."""

    mode: str
    kind: str  # blob, tree, commit (a submodule)
    oid: str
    size: str  # digits, or "-" for what has no size (a submodule)
    name: str
    parts: tuple[str, ...]


def _entry(record: bytes, where: str) -> _Entry:
    meta, tab, raw_path = record.partition(b"\t")
    fields = meta.decode("ascii", "replace").split()
    if not tab or len(fields) != _LS_TREE_FIELDS or not (fields[3].isdigit() or fields[3] == "-"):
        raise SourceError(f"{where}: unexpected git ls-tree output {record[:200]!r}")
    mode, kind, oid, size = fields
    name = os.fsdecode(raw_path)
    parts = tuple(name.split("/"))
    if any(_unsafe_component(part) for part in parts):
        raise SourceError(f"{where}: refusing a malformed tree: entry {name!r}")
    return _Entry(mode, kind, oid, size, name, parts)


def _check_placement(entry: _Entry, path: Path, where: str) -> None:
    prefix = path.parts
    if entry.parts[: len(prefix)] != prefix:
        raise SourceError(f"{where}: git ls-tree listed {entry.name!r}, outside {path}")
    if entry.parts == prefix:  # a symlink, file or submodule where the directory should be
        kind_name = _MODE_NAMES.get(entry.mode, f"mode {entry.mode}")
        raise SourceError(f"{where} has no directory {path}: it is a {kind_name}")
    if len(entry.parts) > MAX_PATH_DEPTH:
        raise SourceError(f"{where}: {entry.name!r} is deeper than {MAX_PATH_DEPTH} levels")


def _tree_file(entry: _Entry, where: str) -> TreeFile:
    size = int(entry.size)
    if size > MAX_FILE_BYTES:
        raise SourceError(
            f"{where}: {entry.name} is {size} bytes, over the limit of {MAX_FILE_BYTES}"
            " for one file"
        )
    return TreeFile(entry.name, entry.parts, entry.mode, entry.oid, size)


def plan_checkout(listing: bytes, path: Path, where: str) -> CheckoutPlan:
    """Check a `git ls-tree -r -z -l --full-tree` listing of `path`: what to write, skip.

    Raises SourceError, naming the entry and prefixed with `where` (the commit), for
    anything that refuses the whole commit. Nothing has been written at that point.
    """
    records = listing.split(b"\0")
    if records and not records[-1]:
        records.pop()
    if len(records) > MAX_CHECKOUT_ENTRIES:
        raise SourceError(
            f"{where}: {path} has {len(records)} entries, over the limit of {MAX_CHECKOUT_ENTRIES}"
        )
    files: list[TreeFile] = []
    skipped: list[str] = []
    leaves: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    for record in records:
        entry = _entry(record, where)
        _check_placement(entry, path, where)
        # Duplicate entries, or a name that is both a file and a directory: only a
        # crafted tree has them, and a checkout of one could depend on entry order.
        parents = {entry.parts[:i] for i in range(1, len(entry.parts))}
        if entry.parts in leaves or entry.parts in dirs or not parents.isdisjoint(leaves):
            raise SourceError(f"{where}: refusing a malformed tree: {entry.name!r} appears twice")
        leaves.add(entry.parts)
        dirs |= parents
        if entry.mode in FILE_MODES and entry.kind == "blob":
            files.append(_tree_file(entry, where))
        else:
            skipped.append(f"{entry.name} ({_MODE_NAMES.get(entry.mode, f'mode {entry.mode}')})")
    total = sum(file.size for file in files)
    if total > MAX_CHECKOUT_BYTES:
        raise SourceError(
            f"{where}: {path} holds {total} bytes of files, over the limit of {MAX_CHECKOUT_BYTES}"
        )
    if not leaves:
        raise SourceError(f"{where} has no directory {path}")
    return CheckoutPlan(files, skipped)


def _walk_checkout_meta(tree: Path, meta: Path) -> dict[str, object] | None:
    """`meta`'s content if `tree` was written by this module's walk (CHECKOUT_FORMAT)."""
    try:
        info = json.loads(meta.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if (
        isinstance(info, dict)
        and info.get("sha") == tree.name
        and info.get("format") == CHECKOUT_FORMAT
        and tree.is_dir()
        and not tree.is_symlink()
    ):
        return info
    return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
