"""`chanops run` end to end: real emulator and daemon subprocesses on free loopback ports."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.helpers import (
    REQUIRED_FIELDS,
    DaemonProcess,
    chanops_launcher,
    manifest,
    wait_until,
    write_atomic,
)
from support.emulator import EmulatorProcess

SECRET_A = "s3cr3t-alpha-7f1e9c"
SECRET_B = "s3cr3t-bravo-22aa0d"


def by_name(emu: EmulatorProcess, name: str) -> dict[str, Any] | None:
    for c in emu.admin.connections():
        if c["name"] == name:
            return c
    return None


def assert_log_is_clean(d: DaemonProcess, secrets: list[str]) -> None:
    """Every stdout line is one JSON object with the required fields; no secret anywhere."""
    lines = d.lines()
    assert lines
    for line in lines:
        event = json.loads(line)  # raises on any non-JSON line
        assert isinstance(event, dict), line
        for key in REQUIRED_FIELDS:
            assert key in event, f"{key} missing in {line}"
        assert event["timestamp"].endswith("Z"), line
    full = d.output()
    for secret in secrets:
        assert secret not in full, "a secret value reached the log"


def test_daemon_follows_the_files(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    root = tmp_path / "connections.d"
    write_atomic(root / "alpha.yaml", manifest("alpha", secret_env="SECRET_A", sync="1s"))
    d = make_daemon(
        emu,
        root,
        resync="1s",
        env={"SECRET_A": SECRET_A, "SECRET_B": SECRET_B},
        extra=["--min-sync-interval", "1s"],  # the operator's floor, lowered for the test
    ).start()

    # Startup: the existing file became a connection; the daemon is ready.
    alpha = wait_until(lambda: by_name(emu, "alpha"), what="alpha created")
    assert alpha["status"] == "active"
    assert d.http("/healthz").status_code == 200
    wait_until(lambda: d.http("/readyz").status_code == 200, what="/readyz 200")

    # A new file becomes a connection.
    mark = d.mark()
    write_atomic(root / "team" / "bravo.yml", manifest("bravo", secret_env="SECRET_B"))
    bravo = wait_until(lambda: by_name(emu, "bravo"), what="bravo created")
    created = d.wait_event(
        lambda e: e["event"] == "connection.created" and e.get("connection") == "bravo",
        after=mark,
    )
    assert created["connection_id"] == bravo["id"]
    assert created["reconcile_id"]

    # Hidden, editor-temp and non-YAML files wake nothing.
    mark = d.mark()
    (root / ".hidden.yaml").write_text("not: [valid", encoding="utf-8")
    (root / "alpha.yaml~").write_text("garbage", encoding="utf-8")
    (root / "notes.txt").write_text("hello", encoding="utf-8")

    # An edit becomes an update of that connection only (a partial reconcile).
    write_atomic(
        root / "team" / "bravo.yml", manifest("bravo", display="Bravo DE", secret_env="SECRET_B")
    )
    wait_until(lambda: _named(emu, bravo["id"], "Bravo DE"), what="bravo renamed")
    updated = d.wait_event(
        lambda e: e["event"] == "connection.updated" and e.get("connection") == "bravo",
        after=mark,
    )
    started = [
        e
        for e in d.events()[mark:]
        if e["event"] == "reconcile.started" and e["reconcile_id"] == updated["reconcile_id"]
    ]
    assert started and started[0]["kind"] == "partial"
    assert not any(
        e["event"] == "manifest.invalid" and ".hidden" in e.get("file", "") for e in d.events()
    )

    # A scheduled sync (interval 1s) fires and is followed to its end.
    done = d.wait_event(
        lambda e: e["event"] == "sync.completed" and e.get("connection") == "alpha",
        timeout=20,
    )
    assert done["duration_ms"] >= 0 and done["job_id"]

    _drift_is_healed_and_sighup_reconciles(d, emu, alpha)
    _a_broken_file_freezes_and_status_shows_it(d, emu, root, bravo)


def _drift_is_healed_and_sighup_reconciles(
    d: DaemonProcess, emu: EmulatorProcess, alpha: dict[str, Any]
) -> None:
    # A UI-side disable is healed at the next resync, with the drift logged.
    mark = d.mark()
    disabled = emu.admin.post("/api/v1/connections/disable", json={"ids": [alpha["id"]]})
    assert "inactive" in json.dumps(disabled)
    drift = d.wait_event(
        lambda e: e["event"] == "drift.detected" and e.get("connection") == "alpha",
        after=mark,
        timeout=20,
    )
    assert drift["changes"]
    wait_until(
        lambda: emu.admin.connection(alpha["id"])["status"] == "active", what="alpha re-enabled"
    )

    # SIGHUP reconciles now.
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_event(
        lambda e: e["event"] == "reconcile.started" and e.get("reason") == "SIGHUP", after=mark
    )


def _a_broken_file_freezes_and_status_shows_it(
    d: DaemonProcess, emu: EmulatorProcess, root: Path, bravo: dict[str, Any]
) -> None:
    # A broken file freezes its connection and logs manifest.invalid; the rest proceed.
    mark = d.mark()
    (root / "team" / "bravo.yml").write_text("apiVersion: chanops/v1\nkind: [broken\n", "utf-8")
    invalid = d.wait_event(
        lambda e: e["event"] == "manifest.invalid" and "bravo.yml" in e.get("file", ""),
        after=mark,
    )
    assert invalid["line"] >= 1 and invalid["error"]
    # Two full resyncs later bravo is still there, untouched.
    mark = d.mark()
    for _ in range(2):
        d.wait_event(
            lambda e: e["event"] == "reconcile.completed" and e.get("kind") == "full",
            after=mark,
            timeout=10,
        )
        mark = d.mark()
    frozen = emu.admin.connection(bravo["id"])
    assert frozen["status"] == "active" and frozen["name"] == "Bravo DE"

    # Endpoints: /status shows desired and observed state, /metrics counts.
    status_text = d.http("/status").text
    assert SECRET_A not in status_text and SECRET_B not in status_text
    status = d.http("/status").json()
    names = {c["name"]: c for c in status["connections"]}
    assert names["alpha"]["observed"]["status"] == "active"
    assert names["alpha"]["nextSync"] is not None
    assert names["bravo"]["frozen"] is True
    assert status["manifestErrors"]
    metrics = d.http("/metrics").text
    assert 'chanops_reconciles_total{kind="full",outcome="success"}' in metrics
    assert "chanops_api_requests_total" in metrics
    assert 'chanops_sync_jobs_total{outcome="completed"}' in metrics
    assert "chanops_manifest_errors 1.0" in metrics

    # A removed file disables and deletes its connection (the root is otherwise healthy).
    (root / "team" / "bravo.yml").write_text(
        manifest("bravo", display="Bravo DE", secret_env="SECRET_B"), "utf-8"
    )
    d.wait_event(
        lambda e: e["event"] == "reconcile.completed",
        after=d.mark(),
    )
    mark = d.mark()
    (root / "team" / "bravo.yml").unlink()
    d.wait_event(
        lambda e: e["event"] == "connection.deleted" and e.get("connection") == "bravo",
        after=mark,
        timeout=20,
    )
    wait_until(
        lambda: emu.admin.request("GET", f"/api/v1/connections/{bravo['id']}").status_code == 404,
        what="bravo gone from the platform",
    )
    assert any(
        e["event"] == "connection.disabled" and e.get("connection") == "bravo"
        for e in d.events()[mark:]
    )

    # SIGTERM: clean stop, exit 0, within the shutdown timeout.
    assert d.stop(timeout=15) == 0
    assert d.events()[-1]["event"] == "daemon.stopped"
    assert_log_is_clean(d, [SECRET_A, SECRET_B])


def _named(emu: EmulatorProcess, cid: int, name: str) -> bool:
    return bool(emu.admin.connection(cid)["name"] == name)


def test_second_daemon_on_the_same_state_exits(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    root = tmp_path / "m"
    write_atomic(root / "a.yaml", manifest("a", secret_env="SECRET_A"))
    first = make_daemon(emu, root, env={"SECRET_A": SECRET_A}).start()
    assert first.proc is not None
    second = subprocess.run(
        [*first.cmd], env=first.env, capture_output=True, timeout=30, check=False
    )
    assert second.returncode == 1
    out = second.stdout.decode() + second.stderr.decode()
    assert f"locked by process {first.proc.pid}" in out
    event = json.loads(second.stdout.decode().strip().splitlines()[-1])
    assert event["event"] == "daemon.failed"
    assert first.proc.poll() is None  # the first one is unaffected

    # A one-file edit reads that connection by id: no listing of the whole platform.
    emu.admin.reset_stats()
    mark = first.mark()
    write_atomic(root / "a.yaml", manifest("a", display="A two", secret_env="SECRET_A"))
    first.wait_event(
        lambda e: e["event"] == "connection.updated" and e.get("connection") == "a", after=mark
    )
    stats = emu.admin.stats()
    assert stats.get("GET /api/v1/connections", 0) == 0, stats
    assert stats.get("PATCH /api/v1/connections/{id}", 0) == 1, stats

    # A burst of 40 new files is coalesced into very few reconciles.
    mark = first.mark()
    for i in range(40):
        write_atomic(root / "burst" / f"b{i:02}.yaml", manifest(f"b{i:02}", secret_env="SECRET_A"))
    wait_until(
        lambda: sum(1 for c in emu.admin.connections() if c["name"].startswith("b")) == 40,
        what="40 connections created",
        timeout=30,
    )
    runs = [e for e in first.events()[mark:] if e["event"] == "reconcile.started"]
    assert 1 <= len(runs) <= 5, [r.get("connections") for r in runs]

    # A connection that cannot be applied is retried with its own growing backoff,
    # visible in /status, while the others are untouched.
    mark = first.mark()
    write_atomic(root / "broken-secret.yaml", manifest("nosecret", secret_env="NOT_SET_ANYWHERE"))
    delays = []
    for _ in range(2):
        requeued = first.wait_event(
            lambda e: e["event"] == "connection.requeued" and e.get("connection") == "nosecret",
            after=mark,
        )
        delays.append(requeued["retry_in_s"])
        mark = first.events().index(requeued) + 1
    assert delays == [1.0, 2.0]
    entry = next(c for c in first.http("/status").json()["connections"] if c["name"] == "nosecret")
    assert entry["backoff"]["failures"] >= 2 and "NOT_SET_ANYWHERE" in entry["backoff"]["error"]
    assert first.stop() == 0


def test_symlink_swapped_root_is_followed(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    """git-sync publishes each checkout by renaming a new symlink over the root."""
    import os

    rev1, rev2 = tmp_path / "worktrees" / "rev1", tmp_path / "worktrees" / "rev2"
    write_atomic(rev1 / "a.yaml", manifest("a", secret_env="SECRET_A"))
    write_atomic(rev2 / "a.yaml", manifest("a", display="From rev2", secret_env="SECRET_A"))
    root = tmp_path / "sync" / "current"
    root.parent.mkdir()
    root.symlink_to(rev1)
    d = make_daemon(emu, root, env={"SECRET_A": SECRET_A}).start()
    a = wait_until(lambda: by_name(emu, "a"), what="a created")
    mark = d.mark()
    tmp_link = root.parent / ".current.tmp"
    tmp_link.symlink_to(rev2)
    os.replace(tmp_link, root)
    d.wait_event(lambda e: e["event"] == "manifests.root_changed", after=mark)
    wait_until(lambda: _named(emu, a["id"], "From rev2"), what="rev2 applied")
    # Edits inside the new checkout are watched too.
    mark = d.mark()
    write_atomic(rev2 / "a.yaml", manifest("a", display="Rev2 edit", secret_env="SECRET_A"))
    wait_until(lambda: _named(emu, a["id"], "Rev2 edit"), what="edit in rev2 applied")
    assert d.stop() == 0


def test_platform_outage_is_survived(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    outage_s = 4.0  # the quick form of the 20 s outage (same code path: resync during it)
    _outage(tmp_path, emu, make_daemon, outage_s)


@pytest.mark.slow
def test_platform_outage_20s_is_survived(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    _outage(tmp_path, emu, make_daemon, 20.0)


def _outage(
    tmp_path: Path,
    emu: EmulatorProcess,
    make_daemon: Callable[..., DaemonProcess],
    outage_s: float,
) -> None:
    import time

    root = tmp_path / "m"
    write_atomic(root / "a.yaml", manifest("a", secret_env="SECRET_A"))
    d = make_daemon(emu, root, resync="1s", env={"SECRET_A": SECRET_A}).start()
    a = wait_until(lambda: by_name(emu, "a"), what="a created")
    mark = d.mark()
    emu.stop()
    stopped_at = time.monotonic()
    d.wait_event(lambda e: e["event"] == "platform.unreachable", after=mark, timeout=outage_s + 30)
    # An edit during the outage is not lost.
    write_atomic(root / "a.yaml", manifest("a", display="After outage", secret_env="SECRET_A"))
    remaining = outage_s - (time.monotonic() - stopped_at)
    if remaining > 0:
        time.sleep(remaining)  # the outage itself: the emulator is down for outage_s
    assert d.proc is not None and d.proc.poll() is None, "the daemon must keep running"
    emu.start()
    d.wait_event(lambda e: e["event"] == "platform.reachable", after=mark, timeout=60)
    wait_until(lambda: _named(emu, a["id"], "After outage"), timeout=30, what="edit applied")
    ready = wait_until(lambda: d.http("/readyz").status_code == 200, what="ready again")
    assert ready
    assert d.stop() == 0
    assert_log_is_clean(d, [SECRET_A])


def test_once_exit_codes(tmp_path: Path, emu: EmulatorProcess) -> None:
    def once(root: Path, state: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [
                *chanops_launcher(),
                "run",
                "--once",
                "--manifests",
                str(root),
                "--platform",
                emu.url,
                "--token",
                emu.token,
                "--state",
                str(tmp_path / state),
                "--log-format",
                "json",
            ],
            env={"SECRET_A": SECRET_A, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=60,
            check=False,
        )

    ok = tmp_path / "ok"
    write_atomic(ok / "a.yaml", manifest("a", secret_env="SECRET_A"))
    # Waiting on a person (Amazon's OAuth) is not a failure.
    write_atomic(ok / "amz.yaml", manifest("amz", driver="amazon"))
    done = once(ok, "ok.db")
    assert done.returncode == 0, done.stdout.decode()[-3000:]
    assert by_name(emu, "a") is not None
    events = [json.loads(line) for line in done.stdout.decode().splitlines() if line]
    assert any(e["event"] == "reconcile.completed" and e["converged"] for e in events)

    bad = tmp_path / "bad"
    # The emulator rejects this secret-less create (credentials checked on create).
    write_atomic(bad / "b.yaml", manifest("b", secret_env="UNSET_SECRET_VARIABLE"))
    failed = once(bad, "bad.db")
    assert failed.returncode == 1, failed.stdout.decode()[-3000:]
    assert SECRET_A not in done.stdout.decode() + done.stderr.decode()


def test_run_with_no_flags_uses_connections_d_and_the_local_platform(tmp_path: Path) -> None:
    """The README's first command: `chanops run` in a directory with connections.d/."""
    write_atomic(tmp_path / "connections.d" / "a.yaml", manifest("a", secret_env="SECRET_A"))
    d = DaemonProcess(tmp_path, manifests=tmp_path / "connections.d", platform="", token="")
    d.cmd = [*chanops_launcher(), "run", "--listen", "127.0.0.1:0", "--log-format", "json"]
    d.env["SECRET_A"] = SECRET_A
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)  # Popen inherits the cwd
        d.start(wait_reconciled=False)
    try:
        local = d.wait_event(lambda e: e["event"] == "platform.local")
        assert local["level"] == "warning"
        created = d.wait_event(
            lambda e: e["event"] == "connection.created" and e.get("connection") == "a"
        )
        status = wait_until(
            lambda: d.http("/status").json()["connections"][0]["observed"], what="observed"
        )
        assert status["id"] == created["connection_id"] and status["status"] == "active"
        assert (tmp_path / ".chanops" / "state.db").exists()
    finally:
        assert d.stop() == 0


def test_sigterm_lets_the_reconcile_in_flight_finish(tmp_path: Path) -> None:
    """SIGTERM mid-reconcile: the writes in flight complete and are recorded; exit 0."""
    from support.emulator import start_emulator

    root = tmp_path / "m"
    for n in ("a", "b", "c"):
        write_atomic(root / f"{n}.yaml", manifest(n, secret_env="SECRET_A"))
    with start_emulator(tmp_path / "emu", faults="latency=500ms") as emu:
        d = DaemonProcess(
            tmp_path, manifests=root, platform=emu.url, token=emu.token, env={"SECRET_A": SECRET_A}
        )
        d.start(wait_reconciled=False)
        try:
            d.wait_event(lambda e: e["event"] == "reconcile.started")
            d.signal(signal.SIGTERM)
            assert d.proc is not None
            assert d.proc.wait(timeout=20) == 0
        finally:
            d.kill()
        events = [e["event"] for e in d.events()]
        assert events.index("daemon.stopping") < events.index("reconcile.completed")
        assert events[-1] == "daemon.stopped"
        assert events.count("connection.created") == 3
        # Everything was recorded: a fresh reconcile on the same state changes nothing.
        again = subprocess.run(
            [*d.cmd, "--once"], env=d.env, capture_output=True, timeout=60, check=False
        )
        assert again.returncode == 0, again.stdout.decode()[-2000:]
        assert b"connection.created" not in again.stdout
        assert sorted(c["name"] for c in emu.admin.connections()) == ["a", "b", "c"]


def test_deletes_wait_for_a_healthy_root(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    """The unhealthy-root guard: a deleted file deletes only while the rest of the root loads."""
    import os

    root = tmp_path / "m"
    for n in ("a", "b", "c"):
        write_atomic(root / f"{n}.yaml", manifest(n, secret_env="SECRET_A"))
    d = make_daemon(emu, root, env={"SECRET_A": SECRET_A}).start()
    wait_until(lambda: len(emu.admin.connections()) == 3, what="3 connections")
    ids = {c["name"]: c["id"] for c in emu.admin.connections()}

    # A manifest replaced by a directory is broken, not removed: a is frozen.
    mark = d.mark()
    (root / "a.yaml").unlink()
    (root / "a.yaml").mkdir()
    invalid = d.wait_event(lambda e: e["event"] == "manifest.invalid", after=mark)
    assert os.path.realpath(invalid["file"]) == os.path.realpath(root / "a.yaml")
    assert invalid["frozen"] == ["a"]

    # While that file is broken, deleting b's file deletes nothing.
    mark = d.mark()
    (root / "b.yaml").unlink()
    blocked = d.wait_event(
        lambda e: e["event"] == "guard.blocked" and e.get("rule") == "unhealthy-root", after=mark
    )
    # One event per connection, from the planner, as `plan` reports it.
    assert blocked["connection"] == "b" and blocked["action"] == "delete"
    d.wait_event(lambda e: e["event"] == "reconcile.completed", after=mark)
    stats = emu.admin.stats()
    assert stats.get("DELETE /api/v1/connections/{id}", 0) == 0, stats
    assert stats.get("POST /api/v1/connections/disable", 0) == 0, stats

    # Once the root loads cleanly again, the deletion of b goes ahead (a is kept).
    mark = d.mark()
    (root / "a.yaml").rmdir()
    write_atomic(root / "a.yaml", manifest("a", secret_env="SECRET_A"))
    d.wait_event(
        lambda e: e["event"] == "connection.deleted" and e.get("connection") == "b",
        after=mark,
        timeout=20,
    )
    assert emu.admin.connection(ids["a"])["status"] == "active"
    assert d.stop() == 0
