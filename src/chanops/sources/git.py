"""A git repository as the manifests source: fetch, check out atomically, keep the last good.

Layout under `workdir` (a volume: it survives restarts, so a daemon that starts while
the remote is unreachable still has its last good checkout):

    workdir/
      repo.git/                 bare cache; the fetched commit is kept at refs/chanops/target
      checkouts/<sha>/          one full tree per checked-out commit (two are kept)
      checkouts/<sha>.json      {"sha", "subject"} of that checkout
      current -> checkouts/<sha>   switched with os.replace, never edited in place
      known_hosts               ssh host keys (accept-new), beside the state, not in ~/.ssh

A reader that resolves `current` (or holds a `Revision.path`) sees one complete tree:
a new commit is extracted into a temporary directory, renamed to its final name, and
only then does `current` change, in one rename of a symlink. The previous checkout is
kept, so a reader that resolved the old path mid-switch can finish.

Only the system `git` is used, through asyncio subprocesses without a shell. Credentials
embedded in the URL (`https://user:token@host/...`) never appear in logs or errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import structlog

from chanops.errors import SourceError

log = structlog.get_logger(__name__)

TARGET_REF = "refs/chanops/target"
KEEP_CHECKOUTS = 2
# /readyz reports the source unhealthy after this many failed refreshes in a row (issue 6).
UNHEALTHY_AFTER = 3

_REPO_ENV = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def redact_url(text: str) -> str:
    """Replace `user:password@` (or a bare token as user) in every URL inside `text`."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def ssh_command(key: Path, known_hosts: Path) -> str:
    """The GIT_SSH_COMMAND for a deploy key.

    git runs this through a shell, hence the quoting. BatchMode: a passphrase or host-key
    prompt fails instead of hanging the daemon; accept-new: trust a host on first use but
    refuse a changed key; our own known_hosts file because $HOME may be read-only.
    """
    return " ".join(
        [
            "ssh",
            "-i",
            shlex.quote(str(key)),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "UserKnownHostsFile=" + shlex.quote(str(known_hosts)),
        ]
    )


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
        self.ref = ref
        self.path = rel
        self.workdir = Path(workdir)
        self.ssh_key = ssh_key
        self.interval = interval
        self.timeout = timeout
        self.failure_streak = 0
        self.failures_total = 0
        self.last_error: str | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._current: Revision | None = self._read_current()

    # -- public surface ---------------------------------------------------------------

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

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
        await self._git(
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--quiet",
            "--",
            self.url,
            # The + makes a force-push or reset a plain update: we follow the remote,
            # whether or not the new commit descends from the old one.
            f"+{self.ref}:{TARGET_REF}",
        )
        out = await self._git("log", "-1", "--format=%H%x00%s", TARGET_REF)
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
        repo = self._repo
        if (repo / "HEAD").is_file():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Init into a temporary name and rename: a crash mid-init leaves no half repo.
        tmp = Path(tempfile.mkdtemp(prefix=".repo-", dir=self.workdir))
        await self._git("init", "--bare", "--quiet", str(tmp), git_dir=False)
        os.replace(tmp, repo)

    async def _checkout(self, sha: str, subject: str) -> Revision:
        checkouts = self.workdir / "checkouts"
        checkouts.mkdir(parents=True, exist_ok=True)
        final = checkouts / sha
        if not final.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha[:12]}-", dir=checkouts))
            try:
                await self._extract(sha, tmp)
                if not (tmp / self.path).is_dir():
                    raise SourceError(
                        f"commit {sha[:12]} ({self.ref}) has no directory {self.path}"
                    )
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        meta = checkouts / f"{sha}.json"
        _write_atomic(meta, json.dumps({"sha": sha, "subject": subject}))
        os.utime(final)  # newest first when pruning
        self._switch(final)
        await asyncio.to_thread(self._prune, final)
        return Revision(sha=sha, subject=subject, path=final / self.path)

    async def _extract(self, sha: str, into: Path) -> None:
        # `git archive` rather than a worktree: the checkout is a plain tree with no .git
        # link back into the cache, and tarfile's "data" filter refuses links that point
        # outside the tree, so a committed symlink cannot expose the daemon's host.
        reused = await self._reuse_unchanged(sha, into)
        archive = into.parent / f"{into.name}.tar"
        try:
            with archive.open("wb") as out:
                await self._git("archive", "--format=tar", sha, stdout=out)
            skipped = await asyncio.to_thread(_untar, archive, into, reused)
        except (OSError, tarfile.TarError) as exc:
            raise SourceError(f"cannot check out {sha[:12]}: {exc}") from None
        finally:
            archive.unlink(missing_ok=True)
        if skipped:
            log.warning("git.unsafe_entries_skipped", revision=sha, entries=skipped[:20])

    async def _reuse_unchanged(self, sha: str, into: Path) -> set[str]:
        """Hard-link the files a commit shares with the checkout in use; return their paths.

        Creating files dominates a checkout (about 1 ms each on a slow disk; a link costs
        a twentieth of that), and a push usually changes one manifest among hundreds.
        Only regular files whose blob and mode are unchanged are linked; nothing ever
        writes into a checkout, so sharing inodes between two of them is safe.
        """
        current = self._current
        if current is None:
            return set()
        previous = self.workdir / "checkouts" / current.sha
        if not previous.is_dir():
            return set()
        try:
            old = _parse_ls_tree(await self._git("ls-tree", "-r", "-z", "--full-tree", current.sha))
            new = _parse_ls_tree(await self._git("ls-tree", "-r", "-z", "--full-tree", sha))
        except SourceError:
            return set()  # e.g. the old commit was pruned from the cache: extract everything
        same = {
            path
            for path, entry in new.items()
            if entry[0] in ("100644", "100755") and old.get(path) == entry
        }
        return await asyncio.to_thread(_link_files, previous, into, same)

    def _switch(self, target: Path) -> None:
        link = self.workdir / "current"
        tmp = self.workdir / f".current-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        # Relative target: the workdir volume may be mounted elsewhere after a restart.
        tmp.symlink_to(Path("checkouts") / target.name)
        os.replace(tmp, link)

    def _prune(self, keep: Path) -> None:
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
        # Leftovers of a crash mid-extract.
        for stale in checkouts.glob(".tmp-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)

    def _read_current(self) -> Revision | None:
        link = self.workdir / "current"
        try:
            target = link.resolve(strict=True)
            meta = json.loads((target.parent / f"{target.name}.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("sha") != target.name or not (target / self.path).is_dir():
            return None
        return Revision(
            sha=target.name, subject=str(meta.get("subject", "")), path=target / self.path
        )

    # -- failure accounting -----------------------------------------------------------

    def _record_failure(self, error: str) -> None:
        self.failure_streak += 1
        self.failures_total += 1
        self.last_error = error
        if self.failure_streak == 1:
            current = self._current
            log.warning(
                "git.fetch_failed",
                error=error,
                ref=self.ref,
                url=self.display_url,
                revision=current.sha if current else None,
                note="keeping the last good checkout" if current else "no checkout yet",
            )

    def _record_success(self) -> None:
        if self.failure_streak:
            log.info(
                "git.fetch_recovered",
                failures=self.failure_streak,
                ref=self.ref,
                url=self.display_url,
            )
        self.failure_streak = 0
        self.last_error = None

    # -- the git subprocess -----------------------------------------------------------

    @property
    def _repo(self) -> Path:
        return self.workdir / "repo.git"

    def _env(self) -> Mapping[str, str]:
        # Repository-locating variables (set inside git hooks, e.g. under pre-commit)
        # would point our commands at someone else's repository.
        env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
        env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a TTY
        env["LC_ALL"] = "C"  # stable error text
        if self.ssh_key is not None:
            env["GIT_SSH_COMMAND"] = ssh_command(self.ssh_key, self.workdir / "known_hosts")
        return env

    async def _git(self, *args: str, git_dir: bool = True, stdout: IO[bytes] | None = None) -> str:
        argv = ["git"]
        if git_dir:
            argv += ["--git-dir", str(self._repo)]
        argv += list(args)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout if stdout is not None else asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env(),
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise SourceError(f"git {args[0]} timed out after {self.timeout:g}s") from None
        if proc.returncode != 0:
            detail = redact_url(err.decode("utf-8", "replace").strip()).replace(
                self.url, self.display_url
            )
            last = detail.splitlines()[-1] if detail else f"exit status {proc.returncode}"
            raise SourceError(f"git {args[0]} failed: {last}")
        return (out or b"").decode("utf-8", "replace")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _parse_ls_tree(out: str) -> dict[str, tuple[str, str]]:
    """`git ls-tree -r -z` output -> {path: (mode, object)}."""
    entries: dict[str, tuple[str, str]] = {}
    for record in out.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, _type, obj = meta.split(" ", 2)
        entries[path] = (mode, obj)
    return entries


def _link_files(source: Path, into: Path, paths: set[str]) -> set[str]:
    linked: set[str] = set()
    for rel in paths:
        src = source / rel
        if src.is_symlink() or not src.is_file():
            continue
        dst = into / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            continue  # a filesystem without hard links: extract it instead
        linked.add(rel)
    return linked


def _untar(archive: Path, into: Path, already: set[str]) -> list[str]:
    """Extract `archive` into `into`, skipping `already` and unsafe entries (returned)."""
    skipped: list[str] = []

    def data_only(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        if member.name in already:
            return None
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError:
            skipped.append(member.name)
            return None

    with tarfile.open(archive) as tar:
        tar.extractall(into, filter=data_only)  # noqa: S202 (data filter above)
    return skipped
