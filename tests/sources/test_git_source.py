"""GitSource against local bare repositories on disk: real `git`, no network."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from chanops.errors import SourceError
from chanops.sources.git import GitSource, redact_url, ssh_command
from support.git import GIT_ENV, git


def is_ancestor(cwd: Path, old: str, new: str) -> bool:
    res = subprocess.run(
        ["git", "merge-base", "--is-ancestor", old, new], cwd=cwd, env=GIT_ENV, check=False
    )
    assert res.returncode in (0, 1), res
    return res.returncode == 0


class Upstream:
    """A bare 'remote' plus a working clone that commits and pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        git(root, "init", "--quiet", "--bare", "-b", "main", str(self.bare))
        # Let the tests delete `main` on the remote (a vanished ref).
        git(self.bare, "config", "receive.denyDeleteCurrent", "ignore")
        git(root, "init", "--quiet", "-b", "main", str(self.work))
        git(self.work, "remote", "add", "origin", str(self.bare))
        self.n = 0

    def commit(self, subject: str | None = None, *, push: bool = True) -> str:
        """Write two files that must always agree; a half-written tree would not."""
        self.n += 1
        d = self.work / "connections.d"
        d.mkdir(exist_ok=True)
        (d / "a.yaml").write_text(f"n: {self.n}\n")
        (d / "z.yaml").write_text(f"n: {self.n}\n")
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "-m", subject or f"commit {self.n}")
        if push:
            git(self.work, "push", "--quiet", "--force", "origin", "HEAD:main")
        return git(self.work, "rev-parse", "HEAD")


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path)


def source(upstream: Upstream, tmp_path: Path, **kw: object) -> GitSource:
    return GitSource(str(upstream.bare), workdir=tmp_path / "state" / "git", **kw)  # type: ignore[arg-type]


def n_of(path: Path) -> str:
    return (path / "a.yaml").read_text()


async def test_initial_clone_checks_out_the_ref(upstream: Upstream, tmp_path: Path) -> None:
    sha = upstream.commit("add shopware-de")
    src = source(upstream, tmp_path)
    assert src.current() is None

    rev = await src.refresh()

    assert rev is not None
    assert rev.sha == sha
    assert rev.subject == "add shopware-de"
    assert rev.path == src.workdir / "checkouts" / sha / "connections.d"
    assert n_of(rev.path) == "n: 1\n"
    assert os.readlink(src.workdir / "current") == f"checkouts/{sha}"
    assert src.current() == rev
    # Same commit again: nothing to do.
    assert await src.refresh() is None


async def test_new_commit_is_checked_out_and_old_ones_pruned(
    upstream: Upstream, tmp_path: Path
) -> None:
    src = source(upstream, tmp_path)
    first = upstream.commit()
    await src.refresh()
    second = upstream.commit()
    rev = await src.refresh()
    assert rev is not None and rev.sha == second
    assert n_of(rev.path) == "n: 2\n"
    third = upstream.commit()
    rev = await src.refresh()
    assert rev is not None and rev.sha == third

    trees = sorted(p.name for p in (src.workdir / "checkouts").iterdir() if p.is_dir())
    assert trees == sorted([second, third])  # keep 2: current + the one before
    assert not (src.workdir / "checkouts" / first).exists()
    assert not list((src.workdir / "checkouts").glob(".tmp-*"))


async def test_branch_reset_is_followed(upstream: Upstream, tmp_path: Path) -> None:
    src = source(upstream, tmp_path)
    base = upstream.commit()
    upstream.commit()
    await src.refresh()
    git(upstream.work, "reset", "--quiet", "--hard", base)
    git(upstream.work, "push", "--quiet", "--force", "origin", "HEAD:main")

    rev = await src.refresh()

    assert rev is not None and rev.sha == base
    assert n_of(rev.path) == "n: 1\n"


async def test_force_push_of_unrelated_history_is_followed(
    upstream: Upstream, tmp_path: Path
) -> None:
    src = source(upstream, tmp_path)
    old = upstream.commit()
    await src.refresh()
    git(upstream.work, "checkout", "--quiet", "--orphan", "rewrite")
    new = upstream.commit("rewritten history")

    rev = await src.refresh()

    assert rev is not None and rev.sha == new
    assert rev.subject == "rewritten history"
    # Not a descendant of what we had: the +refspec is what lets this through.
    assert not is_ancestor(upstream.work, old, new)


async def test_deleted_ref_keeps_last_good_and_logs_once_per_streak(
    upstream: Upstream, tmp_path: Path
) -> None:
    src = source(upstream, tmp_path)
    sha = upstream.commit()
    good = await src.refresh()
    assert good is not None
    git(upstream.work, "push", "--quiet", "origin", "--delete", "main")

    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(SourceError, match="main"):
                await src.refresh()
        assert src.failure_streak == 3
        assert not src.healthy
        assert src.current() == good
        assert n_of(good.path) == "n: 1\n"  # nothing deleted
        assert os.readlink(src.workdir / "current") == f"checkouts/{sha}"

        git(upstream.work, "push", "--quiet", "origin", "HEAD:main")
        assert await src.refresh() is None  # same commit back: no new checkout

    events = [e["event"] for e in logs]
    assert events.count("git.fetch_failed") == 1
    assert events.count("git.fetch_recovered") == 1
    recovered = next(e for e in logs if e["event"] == "git.fetch_recovered")
    assert recovered["failures"] == 3
    assert src.failure_streak == 0 and src.healthy
    assert src.failures_total == 3

    # A second streak is logged again, once.
    git(upstream.work, "push", "--quiet", "origin", "--delete", "main")
    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(SourceError):
                await src.refresh()
    assert [e["event"] for e in logs] == ["git.fetch_failed"]


async def test_missing_manifests_path_is_a_failure_not_an_empty_root(
    upstream: Upstream, tmp_path: Path
) -> None:
    src = source(upstream, tmp_path)
    upstream.commit()
    good = await src.refresh()
    git(upstream.work, "rm", "--quiet", "-r", "connections.d")
    (upstream.work / "README").write_text("moved\n")
    git(upstream.work, "add", "README")
    git(upstream.work, "commit", "--quiet", "-m", "oops")
    git(upstream.work, "push", "--quiet", "origin", "HEAD:main")

    with pytest.raises(SourceError, match=r"no directory connections\.d"):
        await src.refresh()
    assert src.current() == good
    assert not list((src.workdir / "checkouts").glob(".tmp-*"))


async def test_credentials_in_url_never_reach_errors_or_logs(tmp_path: Path) -> None:
    # Connection refused on a loopback port: a transport failure with no network needed.
    url = "http://deploy:s3cr3t-t0ken@127.0.0.1:9/org/repo.git"
    src = GitSource(url, workdir=tmp_path / "git", timeout=30)
    with capture_logs() as logs, pytest.raises(SourceError) as err:
        await src.refresh()
    assert "s3cr3t" not in str(err.value)
    assert "s3cr3t" not in repr(logs)
    assert logs[0]["url"] == "http://***@127.0.0.1:9/org/repo.git"
    assert src.current() is None


def test_redact_url() -> None:
    assert (
        redact_url("https://u:p@h/x fatal https://tok@h/y")
        == "https://***@h/x fatal https://***@h/y"
    )
    assert redact_url("git@github.com:org/repo.git") == "git@github.com:org/repo.git"


async def test_restart_resumes_from_last_good_checkout_without_fetching(
    upstream: Upstream, tmp_path: Path
) -> None:
    src = source(upstream, tmp_path)
    sha = upstream.commit("first")
    await src.refresh()

    # A new process, and the remote is unreachable now.
    again = GitSource(str(tmp_path / "gone.git"), workdir=src.workdir, interval=3600)
    rev = again.current()
    assert rev is not None and rev.sha == sha and rev.subject == "first"
    updates = again.updates()
    assert await anext(updates) == rev
    await updates.aclose()


async def test_trigger_cuts_the_interval_short(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit()
    src = source(upstream, tmp_path, interval=3600)
    updates = src.updates()
    first = await asyncio.wait_for(anext(updates), 30)
    new = upstream.commit()
    nxt = asyncio.ensure_future(anext(updates))
    await asyncio.sleep(0.05)
    assert not nxt.done()  # waiting out the hour
    src.trigger()
    second = await asyncio.wait_for(nxt, 30)
    assert (first.sha, second.sha) != (new, new)
    assert second.sha == new
    await updates.aclose()


async def test_symlink_out_of_the_checkout_is_not_extracted(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.commit(push=False)
    (upstream.work / "connections.d" / "passwd.yaml").symlink_to("/etc/passwd")
    git(upstream.work, "add", "-A")
    git(upstream.work, "commit", "--quiet", "-m", "sneaky")
    git(upstream.work, "push", "--quiet", "origin", "HEAD:main")
    src = source(upstream, tmp_path)

    with capture_logs() as logs:
        rev = await src.refresh()

    assert rev is not None
    assert not (rev.path / "passwd.yaml").exists()
    assert (rev.path / "a.yaml").exists()
    assert any(e["event"] == "git.unsafe_entries_skipped" for e in logs)


async def test_current_never_points_at_a_half_written_tree(
    upstream: Upstream, tmp_path: Path
) -> None:
    src = source(upstream, tmp_path)
    upstream.commit()
    await src.refresh()
    current = src.workdir / "current"
    stop = threading.Event()
    seen: list[str] = []
    problems: list[str] = []

    def reader() -> None:
        # What a manifests loader does: resolve the root once, read every file under it.
        while not stop.is_set():
            try:
                root = current.resolve(strict=True) / "connections.d"
            except FileNotFoundError:
                problems.append("no current")  # the switch must never leave a gap
                continue
            try:
                a, z = (root / "a.yaml").read_text(), (root / "z.yaml").read_text()
            except FileNotFoundError as exc:
                # Only a tree two switches old is pruned (KEEP_CHECKOUTS=2): a reader
                # starved for two whole refreshes could see this, never a torn tree.
                problems.append(f"pruned: {exc.filename}")
                continue
            if a != z:
                problems.append(f"torn tree: {a!r} vs {z!r}")
            seen.append(a)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(6):
            upstream.commit()
            assert await src.refresh() is not None
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    assert not [p for p in problems if not p.startswith("pruned")]
    assert len({*seen}) >= 2  # the reader really saw the switches
    assert current.is_symlink()


def test_ssh_command_quotes_key_and_pins_host_keys(tmp_path: Path) -> None:
    key = tmp_path / "deploy key"
    cmd = shlex.split(ssh_command(key, tmp_path / "known_hosts"))
    assert cmd[:3] == ["ssh", "-i", str(key)]
    assert "StrictHostKeyChecking=accept-new" in cmd
    assert "BatchMode=yes" in cmd
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in cmd


async def test_ssh_key_reaches_the_ssh_git_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in `ssh` on PATH records the argv git hands it (the process boundary is
    # real: git expands GIT_SSH_COMMAND through a shell), then fails like a refused host.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "argv"
    fake = bindir / "ssh"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {shlex.quote(str(record))}\nexit 255\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    key = tmp_path / "keys" / "id ed25519"
    src = GitSource(
        "ssh://git@git.example.invalid/org/manifests.git",
        workdir=tmp_path / "git",
        ssh_key=key,
    )

    with pytest.raises(SourceError, match="fetch failed"):
        await src.refresh()

    argv = record.read_text().splitlines()
    assert argv[:2] == ["-i", str(key)]
    assert "StrictHostKeyChecking=accept-new" in argv
    assert f"UserKnownHostsFile={tmp_path / 'git' / 'known_hosts'}" in argv
    assert "git@git.example.invalid" in argv


@pytest.mark.parametrize(
    ("url", "ref", "path"),
    [("--upload-pack=touch /tmp/x", "main", "c"), ("u", "-x", "c"), ("u", "main", "../etc")],
)
def test_hostile_arguments_are_refused(url: str, ref: str, path: str, tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        GitSource(url, ref, path, workdir=tmp_path)


async def test_workdir_problems_are_source_errors(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit()
    workdir = tmp_path / "not-a-dir"
    workdir.write_text("a file where the workdir should be\n")
    src = GitSource(str(upstream.bare), workdir=workdir)
    with pytest.raises(SourceError, match="workdir"):
        await src.refresh()
    assert src.failure_streak == 1


async def test_stable_path_follows_the_switch(upstream: Upstream, tmp_path: Path) -> None:
    src = source(upstream, tmp_path)
    upstream.commit()
    first = await src.refresh()
    upstream.commit()
    second = await src.refresh()
    assert first is not None and second is not None
    assert src.stable_path.resolve() == second.path
    assert n_of(src.stable_path) == "n: 2\n"


async def test_unchanged_files_are_shared_not_rewritten(upstream: Upstream, tmp_path: Path) -> None:
    src = source(upstream, tmp_path)
    keep = upstream.work / "connections.d" / "keep.yaml"
    upstream.commit(push=False)
    keep.write_text("unchanged: true\n")
    script = upstream.work / "connections.d" / "hook.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    git(upstream.work, "add", "-A")
    git(upstream.work, "commit", "--quiet", "-m", "more")
    git(upstream.work, "push", "--quiet", "origin", "HEAD:main")
    first = await src.refresh()
    upstream.commit()  # rewrites a.yaml and z.yaml only
    second = await src.refresh()
    assert first is not None and second is not None

    assert (second.path / "keep.yaml").stat().st_ino == (first.path / "keep.yaml").stat().st_ino
    assert (second.path / "a.yaml").stat().st_ino != (first.path / "a.yaml").stat().st_ino
    assert n_of(second.path) == "n: 2\n" and n_of(first.path) == "n: 1\n"
    assert os.access(second.path / "hook.sh", os.X_OK)
    # The first tree is pruned after two more switches; the shared file survives it.
    upstream.commit()
    third = await src.refresh()
    assert third is not None and not first.path.exists()
    assert (third.path / "keep.yaml").read_text() == "unchanged: true\n"


async def test_repository_variables_of_a_git_hook_do_not_leak_in(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As when chanops runs inside a pre-commit hook of another repository.
    other = tmp_path / "other"
    git(tmp_path, "init", "--quiet", str(other))
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    sha = upstream.commit()
    rev = await source(upstream, tmp_path).refresh()
    assert rev is not None and rev.sha == sha
    assert not list((other / ".git" / "refs").rglob("target"))


async def test_a_stuck_checkout_times_out_and_keeps_the_last_good(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = source(upstream, tmp_path, timeout=3)
    upstream.commit()
    good = await src.refresh()
    assert good is not None
    # A `git` first on PATH whose `cat-file` never answers (a hung disk, say).
    real = shutil.which("git")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "git"
    fake.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do [ "$a" = cat-file ] && exec sleep 60; done\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    upstream.commit()

    with pytest.raises(SourceError, match="writing the checkout timed out after 3s"):
        await src.refresh()

    assert src.current() == good
    assert n_of(good.path) == "n: 1\n"
    assert not list((src.workdir / "checkouts").glob(".tmp-*"))
