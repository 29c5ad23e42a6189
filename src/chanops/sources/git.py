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
refused), and the checkout is written by this module's own walk of `git ls-tree`:

- only the --git-path subtree, and only regular files (modes 100644 and 100755), with
  their content from one `git cat-file --batch`; symlinks, submodules and anything else
  are skipped and named once per commit in `git.unsafe_entries_skipped`;
- every directory is created by the walk and reopened relative to its parent's file
  descriptor with O_NOFOLLOW, every file is created with O_EXCL|O_NOFOLLOW: nothing is
  ever written through a link, and a duplicate entry is an error, not an overwrite;
- a path component that is empty, `.`, `..`, `.git` (any case) or holds a NUL, a path
  that is both a file and a directory or deeper than MAX_PATH_DEPTH, a file over
  MAX_FILE_BYTES, a subtree over MAX_CHECKOUT_BYTES or MAX_CHECKOUT_ENTRIES: the whole
  commit is refused before anything is written, and the previous checkout stays current.

Only the system `git` is used, through subprocesses without a shell. Credentials
embedded in an https URL (`https://user:token@host/...`) never appear in logs, errors or
the argv of any git process: git is given the URL without them and gets them from a
credential helper that reads them from its environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import structlog

from chanops.errors import SourceError

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
# Any other git command's output (a SHA and a subject line).
MAX_GIT_OUTPUT = 1 << 20
_STDERR_TAIL = 64 << 10

# Written into checkouts/<sha>.json by the walk. A checkout without it was extracted by
# an older chanops through tarfile and may hold links planted by a bypass: it is never
# used, only replaced.
CHECKOUT_FORMAT = 2

_FILE_MODES = {"100644": 0o644, "100755": 0o755}
_MODE_NAMES = {"120000": "symlink", "160000": "submodule"}

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

# Only the fetch's environment carries these, never an argv (which any local user can
# read in /proc). Not CHANOPS_*: that prefix is the operator's configuration.
_USERNAME_ENV = "_CHANOPS_GIT_USERNAME"
_PASSWORD_ENV = "_CHANOPS_GIT_PASSWORD"  # noqa: S105 (a variable name)
_PROTOCOL_ENV = "_CHANOPS_GIT_PROTOCOL"
_HOST_ENV = "_CHANOPS_GIT_HOST"
# A git credential helper (git runs `!...` through sh, appending the operation). It
# answers `get` from the environment, and only for the URL's own protocol and host: a
# redirect to another host gets nothing. `printf` is a shell builtin, so the values are
# never in an argv either. `store` and `erase` are ignored.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; p=; h=; '
    'while IFS= read -r line && test -n "$line"; do case $line in '
    f'"protocol=${_PROTOCOL_ENV}") p=1 ;; "host=${_HOST_ENV}") h=1 ;; esac; done; '
    'test "$p$h" = 11 || return 0; '
    f'printf \'username=%s\\npassword=%s\\n\' "${_USERNAME_ENV}" "${_PASSWORD_ENV}"; }}; f'
)

_T = TypeVar("_T")


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
class HttpCredentials:
    """The `user:password@` of an http(s) URL, percent-decoded as git would."""

    protocol: str
    host: str  # host[:port] exactly as in the URL: what git tells the helper
    username: str
    password: str

    def env(self) -> dict[str, str]:
        return {
            _PROTOCOL_ENV: self.protocol,
            _HOST_ENV: self.host,
            _USERNAME_ENV: self.username,
            _PASSWORD_ENV: self.password,
        }


def split_credentials(url: str) -> tuple[str, HttpCredentials | None]:
    """(the URL without userinfo, its credentials) for http(s); other URLs unchanged.

    ssh's `git@host` is a login name, not a secret, and ssh needs it: left in place.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise SourceError(f"invalid git URL {redact_url(url)!r}: {exc}") from None
    protocol = parts.scheme.lower()
    if protocol not in ("http", "https") or "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    credentials = HttpCredentials(protocol, host, unquote(username), unquote(password))
    # The helper speaks a line protocol: a newline would let the URL inject attributes.
    if any(c in "\r\n\0" for c in credentials.username + credentials.password):
        raise SourceError(f"credentials in git URL {redact_url(url)!r} hold a control character")
    return urlunsplit(parts._replace(netloc=host)), credentials


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
        self._fetch_url, self._credentials = split_credentials(url)
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
        # The files this process wrote into each kept checkout, for _CheckoutTree.link.
        self._written: dict[str, dict[str, _Written]] = {}
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
        config = [
            # Check every object received, so a tree with duplicate entries, a `..` or
            # `.git` name, or a malformed object never reaches the cache. (The walk
            # checks names again: objects fetched by an older chanops were not checked.)
            ("fetch.fsckObjects", "true"),
            ("transfer.fsckObjects", "true"),
        ]
        if self._credentials is not None:
            # The empty value drops the helpers of the user's and system's config, so
            # none of them is asked to store the URL's token on disk.
            config += [("credential.helper", ""), ("credential.helper", CREDENTIAL_HELPER)]
        await self._git(
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
        listing = await self._git_bytes(
            "ls-tree", "-r", "-z", "-l", "--full-tree", sha, *pathspec, max_output=MAX_LISTING_BYTES
        )
        plan = plan_checkout(listing, self.path, where)
        checkouts = final.parent
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha[:12]}-", dir=checkouts))
        try:
            writer = _Writer(tmp, self._argv("cat-file", "--batch"), self._env(), where)
            reusable = self._reusable()
            written = await self._in_thread(
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

    def _reusable(self) -> tuple[Path, Mapping[str, _Written]] | None:
        """The checkout in use and the files this process wrote there, if it wrote it.

        Creating files dominates a checkout (about 1 ms each on a slow disk; a link costs
        a twentieth of that), and a push usually changes one manifest among hundreds:
        unchanged files are hard-linked from the checkout in use instead (nothing ever
        writes into a checkout, so two of them can share inodes). Only files recorded
        here are candidates, and _CheckoutTree.link keeps a link only if it lands on the
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

    def _env(self, *, credentials: bool = False) -> dict[str, str]:
        # Repository-locating variables (set inside git hooks, e.g. under pre-commit)
        # would point our commands at someone else's repository.
        env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
        env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a TTY
        env["GIT_LITERAL_PATHSPECS"] = "1"  # --git-path is a path, never a glob
        env["LC_ALL"] = "C"  # stable error text
        if self.ssh_key is not None:
            env["GIT_SSH_COMMAND"] = ssh_command(self.ssh_key, self.workdir / "known_hosts")
        if credentials and self._credentials is not None:
            env.update(self._credentials.env())
        return env

    def _argv(
        self, *args: str, git_dir: bool = True, config: Sequence[tuple[str, str]] = ()
    ) -> list[str]:
        argv = ["git"]
        if git_dir:
            argv += ["--git-dir", str(self._repo)]
        for key, value in config:
            argv += ["-c", f"{key}={value}"]
        return argv + list(args)

    async def _git(
        self,
        *args: str,
        git_dir: bool = True,
        config: Sequence[tuple[str, str]] = (),
        credentials: bool = False,
    ) -> str:
        out = await self._git_bytes(*args, git_dir=git_dir, config=config, credentials=credentials)
        return out.decode("utf-8", "replace")

    async def _git_bytes(
        self,
        *args: str,
        git_dir: bool = True,
        config: Sequence[tuple[str, str]] = (),
        credentials: bool = False,
        max_output: int = MAX_GIT_OUTPUT,
    ) -> bytes:
        """Run git; its stdout, or SourceError (timeout, failure, more than `max_output`)."""
        proc = await asyncio.create_subprocess_exec(
            *self._argv(*args, git_dir=git_dir, config=config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env(credentials=credentials),
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            out, err, _ = await asyncio.wait_for(
                asyncio.gather(
                    _read_capped(proc.stdout, max_output),
                    _read_tail(proc.stderr, _STDERR_TAIL),
                    proc.wait(),
                ),
                timeout=self.timeout,
            )
        except TimeoutError:
            raise SourceError(f"git {args[0]} timed out after {self.timeout:g}s") from None
        except _OutputTooLarge:
            raise SourceError(f"git {args[0]} printed more than {max_output} bytes") from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise SourceError(f"git {args[0]} failed: {self._error_line(err, proc.returncode)}")
        return out

    def _error_line(self, stderr: bytes, returncode: int | None) -> str:
        detail = redact_url(stderr.decode("utf-8", "replace").strip()).replace(
            self.url, self.display_url
        )
        lines = detail.splitlines()
        # git prints the cause as `error: ...` (an fsck finding, say) before a generic
        # `fatal: index-pack failed`; otherwise the last line says it.
        errors = [line for line in lines if line.startswith("error: ")]
        if errors:
            return errors[0]
        return lines[-1] if lines else f"exit status {returncode}"

    async def _in_thread(self, fn: Callable[[], _T], *, stop: Callable[[], None], what: str) -> _T:
        """`fn()` in a worker thread, within the timeout.

        A thread cannot be cancelled: on timeout or cancellation `stop()` makes `fn` give
        up, and we wait for it, so nothing writes into a directory we are removing.
        """
        job = asyncio.ensure_future(asyncio.to_thread(fn))
        try:
            return await asyncio.wait_for(asyncio.shield(job), timeout=self.timeout)
        except TimeoutError:
            raise SourceError(f"{what} timed out after {self.timeout:g}s") from None
        finally:
            if not job.done():
                stop()
                await asyncio.wait({job})
            if not job.cancelled():
                job.exception()  # retrieved: the error that matters was raised above


# -- writing a checkout ------------------------------------------------------------------


class _OutputTooLarge(Exception):
    pass


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> bytes:
    buf = bytearray()
    while chunk := await stream.read(1 << 16):
        buf += chunk
        if len(buf) > limit:
            raise _OutputTooLarge
    return bytes(buf)


async def _read_tail(stream: asyncio.StreamReader, limit: int) -> bytes:
    buf = b""
    while chunk := await stream.read(1 << 16):
        buf = (buf + chunk)[-limit:]
    return buf


@dataclass(frozen=True, slots=True)
class TreeFile:
    """A regular file of the listing: what the walk writes."""

    path: str  # from the repository root, '/'-separated, bytes as committed (fsdecoded)
    parts: tuple[str, ...]
    mode: str  # 100644 or 100755
    oid: str
    size: int


@dataclass(frozen=True, slots=True)
class CheckoutPlan:
    files: list[TreeFile]
    skipped: list[str]  # "path (symlink)", ...: entries the walk refuses to write


@dataclass(frozen=True, slots=True)
class _Written:
    """A file the walk wrote (or linked): what it was, and the file that holds it.

    An inode number alone does not identify a file: a file deleted and another created
    often get the same one. Size and modification time (ns) are part of the identity; a
    link does not change them (it changes the ctime, so that is not).
    """

    mode: str
    oid: str
    identity: tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _unsafe_component(name: str) -> bool:
    # `.git` in a checkout would make a git command run inside it obey the committer's
    # hooks and config; the others would climb out of, or alias, a directory.
    return name in ("", ".", "..") or "\0" in name or name.lower() == ".git"


def plan_checkout(listing: bytes, path: Path, where: str) -> CheckoutPlan:
    """Check a `git ls-tree -r -z -l --full-tree` listing of `path`: what to write, skip.

    Raises SourceError, naming the entry and prefixed with `where` (the commit), for
    anything that refuses the whole commit. Nothing has been written at that point.
    """
    prefix = path.parts
    records = listing.split(b"\0")
    if records and not records[-1]:
        records.pop()
    if len(records) > MAX_CHECKOUT_ENTRIES:
        raise SourceError(
            f"{where}: {path} has {len(records)} entries, over the limit of {MAX_CHECKOUT_ENTRIES}"
        )
    files: list[TreeFile] = []
    skipped: list[str] = []
    total = 0
    leaves: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    for record in records:
        meta, tab, raw_path = record.partition(b"\t")
        fields = meta.decode("ascii", "replace").split()
        if not tab or len(fields) != 4 or not (fields[3].isdigit() or fields[3] == "-"):
            raise SourceError(f"{where}: unexpected git ls-tree output {record[:200]!r}")
        mode, kind, oid, size_field = fields
        name = os.fsdecode(raw_path)
        parts = tuple(name.split("/"))
        if any(_unsafe_component(part) for part in parts):
            raise SourceError(f"{where}: refusing a malformed tree: entry {name!r}")
        if parts[: len(prefix)] != prefix:
            raise SourceError(f"{where}: git ls-tree listed {name!r}, outside {path}")
        if parts == prefix:  # a symlink, file or submodule where the directory should be
            kind_name = _MODE_NAMES.get(mode, f"mode {mode}")
            raise SourceError(f"{where} has no directory {path}: it is a {kind_name}")
        if len(parts) > MAX_PATH_DEPTH:
            raise SourceError(f"{where}: {name!r} is deeper than {MAX_PATH_DEPTH} levels")
        # Duplicate entries, or a name that is both a file and a directory: only a
        # crafted tree has them, and a checkout of one could depend on entry order.
        parents = {parts[:i] for i in range(1, len(parts))}
        if parts in leaves or parts in dirs or not parents.isdisjoint(leaves):
            raise SourceError(f"{where}: refusing a malformed tree: {name!r} appears twice")
        leaves.add(parts)
        dirs |= parents
        if mode in _FILE_MODES and kind == "blob":
            size = int(size_field)
            if size > MAX_FILE_BYTES:
                raise SourceError(
                    f"{where}: {name} is {size} bytes, over the limit of {MAX_FILE_BYTES}"
                    " for one file"
                )
            total += size
            files.append(TreeFile(name, parts, mode, oid, size))
        else:
            skipped.append(f"{name} ({_MODE_NAMES.get(mode, f'mode {mode}')})")
    if total > MAX_CHECKOUT_BYTES:
        raise SourceError(
            f"{where}: {path} holds {total} bytes of files, over the limit of {MAX_CHECKOUT_BYTES}"
        )
    if not leaves:
        raise SourceError(f"{where} has no directory {path}")
    return CheckoutPlan(files, skipped)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _CheckoutTree:
    """Creates directories and files under a fresh `root`, never through a link.

    Every directory is made here (mkdir, no exist_ok) and then opened relative to its
    parent's descriptor with O_NOFOLLOW|O_DIRECTORY; a name that already exists is only
    reopened if this object created it as a directory. Files are created with
    O_EXCL|O_NOFOLLOW. So nothing in the tree is a symlink, and no path is resolved
    through anything but directories this object made.
    """

    def __init__(self, root: Path) -> None:
        self._root_fd = os.open(root, _DIR_FLAGS)
        self._created: set[tuple[str, ...]] = {()}
        # The open descriptors of the directory being filled and its parents. A listing
        # is depth-first, so the stack changes little from one file to the next.
        self._stack: list[tuple[str, int]] = []
        self.written: dict[str, _Written] = {}

    def close(self) -> None:
        for _, fd in self._stack:
            os.close(fd)
        self._stack.clear()
        os.close(self._root_fd)

    def directory(self, parts: tuple[str, ...]) -> int:
        """A descriptor of root/parts, creating what is missing."""
        common = 0
        while (
            common < len(self._stack)
            and common < len(parts)
            and self._stack[common][0] == parts[common]
        ):
            common += 1
        for _, fd in self._stack[common:]:
            os.close(fd)
        del self._stack[common:]
        for depth in range(common, len(parts)):
            parent = self._stack[-1][1] if self._stack else self._root_fd
            if parts[: depth + 1] not in self._created:
                # FileExistsError here: a file of that name was written (plan_checkout
                # refuses such trees; this is the second line).
                os.mkdir(parts[depth], 0o755, dir_fd=parent)
                self._created.add(parts[: depth + 1])
            self._stack.append((parts[depth], os.open(parts[depth], _DIR_FLAGS, dir_fd=parent)))
        return self._stack[-1][1] if self._stack else self._root_fd

    def write(self, file: TreeFile, data: bytes) -> None:
        parent = self.directory(file.parts[:-1])
        fd = os.open(file.parts[-1], _NEW_FILE_FLAGS, _FILE_MODES[file.mode], dir_fd=parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            st = os.fstat(fd)
        finally:
            os.close(fd)
        self.written[file.path] = _Written(file.mode, file.oid, _identity(st))

    def link(self, file: TreeFile, source: Path, was: _Written) -> bool:
        """Hard-link `source` (the same file in the previous checkout) if it is still `was`.

        linkat without AT_SYMLINK_FOLLOW links a symlink itself, never its target, and the
        result is kept only if it is a regular file with the recorded identity.
        """
        parent = self.directory(file.parts[:-1])
        name = file.parts[-1]
        try:
            os.link(source, name, dst_dir_fd=parent, follow_symlinks=False)
        except OSError:
            return False  # gone, another filesystem, no hard links: write it instead
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and _identity(st) == was.identity:
            self.written[file.path] = was
            return True
        os.unlink(name, dir_fd=parent)
        return False


class _Writer:
    """Writes a CheckoutPlan under `root`: links of unchanged files, the rest by content.

    Runs in a worker thread. All blob contents come from one `git cat-file --batch`
    (a feeder thread writes the requests while this one reads the answers, so neither
    pipe can fill up and stall the other). `stop()` may be called from another thread.
    """

    def __init__(self, root: Path, argv: list[str], env: Mapping[str, str], where: str) -> None:
        self._root = root
        self._argv = argv
        self._env = dict(env)
        self._where = where
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            if self._proc is not None:
                self._proc.kill()  # the reads below then end at EOF

    def run(
        self,
        prefix: tuple[str, ...],
        files: list[TreeFile],
        reusable: tuple[Path, Mapping[str, _Written]] | None,
    ) -> dict[str, _Written]:
        tree = _CheckoutTree(self._root)
        try:
            # The --git-path directory itself, even when every entry in it was skipped.
            tree.directory(prefix)
            fresh = files
            if reusable is not None:
                previous, records = reusable
                fresh = []
                for file in files:
                    self._check_stopped()
                    was = records.get(file.path)
                    if (
                        was is None
                        or (was.mode, was.oid) != (file.mode, file.oid)
                        or not self._link(tree, file, previous / file.path, was)
                    ):
                        fresh.append(file)
            if fresh:
                self._write_blobs(tree, fresh)
            return tree.written
        finally:
            tree.close()

    def _link(self, tree: _CheckoutTree, file: TreeFile, source: Path, was: _Written) -> bool:
        try:
            return tree.link(file, source, was)
        except OSError as exc:
            raise self._error(file, exc) from None

    def _write_blobs(self, tree: _CheckoutTree, files: list[TreeFile]) -> None:
        with tempfile.TemporaryFile() as errors:
            with self._lock:
                self._check_stopped()
                proc = self._proc = subprocess.Popen(
                    self._argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    env=self._env,
                )
            assert proc.stdin is not None and proc.stdout is not None
            requests = b"".join(f"{file.oid}\n".encode() for file in files)
            feeder = threading.Thread(target=_feed, args=(proc.stdin, requests), daemon=True)
            feeder.start()
            try:
                for file in files:
                    self._check_stopped()
                    data = _read_blob(proc.stdout, file)
                    if data is None:
                        errors.seek(0)
                        detail = errors.read(_STDERR_TAIL).decode("utf-8", "replace").strip()
                        raise SourceError(
                            f"{self._where}: git cat-file did not return {file.path}"
                            f" ({file.oid}, {file.size} bytes){': ' + detail if detail else ''}"
                        )
                    try:
                        tree.write(file, data)
                    except OSError as exc:
                        raise self._error(file, exc) from None
            except BaseException:
                proc.kill()
                raise
            finally:
                # After the last answer cat-file exits by itself: the feeder closed its input.
                proc.stdout.close()
                proc.wait()
                feeder.join()

    def _check_stopped(self) -> None:
        if self._stopped.is_set():
            raise SourceError(f"{self._where}: checkout stopped")

    def _error(self, file: TreeFile, exc: OSError) -> SourceError:
        if isinstance(exc, FileExistsError | NotADirectoryError):
            return SourceError(f"{self._where}: refusing a malformed tree: {file.path!r} collides")
        return SourceError(f"{self._where}: cannot write {file.path}: {exc.strerror or exc}")


def _feed(stdin: IO[bytes], requests: bytes) -> None:
    # OSError (a broken pipe): the reader gave up and killed the process.
    with contextlib.suppress(OSError):
        stdin.write(requests)
    with contextlib.suppress(OSError):
        stdin.close()


def _read_blob(stdout: IO[bytes], file: TreeFile) -> bytes | None:
    """One answer of `git cat-file --batch`, if it is `file`'s blob of the listed size."""
    header = stdout.readline(200)
    if header != f"{file.oid} blob {file.size}\n".encode():
        return None  # "<oid> missing", another size, or the process died
    data = stdout.read(file.size + 1)
    if len(data) != file.size + 1 or data[-1:] != b"\n":
        return None
    return data[:-1]


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
