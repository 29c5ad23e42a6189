"""Hostile commits against GitSource: the attacks performed for real with the system git.

Whoever can push to the manifests repository is untrusted. Each test commits (or crafts
with `git hash-object --literally`) what such a pusher could, runs a real refresh, and
checks that nothing outside the checkout is read or written, that no link is ever
created, and that a refused commit leaves the previous checkout current.

"An older chanops" below means objects that reached the cache without object checking
(chanops before fetch.fsckObjects): simulated by a plain `git fetch` into the cache, so
the walk's own checks are exercised, not only git's.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from chanops.errors import SourceError
from chanops.sources import git as git_source
from chanops.sources.git import GitSource, Revision, split_credentials
from support.git import GIT_ENV, git

SECRET = b"HOST-SECRET-7c1e9a"


class Remote:
    """A bare 'remote' the daemon fetches from, and a clone an attacker pushes from."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        git(root, "init", "--quiet", "--bare", "-b", "main", str(self.bare))
        git(root, "init", "--quiet", "-b", "main", str(self.work))

    def write(self, rel: str, content: bytes | str = "kind: Connection\n") -> Path:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def symlink(self, rel: str, target: str | Path) -> None:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)

    def commit(self, message: str = "change", *, add_all: bool = True) -> str:
        if add_all:
            git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", message)
        sha = git(self.work, "rev-parse", "HEAD")
        self.push(sha)
        return sha

    def push(self, sha: str) -> None:
        # receive.fsckObjects is off by default: a hosting service may accept anything.
        git(self.work, "push", "--quiet", "--force", str(self.bare), f"{sha}:refs/heads/main")

    def hash_object(self, kind: str, data: bytes) -> str:
        out = subprocess.run(
            ["git", "hash-object", "-t", kind, "-w", "--literally", "--stdin"],
            cwd=self.work,
            env=GIT_ENV,
            input=data,
            check=True,
            capture_output=True,
        )
        return out.stdout.decode().strip()

    def tree(self, *entries: tuple[str, bytes, str]) -> str:
        """A tree object with exactly these (mode, name, oid) entries, unchecked, unsorted."""
        body = b"".join(
            mode.encode() + b" " + name + b"\0" + bytes.fromhex(oid) for mode, name, oid in entries
        )
        return self.hash_object("tree", body)

    def blob(self, content: bytes) -> str:
        return self.hash_object("blob", content)

    def commit_tree(self, tree: str, message: str = "crafted") -> str:
        """Commit `tree` on top of HEAD, push it, and make it the clone's HEAD."""
        sha = git(self.work, "commit-tree", "-p", "HEAD", "-m", message, tree)
        git(self.work, "update-ref", "HEAD", sha)
        self.push(sha)
        return sha


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path)


@pytest.fixture
def host_secret(tmp_path: Path) -> Path:
    """A file of the daemon's host that no commit may expose."""
    path = tmp_path / "host" / "secret.env"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """An empty directory beside the workdir: a write that escapes would land here."""
    path = tmp_path / "outside"
    path.mkdir()
    return path


def source(remote: Remote, tmp_path: Path, **kw: object) -> GitSource:
    return GitSource(str(remote.bare), workdir=tmp_path / "state" / "git", **kw)  # type: ignore[arg-type]


async def good_checkout(remote: Remote, src: GitSource) -> Revision:
    remote.write("connections.d/a.yaml", "good: 1\n")
    sha = remote.commit("good")
    rev = await src.refresh()
    assert rev is not None and rev.sha == sha
    return rev


def fetch_like_an_older_chanops(src: GitSource, remote: Remote) -> None:
    """Put the remote's commit into the cache without any object checking."""
    git(
        src.workdir,
        "--git-dir",
        str(src.workdir / "repo.git"),
        "-c",
        "fetch.fsckObjects=false",
        "-c",
        "transfer.fsckObjects=false",
        "fetch",
        "--quiet",
        "--no-tags",
        str(remote.bare),
        "+main:refs/chanops/target",
    )


def assert_still_current(src: GitSource, rev: Revision) -> None:
    assert src.current() == rev
    assert os.readlink(src.workdir / "current") == f"checkouts/{rev.sha}"
    assert (rev.path / "a.yaml").read_text() == "good: 1\n"
    checkouts = src.workdir / "checkouts"
    assert {p.name for p in checkouts.iterdir() if p.is_dir()} == {rev.sha}


def assert_nothing_leaked(src: GitSource, outside: Path) -> None:
    """No link in any checkout, the host secret in no file of the workdir, `outside` empty."""
    for dirpath, dirnames, filenames in os.walk(src.workdir):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            if path.is_relative_to(src.workdir / "checkouts"):
                assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), f"{path} is not a dir or file"
            if stat.S_ISREG(mode):
                assert SECRET not in path.read_bytes(), f"{path} holds the host secret"
    assert list(outside.iterdir()) == []


def skipped_entries(logs: list[dict[str, object]]) -> list[str]:
    events = [e for e in logs if e["event"] == "git.unsafe_entries_skipped"]
    assert len(events) == 1, logs  # once per revision
    entries = events[0]["entries"]
    assert isinstance(entries, list)
    return entries


def tree_files(root: Path) -> set[str]:
    return {str(Path(d, f).relative_to(root)) for d, _, files in os.walk(root) for f in files}


# -- (a) symlinks to host files ---------------------------------------------------------


async def test_symlinks_to_host_files_are_not_materialised(
    remote: Remote, tmp_path: Path, host_secret: Path, outside: Path
) -> None:
    src = source(remote, tmp_path)
    remote.write("connections.d/a.yaml", "good: 1\n")
    remote.symlink("connections.d/absolute.yaml", host_secret)
    # Relative: from workdir/checkouts/<sha>/connections.d up to tmp_path.
    remote.symlink("connections.d/relative.yaml", "../../../../../host/secret.env")
    remote.symlink("connections.d/hostdir", host_secret.parent)
    remote.symlink("connections.d/root", "/")
    sha = remote.commit("sneaky")

    with capture_logs() as logs:
        rev = await src.refresh()

    assert rev is not None and rev.sha == sha
    assert tree_files(rev.path.parent) == {"connections.d/a.yaml"}
    assert sorted(skipped_entries(logs)) == [
        "connections.d/absolute.yaml (symlink)",
        "connections.d/hostdir (symlink)",
        "connections.d/relative.yaml (symlink)",
        "connections.d/root (symlink)",
    ]
    assert_nothing_leaked(src, outside)


# -- (b) symlink chains of the tarfile filter bypasses -----------------------------------


async def test_symlink_chains_of_the_tarfile_bypasses_are_not_materialised(
    remote: Remote, tmp_path: Path, host_secret: Path, outside: Path
) -> None:
    src = source(remote, tmp_path)
    rev = await good_checkout(remote, src)
    base = "connections.d"
    # 1. Eight directories deep, a link whose target runs through `zz`, a link that
    #    comes later in the archive: checked before `zz` exists, it looks contained.
    deep = "/".join(f"n{i}" for i in range(8))
    remote.symlink(f"{base}/{deep}/escape.yaml", "../" * 8 + "zz/" + str(host_secret)[1:])
    remote.symlink(f"{base}/zz", "/")
    # 2. The PATH_MAX chain (CVE-2025-4517 shape): each step links to a long directory
    #    name, until realpath gives up resolving and the last link climbs out.
    comp = "d" * 55
    steps = "abcdefghijklmnop"
    path = base
    for step in steps:
        (remote.work / path / comp).mkdir(parents=True, exist_ok=True)
        remote.symlink(f"{path}/{step}", comp)
        path = f"{path}/{comp}"
    remote.write(f"{path}/keep.yaml", "deep: true\n")
    linkpath = "/".join([*steps, "l" * 254])
    remote.symlink(f"{base}/{linkpath}", "../" * len(steps))
    remote.symlink(f"{base}/escape", f"{linkpath}/{'../' * 4}{outside.name}")
    sha = remote.commit("chains")

    with capture_logs() as logs:
        new = await src.refresh()

    assert new is not None and new.sha == sha
    skipped = skipped_entries(logs)
    assert f"{base}/{deep}/escape.yaml (symlink)" in skipped
    assert f"{base}/escape (symlink)" in skipped
    # escape.yaml and zz, a link per step, the long link and `escape`.
    assert len(skipped) == 2 + len(steps) + 2
    files = tree_files(new.path.parent)
    assert files == {f"{base}/a.yaml", f"{path}/keep.yaml"}
    assert_nothing_leaked(src, outside)
    assert rev.path.is_dir()  # the previous checkout is kept, untouched


# -- (c) the --git-path itself, or a parent, is a symlink --------------------------------


@pytest.mark.parametrize("git_path", ["connections.d", "deploy/connections.d"])
async def test_symlinked_git_path_or_parent_is_refused(
    remote: Remote, tmp_path: Path, outside: Path, git_path: str
) -> None:
    src = source(remote, tmp_path, path=git_path)
    remote.write(f"{git_path}/a.yaml", "good: 1\n")
    remote.commit("good")
    rev = await src.refresh()
    assert rev is not None
    # The host directory the link points at holds manifests of the attacker's choice.
    host = tmp_path / "host-manifests"
    (host / "connections.d").mkdir(parents=True)
    (host / "connections.d" / "evil.yaml").write_text("evil: 1\n")
    shutil.rmtree(remote.work / git_path.split("/")[0])
    target = host / "connections.d" if git_path == "connections.d" else host
    remote.symlink(git_path.split("/")[0], target)
    remote.commit("redirect the manifests root")

    with pytest.raises(SourceError, match=f"has no directory {git_path}"):
        await src.refresh()

    assert_still_current(src, rev)
    assert not list((src.workdir / "checkouts").rglob("evil.yaml"))
    assert_nothing_leaked(src, outside)


# -- (d) trees with duplicate entries ----------------------------------------------------


def duplicate_tree_commit(remote: Remote, outside: Path) -> str:
    """`connections.d` holding a symlink `escape` -> outside AND a tree `escape` with a
    file: extracted in order, the file would be written through the link."""
    a = remote.blob(b"good: 1\n")
    link = remote.blob(str(outside).encode())
    pwned = remote.tree(("100644", b"pwned.yaml", remote.blob(b"pwned: 1\n")))
    crafted = remote.tree(
        ("100644", b"a.yaml", a), ("120000", b"escape", link), ("40000", b"escape", pwned)
    )
    return remote.commit_tree(remote.tree(("40000", b"connections.d", crafted)))


async def test_duplicate_tree_entries_are_refused_by_the_fetch(
    remote: Remote, tmp_path: Path, outside: Path
) -> None:
    src = source(remote, tmp_path)
    rev = await good_checkout(remote, src)
    duplicate_tree_commit(remote, outside)

    with pytest.raises(SourceError, match="duplicateEntries"):
        await src.refresh()

    assert_still_current(src, rev)
    assert_nothing_leaked(src, outside)


async def test_duplicate_file_entries_are_refused_by_the_fetch(
    remote: Remote, tmp_path: Path, outside: Path
) -> None:
    src = source(remote, tmp_path)
    rev = await good_checkout(remote, src)
    crafted = remote.tree(
        ("100644", b"a.yaml", remote.blob(b"good: 1\n")),
        ("100644", b"a.yaml", remote.blob(b"evil: 1\n")),
    )
    remote.commit_tree(remote.tree(("40000", b"connections.d", crafted)))

    with pytest.raises(SourceError, match="duplicateEntries"):
        await src.refresh()
    assert_still_current(src, rev)


async def test_duplicate_tree_entries_already_in_the_cache_are_refused_by_the_walk(
    remote: Remote, tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = source(remote, tmp_path)
    rev = await good_checkout(remote, src)
    duplicate_tree_commit(remote, outside)
    fetch_like_an_older_chanops(src, remote)
    refuse_any_write(monkeypatch)

    with pytest.raises(SourceError, match=r"malformed tree: 'connections.d/escape/pwned.yaml'"):
        await src.refresh()

    assert_still_current(src, rev)
    assert_nothing_leaked(src, outside)


def refuse_any_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a checkout is started: a refusal must come before any write."""

    def no_write(*args: object, **kwargs: object) -> None:
        raise AssertionError("the checkout was written before the commit was refused")

    monkeypatch.setattr(git_source._Writer, "run", no_write)


@pytest.mark.parametrize(
    ("name", "fsck_finding"),
    [
        (b".git", "hasDotgit"),
        (b".GiT", "hasDotgit"),
        (b"..", "hasDotdot"),
        (b".", "hasDot"),
        (b"x/../../..", "fetch failed"),
    ],
)
async def test_dangerous_names_are_refused_by_the_fetch_and_by_the_walk(
    remote: Remote,
    tmp_path: Path,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: bytes,
    fsck_finding: str,
) -> None:
    src = source(remote, tmp_path)
    rev = await good_checkout(remote, src)
    hook = remote.tree(("100755", b"post-checkout", remote.blob(b"#!/bin/sh\ntouch pwned\n")))
    inner = remote.tree(("40000", b"hooks", hook), ("100644", b"config", remote.blob(b"[core]\n")))
    crafted = remote.tree(("100644", b"a.yaml", remote.blob(b"good: 1\n")), ("40000", name, inner))
    remote.commit_tree(remote.tree(("40000", b"connections.d", crafted)))

    with pytest.raises(SourceError, match=fsck_finding):
        await src.refresh()
    assert_still_current(src, rev)

    fetch_like_an_older_chanops(src, remote)
    refuse_any_write(monkeypatch)
    with pytest.raises(SourceError, match=r"refusing a malformed tree: entry 'connections\.d/"):
        await src.refresh()
    assert_still_current(src, rev)
    assert_nothing_leaked(src, outside)


# -- (e) submodules ----------------------------------------------------------------------


async def test_submodule_entries_are_not_materialised(
    remote: Remote, tmp_path: Path, outside: Path
) -> None:
    src = source(remote, tmp_path)
    remote.write("connections.d/a.yaml", "good: 1\n")
    remote.write(
        ".gitmodules", f'[submodule "v"]\n\tpath = connections.d/vendored\n\turl = {outside}\n'
    )
    git(remote.work, "add", "-A")
    # A gitlink to a commit the repository does not even have.
    git(
        remote.work,
        "update-index",
        "--add",
        "--cacheinfo",
        f"160000,{'ab' * 20},connections.d/vendored",
    )
    sha = remote.commit("submodule", add_all=False)

    with capture_logs() as logs:
        rev = await src.refresh()

    assert rev is not None and rev.sha == sha
    assert skipped_entries(logs) == ["connections.d/vendored (submodule)"]
    assert tree_files(rev.path.parent) == {"connections.d/a.yaml"}
    assert_nothing_leaked(src, outside)


# -- (f) size caps -----------------------------------------------------------------------


async def test_a_file_over_one_mib_refuses_the_commit(
    remote: Remote, tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = source(remote, tmp_path)
    remote.write("connections.d/a.yaml", "good: 1\n")
    remote.write("connections.d/big.yaml", b"x" * git_source.MAX_FILE_BYTES)  # at the cap: ok
    remote.commit("good")
    rev = await src.refresh()
    assert rev is not None
    assert (rev.path / "big.yaml").stat().st_size == 1 << 20

    remote.write("connections.d/big.yaml", b"x" * (git_source.MAX_FILE_BYTES + 1))
    remote.commit("one byte too many")
    refuse_any_write(monkeypatch)
    with pytest.raises(SourceError, match=r"connections.d/big.yaml is 1048577 bytes"):
        await src.refresh()

    assert src.current() == rev
    assert (rev.path / "big.yaml").stat().st_size == 1 << 20
    assert {p.name for p in (src.workdir / "checkouts").iterdir() if p.is_dir()} == {rev.sha}
    assert_nothing_leaked(src, outside)


async def test_a_subtree_over_the_total_cap_refuses_the_commit(
    remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = source(remote, tmp_path)
    rev = await good_checkout(remote, src)
    # The real cap is 64 MiB of 1 MiB files; the same check with a smaller cap.
    monkeypatch.setattr(git_source, "MAX_CHECKOUT_BYTES", 300_000)
    for i in range(4):
        remote.write(f"connections.d/part-{i}.yaml", os.urandom(100_000))
    # Files outside --git-path do not count.
    remote.write("assets/huge.bin", os.urandom(400_000))
    remote.commit("too much")
    refuse_any_write(monkeypatch)

    with pytest.raises(SourceError, match=r"connections.d holds 400008 bytes of files"):
        await src.refresh()
    assert_still_current(src, rev)


async def test_a_subtree_over_the_entry_cap_refuses_the_commit(
    remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = source(remote, tmp_path)
    rev = await good_checkout(remote, src)
    monkeypatch.setattr(git_source, "MAX_CHECKOUT_ENTRIES", 5)
    for i in range(5):
        remote.write(f"connections.d/empty-{i}.yaml", "")
    remote.commit("many empty files")
    refuse_any_write(monkeypatch)

    with pytest.raises(SourceError, match="has 6 entries, over the limit of 5"):
        await src.refresh()
    assert_still_current(src, rev)


# -- (g) only the --git-path subtree -----------------------------------------------------


async def test_files_outside_the_git_path_are_not_materialised(
    remote: Remote, tmp_path: Path, host_secret: Path, outside: Path
) -> None:
    src = source(remote, tmp_path)
    remote.write("connections.d/a.yaml", "good: 1\n")
    remote.write("connections.d/nested/b.yaml", "good: 2\n")
    remote.write("README.md", "# manifests\n")
    remote.write("secrets/prod.env", "TOKEN=1\n")
    remote.write("connections.d.bak/old.yaml", "old: 1\n")  # shares the prefix, not the path
    remote.symlink("tools/host", host_secret)
    remote.symlink("connections.dx", host_secret)
    sha = remote.commit("everything")

    with capture_logs() as logs:
        rev = await src.refresh()

    assert rev is not None and rev.sha == sha
    assert tree_files(rev.path.parent) == {"connections.d/a.yaml", "connections.d/nested/b.yaml"}
    assert os.listdir(rev.path.parent) == ["connections.d"]
    # Links outside the path are not even looked at, so not reported.
    assert not [e for e in logs if e["event"] == "git.unsafe_entries_skipped"]
    assert_nothing_leaked(src, outside)


async def test_git_path_holding_only_skipped_entries_is_an_empty_root(
    remote: Remote, tmp_path: Path, host_secret: Path
) -> None:
    src = source(remote, tmp_path)
    remote.symlink("connections.d/a.yaml", host_secret)
    remote.commit("only a link")
    with capture_logs() as logs:
        rev = await src.refresh()
    assert rev is not None
    assert rev.path.is_dir() and list(rev.path.iterdir()) == []
    assert skipped_entries(logs) == ["connections.d/a.yaml (symlink)"]


# -- reuse of unchanged files and checkouts of older versions ----------------------------


async def test_unchanged_files_are_never_linked_from_a_tampered_checkout(
    remote: Remote, tmp_path: Path, host_secret: Path, outside: Path
) -> None:
    src = source(remote, tmp_path)
    remote.write("connections.d/a.yaml", "good: 1\n")
    remote.write("connections.d/b.yaml", "b: 1\n")
    remote.write("connections.d/c.yaml", "c: 1\n")
    remote.commit("good")
    first = await src.refresh()
    assert first is not None
    # What the previous checkout holds is no longer what the walk wrote there.
    (first.path / "a.yaml").unlink()
    (first.path / "a.yaml").symlink_to(host_secret)
    (first.path / "b.yaml").unlink()
    (first.path / "b.yaml").write_bytes(SECRET)  # a new inode with other content
    remote.write("connections.d/d.yaml", "d: 1\n")  # a.yaml, b.yaml, c.yaml unchanged
    remote.commit("add d")

    second = await src.refresh()

    assert second is not None
    assert (second.path / "a.yaml").read_text() == "good: 1\n"
    assert (second.path / "b.yaml").read_text() == "b: 1\n"
    same = (second.path / "c.yaml").stat().st_ino == (first.path / "c.yaml").stat().st_ino
    assert same  # the untouched file is still shared
    for name in ("a.yaml", "b.yaml"):
        assert (second.path / name).lstat().st_ino != (first.path / name).lstat().st_ino
    shutil.rmtree(first.path.parent)  # the tampered tree is not ours to check below
    assert_nothing_leaked(src, outside)


async def test_a_checkout_written_by_an_older_chanops_is_never_used(
    remote: Remote, tmp_path: Path, host_secret: Path, outside: Path
) -> None:
    sha = remote.write("connections.d/a.yaml", "good: 1\n") and remote.commit("good")
    workdir = tmp_path / "state" / "git"
    # The layout an older chanops left, with a link its tar extraction let through.
    old = workdir / "checkouts" / sha / "connections.d"
    old.mkdir(parents=True)
    (old / "a.yaml").symlink_to(host_secret)
    (workdir / "checkouts" / f"{sha}.json").write_text(f'{{"sha": "{sha}", "subject": "good"}}')
    (workdir / "current").symlink_to(f"checkouts/{sha}")

    src = GitSource(str(remote.bare), workdir=workdir)
    assert src.current() is None  # not trusted: the daemon waits for a fetch

    rev = await src.refresh()

    assert rev is not None and rev.sha == sha
    assert (rev.path / "a.yaml").read_text() == "good: 1\n"
    assert not (rev.path / "a.yaml").is_symlink()
    assert_nothing_leaked(src, outside)
    assert GitSource(str(remote.bare), workdir=workdir).current() == rev


# -- credentials in the URL (finding 10) -------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """A smart-http server stand-in: asks for Basic auth, records what it is given."""

    seen: list[tuple[str, str | None]]
    redirect_to: str | None = None

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        self.seen.append((self.path, auth))
        if self.redirect_to is not None:
            self.send_response(302)
            self.send_header("Location", self.redirect_to + self.path)
        elif auth is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
        else:
            self.send_response(403)  # authenticated, and that is all this test needs
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[tuple[str, str | None]], type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler.seen, handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def argv_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every git process's argv: ours (a logging `git` first on PATH) and git's own
    children (GIT_TRACE logs each command git runs, e.g. git-remote-http URL)."""
    real = shutil.which("git")
    assert real is not None
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "argv.log"
    wrapper = bindir / "git"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" git "$@" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("GIT_TRACE", str(tmp_path / "trace.log"))
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    return log


async def test_url_credentials_reach_the_server_but_never_an_argv(
    tmp_path: Path,
    argv_log: Path,
    http_server: tuple[str, list[tuple[str, str | None]], type[_Recorder]],
) -> None:
    host, seen, _ = http_server
    # %40 is an @ in the password: git decodes userinfo, so must we.
    src = GitSource(f"http://deploy:s3cr%40t-t0ken@{host}/org/repo.git", workdir=tmp_path / "git")

    with capture_logs() as logs, pytest.raises(SourceError, match="fetch failed") as err:
        await src.refresh()

    expected = "Basic " + base64.b64encode(b"deploy:s3cr@t-t0ken").decode()
    assert seen[0] == ("/org/repo.git/info/refs?service=git-upload-pack", None)
    assert (seen[-1][1]) == expected  # the helper answered, over HTTP only
    argv, trace = read_text(argv_log), read_text(tmp_path / "trace.log")
    assert f"http://{host}/org/repo.git" in argv  # the fetch really ran through the wrapper
    assert "git-remote-http" in trace  # and the trace saw git's own children
    for text in (argv, trace, str(err.value), repr(logs)):
        assert "s3cr" not in text and "t0ken" not in text
    assert "deploy" not in argv


async def test_url_credentials_are_not_given_to_a_redirect_target(
    tmp_path: Path,
    argv_log: Path,
    http_server: tuple[str, list[tuple[str, str | None]], type[_Recorder]],
) -> None:
    target_host, target_seen, _ = http_server
    # A second server on another port (another host for git) redirects to the first.
    handler = type("Redirect", (_Recorder,), {"seen": [], "redirect_to": f"http://{target_host}"})
    redirector = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=redirector.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://deploy:t0ken@127.0.0.1:{redirector.server_address[1]}/org/repo.git"
        with pytest.raises(SourceError):
            await GitSource(url, workdir=tmp_path / "git").refresh()
    finally:
        redirector.shutdown()
        redirector.server_close()
    assert target_seen, "git did not follow the redirect: the test proves nothing"
    assert all(auth is None for _, auth in target_seen)


def read_text(path: Path) -> str:
    return path.read_text()


def test_split_credentials() -> None:
    url, creds = split_credentials("https://x-access-token:gh%2Fp_1@github.com:443/a/b.git")
    assert url == "https://github.com:443/a/b.git"
    assert creds is not None
    assert (creds.protocol, creds.host) == ("https", "github.com:443")
    assert (creds.username, creds.password) == ("x-access-token", "gh/p_1")
    token_only = split_credentials("https://tok3n@gitlab.example/a.git")
    assert token_only[0] == "https://gitlab.example/a.git"
    assert token_only[1] is not None and token_only[1].username == "tok3n"
    # ssh's login name is not a secret, and ssh needs it.
    for url in ("ssh://git@github.com/a/b.git", "git@github.com:a/b.git", "/srv/repo.git"):
        assert split_credentials(url) == (url, None)
    with pytest.raises(SourceError) as err:
        split_credentials("https://u:line%0Abreak@h/r.git")
    assert "break" not in str(err.value)
