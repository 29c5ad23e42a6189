"""`chanops run --git`: a local bare repository, the emulator and the daemon as real processes.

Every fetch after startup is caused by a push webhook: the daemons run with
`--git-interval 1h`, so a test that passes shows the webhook path works, not the poll.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from chanops.engine._planner import Observed, PlanOptions, make_plan, source_key
from chanops.engine.plan import ActionKind
from chanops.platform.models import Connection
from chanops.state.store import Record
from daemon.helpers import DaemonProcess, chanops_launcher, manifest, wait_until
from support.emulator import EmulatorProcess
from support.git import git

SECRET = "git-daemon-secret-4d1f0a"
HOOK_SECRET = "webhook-secret-for-tests"


class Remote:
    """A bare 'remote' and a working clone whose commits are pushed to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        git(root, "init", "--quiet", "--bare", "-b", "main", str(self.bare))
        git(self.bare, "config", "receive.denyDeleteCurrent", "ignore")  # a vanished ref
        git(root, "init", "--quiet", "-b", "main", str(self.work))
        self.root = self.work / "connections.d"
        self.root.mkdir()

    def write(self, name: str, text: str) -> None:
        (self.root / name).write_text(text, encoding="utf-8")

    def remove(self, name: str) -> None:
        (self.root / name).unlink()

    def commit(self, subject: str) -> str:
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", subject)
        self.push()
        return git(self.work, "rev-parse", "HEAD")

    def push(self) -> None:
        git(self.work, "push", "--quiet", "--force", str(self.bare), "HEAD:main")


def signed(body: bytes, secret: str = HOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": "push",
        "Content-Type": "application/json",
    }


def hook(d: DaemonProcess, headers: dict[str, str], body: bytes = b"{}") -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{d.port}/hooks/git", content=body, headers=headers, timeout=5
    )


def git_daemon(tmp_path: Path, emu: EmulatorProcess, remote: Remote, *extra: str) -> DaemonProcess:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(HOOK_SECRET + "\n", encoding="utf-8")
    d = DaemonProcess(
        tmp_path,
        manifests=tmp_path / "unused",
        platform=emu.url,
        token=emu.token,
        resync="1h",
        env={"SW_SECRET": SECRET},
        extra=[
            "--git",
            str(remote.bare),
            "--git-interval",
            "1h",
            "--webhook-secret-file",
            str(secret_file),
            *extra,
        ],
    )
    i = d.cmd.index("--manifests")
    del d.cmd[i : i + 2]  # the git source is the only root
    return d


@pytest.fixture
def daemons() -> Any:
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.kill()


def by_name(emu: EmulatorProcess, name: str) -> dict[str, Any] | None:
    return next((c for c in emu.admin.connections() if c["name"] == name), None)


def metric(d: DaemonProcess, name: str) -> float | None:
    for line in d.http("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_commits_webhooks_and_a_force_push_become_reconciles(
    tmp_path: Path, emu: EmulatorProcess, daemons: list[DaemonProcess]
) -> None:
    remote = Remote(tmp_path)
    remote.write("alpha.yaml", manifest("alpha"))
    sha1 = remote.commit("add alpha")
    d = git_daemon(tmp_path, emu, remote)
    daemons.append(d)
    d.start()

    # The first checkout is a full reconcile; its events carry the commit.
    created = d.wait_event(
        lambda e: e["event"] == "connection.created" and e.get("connection") == "alpha"
    )
    assert created["revision"] == sha1 and created["subject"] == "add alpha"
    assert by_name(emu, "alpha") is not None
    wait_until(lambda: d.http("/readyz").status_code == 200, what="/readyz 200")
    status = d.http("/status").json()
    assert status["git"]["revision"] == sha1 and status["git"]["healthy"] is True
    assert status["revision"] == sha1

    # A push is not fetched until a webhook says so (the interval is 1h)...
    remote.write("bravo.yaml", manifest("bravo"))
    sha2 = remote.commit("add bravo")
    mark = d.mark()
    assert hook(d, {"Content-Type": "application/json"}).status_code == 401
    assert hook(d, signed(b"{}", secret="wrong")).status_code == 401
    rejected = [e for e in d.events()[mark:] if e["event"] == "webhook.rejected"]
    assert [e["reason"] for e in rejected] == ["unsigned", "bad signature"]
    # ... and a signed delivery fetches at once: the new commit is a full reconcile.
    body = b'{"ref":"refs/heads/main"}'
    assert hook(d, signed(body), body).status_code == 202
    bravo = d.wait_event(
        lambda e: e["event"] == "connection.created" and e.get("connection") == "bravo",
        after=mark,
    )
    assert bravo["revision"] == sha2 and bravo["subject"] == "add bravo"
    started = next(
        e
        for e in d.events()[mark:]
        if e["event"] == "reconcile.started" and e["reconcile_id"] == bravo["reconcile_id"]
    )
    assert started["kind"] == "full" and started["revision"] == sha2
    # The rejected deliveries fetched nothing: one checkout since the mark, sha2.
    checked = [e for e in d.events()[mark:] if e["event"] == "git.checked_out"]
    assert [e["revision"] for e in checked] == [sha2]

    # A force-push to a commit that does not descend from the last one is followed:
    # bravo's file is gone in it, so bravo is deleted (the rest of the root is healthy).
    git(remote.work, "reset", "--quiet", "--hard", sha1)
    remote.write("alpha.yaml", manifest("alpha", display="Alpha DE"))
    sha3 = remote.commit("rewrite history: alpha only")
    mark = d.mark()
    gitlab = {"X-Gitlab-Token": HOOK_SECRET, "X-Gitlab-Event": "Push Hook"}
    assert hook(d, gitlab).status_code == 202
    deleted = d.wait_event(
        lambda e: e["event"] == "connection.deleted" and e.get("connection") == "bravo",
        after=mark,
        timeout=20,
    )
    assert deleted["revision"] == sha3
    assert deleted["subject"] == "rewrite history: alpha only"
    wait_until(
        lambda: emu.admin.connection(created["connection_id"])["name"] == "Alpha DE",
        what="alpha kept and renamed",
    )
    updated = d.wait_event(
        lambda e: e["event"] == "connection.updated" and e.get("connection") == "alpha",
        after=mark,
    )
    assert updated["revision"] == sha3
    assert metric(d, "chanops_git_fetch_failures_total") == 0.0

    assert d.stop(timeout=15) == 0
    assert SECRET not in d.output() and HOOK_SECRET not in d.output()
    events = d.events()
    first = next(i for i, e in enumerate(events) if e["event"] == "reconcile.started")
    assert events[first - 1]["event"] == "git.checked_out"
    for event in events[first:]:
        # Every event from the first reconcile on names the commit in use and its subject.
        assert event.get("revision") in (sha1, sha2, sha3), event
        assert event.get("subject"), event


def test_a_broken_file_in_a_new_commit_freezes_what_it_defined_in_the_last(
    tmp_path: Path, emu: EmulatorProcess, daemons: list[DaemonProcess]
) -> None:
    remote = Remote(tmp_path)
    remote.write("a.yaml", manifest("alpha"))
    remote.write("b.yaml", manifest("bravo"))
    remote.commit("alpha and bravo")
    d = git_daemon(tmp_path, emu, remote)
    daemons.append(d)
    d.start()
    wait_until(lambda: by_name(emu, "alpha") and by_name(emu, "bravo"), what="both created")
    alpha = by_name(emu, "alpha")
    assert alpha is not None

    # Commit 2: a.yaml is broken. The checkout is a new directory, yet the file is the
    # same manifest file: alpha freezes (untouched), it is not taken as removed.
    remote.write("a.yaml", "apiVersion: chanops/v1\nkind: [broken\n")
    sha2 = remote.commit("break a.yaml")
    mark = d.mark()
    assert hook(d, signed(b"{}"), b"{}").status_code == 202
    invalid = d.wait_event(
        lambda e: e["event"] == "manifest.invalid" and e["file"].endswith("/a.yaml"),
        after=mark,
    )
    assert invalid["frozen"] == ["alpha"] and invalid["revision"] == sha2
    done = d.wait_event(
        lambda e: e["event"] == "reconcile.completed" and e.get("revision") == sha2, after=mark
    )
    events = d.events()[mark:]
    blocked = [e for e in events if e["event"] == "guard.blocked"]
    assert [(e.get("connection"), e["rule"]) for e in blocked] == [("alpha", "frozen")]
    assert not [
        e
        for e in events
        if e["event"].startswith("connection.") and e["event"] != "connection.condition"
    ]
    assert done["actions"] == 0
    still = emu.admin.connection(alpha["id"])
    assert still["status"] == "active" and still["name"] == alpha["name"]
    status = {c["name"]: c for c in d.http("/status").json()["connections"]}
    assert status["alpha"]["frozen"] is True and status["bravo"]["frozen"] is False

    # Commit 3: a.yaml removed, the rest healthy: now alpha is a delete.
    remote.remove("a.yaml")
    sha3 = remote.commit("remove alpha")
    mark = d.mark()
    assert hook(d, signed(b"{}"), b"{}").status_code == 202
    deleted = d.wait_event(
        lambda e: e["event"] == "connection.deleted" and e.get("connection") == "alpha",
        after=mark,
        timeout=20,
    )
    assert deleted["revision"] == sha3
    assert by_name(emu, "bravo") is not None
    assert d.stop(timeout=15) == 0


def test_a_vanished_ref_keeps_the_last_checkout_and_readyz_reports_it(
    tmp_path: Path, emu: EmulatorProcess, daemons: list[DaemonProcess]
) -> None:
    remote = Remote(tmp_path)
    remote.write("a.yaml", manifest("alpha"))
    sha1 = remote.commit("add alpha")
    d = git_daemon(tmp_path, emu, remote)
    daemons.append(d)
    d.start()
    wait_until(lambda: by_name(emu, "alpha"), what="alpha created")
    wait_until(lambda: d.http("/readyz").status_code == 200, what="/readyz 200")

    git(remote.bare, "update-ref", "-d", "refs/heads/main")
    mark = d.mark()
    for n in (1, 2, 3):
        assert hook(d, signed(b"{}"), b"{}").status_code == 202
        wait_until(
            lambda n=n: metric(d, "chanops_git_fetch_failures_total") == float(n),  # type: ignore[misc]
            what=f"{n} failed fetches",
        )
        ready = d.http("/readyz")
        assert ready.status_code == (503 if n >= 3 else 200), ready.text
    reasons = d.http("/readyz").json()["reasons"]
    assert metric(d, "chanops_ready") == 0.0
    assert any("git fetch failed 3 times in a row" in r for r in reasons), reasons
    events = d.events()[mark:]
    failed = [e for e in events if e["event"] == "git.fetch_failed"]
    assert len(failed) == 1 and failed[0]["revision"] == sha1  # once per streak
    # The last good checkout stays: nothing was reconciled away, alpha is there.
    assert not [e for e in events if e["event"].startswith("connection.")]
    assert by_name(emu, "alpha") is not None
    assert d.http("/status").json()["git"]["failureStreak"] == 3

    # The ref comes back: recovered, ready again.
    remote.push()
    mark = d.mark()
    assert hook(d, signed(b"{}"), b"{}").status_code == 202
    recovered = d.wait_event(lambda e: e["event"] == "git.fetch_recovered", after=mark)
    assert recovered["failures"] == 3
    wait_until(lambda: d.http("/readyz").status_code == 200, what="/readyz 200 again")
    assert d.stop(timeout=15) == 0


def test_a_first_start_with_the_remote_down_waits_and_deletes_nothing(
    tmp_path: Path, emu: EmulatorProcess, daemons: list[DaemonProcess]
) -> None:
    class Pending(Remote):
        def __init__(self, root: Path) -> None:
            self.bare = root / "remote.git"  # not there yet

    d = git_daemon(tmp_path, emu, Pending(tmp_path))
    daemons.append(d)
    d.start(wait_reconciled=False)
    failed = d.wait_event(lambda e: e["event"] == "git.fetch_failed")
    assert failed["revision"] is None
    ready = d.http("/readyz")
    assert ready.status_code == 503 and "no git checkout yet" in ready.json()["reasons"]
    assert not [e for e in d.events() if e["event"].startswith("reconcile.")]

    remote = Remote(tmp_path)
    remote.write("a.yaml", manifest("alpha"))
    sha = remote.commit("add alpha")
    assert hook(d, signed(b"{}"), b"{}").status_code == 202
    created = d.wait_event(
        lambda e: e["event"] == "connection.created" and e.get("connection") == "alpha"
    )
    assert created["revision"] == sha
    started = [e for e in d.events() if e["event"] == "reconcile.started"]
    assert [e["reason"] for e in started] == ["startup"]  # one reconcile for the checkout
    wait_until(lambda: d.http("/readyz").status_code == 200, what="/readyz 200")
    assert d.stop(timeout=15) == 0


def test_once_fetches_and_reconciles_once(tmp_path: Path, emu: EmulatorProcess) -> None:
    remote = Remote(tmp_path)
    remote.write("a.yaml", manifest("alpha"))
    remote.commit("add alpha")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    env["SW_SECRET"] = SECRET
    base = [
        *chanops_launcher(),
        "run",
        "--git",
        str(remote.bare),
        "--platform",
        emu.url,
        "--token",
        emu.token,
        "--state",
        str(tmp_path / "state" / "state.db"),
        "--log-format",
        "json",
        "--once",
    ]
    ok = subprocess.run(base, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert by_name(emu, "alpha") is not None
    assert (tmp_path / "state" / "git" / "current").is_symlink()  # beside the state store

    missing = subprocess.run(
        [*base, "--git-ref", "nope"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "nope" in missing.stdout and "Traceback" not in missing.stdout + missing.stderr

    no_secret = subprocess.run(
        [*base[:-1], "--listen", "127.0.0.1:0", "--webhook-secret-file", str(tmp_path / "x")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_secret.returncode == 1
    assert "webhook secret file" in no_secret.stdout, no_secret.stdout + no_secret.stderr


def test_the_planner_compares_files_relative_to_the_root() -> None:
    """Pure: a file failing under commit 2's checkout freezes what commit 1's defined."""
    assert (
        source_key("/w/checkouts/2/connections.d/a.yaml", "/w/checkouts/2/connections.d")
        == "a.yaml"
    )
    assert source_key("connections.d/team/b.yaml", "connections.d") == "team/b.yaml"
    assert source_key("a.yaml", "connections.d") == "a.yaml"  # a key already
    assert source_key("/elsewhere/a.yaml", "/w/connections.d") == "/elsewhere/a.yaml"
    conn = Connection(id=7, name="alpha", driver="shopware6", status="active", version=1)
    root = "/w/checkouts/2/connections.d"
    for stored in ("a.yaml", "/w/checkouts/2/connections.d/a.yaml"):  # key, older form
        record = Record(name="alpha", driver="shopware6", connection_id=7, source_file=stored)
        plan = make_plan(
            {},
            Observed((conn,)),
            {"alpha": record},
            PlanOptions(failed_files=frozenset({f"{root}/a.yaml"}), root=root),
        )
        assert not [a for a in plan.actions if a.kind is ActionKind.DELETE]
        assert [(b.name, b.rule) for b in plan.blocked] == [("alpha", "frozen")]


async def test_the_engine_stores_files_relative_to_the_root_and_migrates_old_paths(
    tmp_path: Path,
) -> None:
    """In-process engine (fake platform): what the store keeps survives a moved root."""
    from chanops.engine.reconciler import EngineOptions, Reconciler
    from chanops.state.store import StateStore
    from engine.fake_platform import FakePlatform
    from engine.helpers import ENV, load_result
    from engine.helpers import manifest as engine_manifest

    def checkout(n: int, *, broken: bool = False) -> Any:
        root = f"/w/checkouts/{n}/connections.d"
        alpha = engine_manifest("alpha", file=f"{root}/a.yaml")
        bravo = engine_manifest("bravo", file=f"{root}/team/b.yaml")
        failed = [f"{root}/a.yaml"] if broken else []
        return load_result([alpha, bravo], failed=failed, root=root)

    store = StateStore.open(tmp_path / "state.db")
    try:
        rec = Reconciler(
            client=FakePlatform(), store=store, options=EngineOptions(environ=ENV, job_timeout=1)
        )
        await rec.reconcile(checkout(1))
        assert {r.name: r.source_file for r in store.records().values()} == {
            "alpha": "a.yaml",
            "bravo": "team/b.yaml",
        }
        # An older store held the path as discovered: the next reconcile rewrites it.
        old = store.get("bravo")
        assert old is not None
        store.put(replace(old, source_file="/w/checkouts/1/connections.d/team/b.yaml"))
        result = await rec.reconcile(checkout(2))
        assert result.converged and not result.outcomes
        assert store.get("bravo").source_file == "team/b.yaml"  # type: ignore[union-attr]
        # Commit 3 breaks a.yaml: alpha freezes although the root moved again.
        result = await rec.reconcile(checkout(3, broken=True))
        assert [(b.name, b.rule) for b in result.blocked] == [("alpha", "frozen")]
        assert not result.outcomes
    finally:
        store.close()
