"""Replicas on one PostgreSQL store: one leader, failover, fencing, outages, bad input.

Real processes throughout: the emulator, `chanops run` replicas, the PostgreSQL server.
The quick forms run by default with a short lease (3 s, renewed every 0.5 s). With
`-m slow`: a SIGKILL failover within 15 s, twenty failovers under platform faults and a
30 s SIGSTOP, all with the default lease; a database outage, a restart of a private
PostgreSQL server, and sessions killed under load (a leader that cannot renew stops at
its deadline is also shown in process, by default: tests/ha/test_leadership.py)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from daemon.helpers import DaemonProcess, chanops_launcher, manifest, wait_until, write_atomic
from ha.helpers import QUICK_LEASE, Replicas, Sampler, by_name, stored
from support.emulator import EmulatorProcess
from support.postgres import private_server, terminate_backends

FAILOVER_BOUND = 15.0  # seconds from SIGKILL to the pending edit on the platform


def _patches(emu: EmulatorProcess) -> int:
    return emu.admin.stats().get("PATCH /api/v1/connections/{id}", 0)


@pytest.mark.parametrize(
    "lease",
    [
        pytest.param(QUICK_LEASE, id="quick"),
        # The bound with the default lease (10 s, renewed every 2 s).
        pytest.param([], id="default-lease", marks=pytest.mark.slow),
    ],
)
def test_one_leader_among_three_and_a_killed_leader_is_replaced(
    replicas: Replicas, emu: EmulatorProcess, lease: list[str]
) -> None:
    root = replicas.root
    write_atomic(root / "a.yaml", manifest("a", display="A one"))
    replicas.extra = lease
    sampler = Sampler(replicas)
    group = replicas.start(3)
    sampler.start()
    leader = replicas.leader()
    wait_until(lambda: by_name(emu, "A one"), what="the leader creates a")
    standbys = [d for d in group if d is not leader]
    for d in standbys:
        assert replicas.role(d) == "standby"
        assert d.http("/readyz").status_code == 200  # ready in both roles
        assert "chanops_leader 0.0" in d.http("/metrics").text
        # A standby's /status comes from the shared store: it sees the leader's record.
        wait_until(
            lambda d=d: (
                [c for c in d.http("/status").json()["connections"] if c["name"] == "a"]
                and d.http("/status").json()["leader"]["role"] == "standby"
            ),
            what="the standby's status",
        )
    assert "chanops_leader 1.0" in leader.http("/metrics").text

    killed_at = time.monotonic()
    leader.signal(signal.SIGKILL)
    write_atomic(root / "a.yaml", manifest("a", display="A two"))  # pending while leaderless
    wait_until(lambda: by_name(emu, "A two"), timeout=FAILOVER_BOUND, what="the edit applied")
    assert time.monotonic() - killed_at < FAILOVER_BOUND
    successor = replicas.leader(exclude=leader)
    assert successor in standbys
    # The status page follows the parts the new term composed: the edited connection.
    wait_until(
        lambda: "A two" in successor.http("/ui/connections/a").text,
        what="the successor's status page",
    )
    samples = sampler.stop()
    assert samples and max(samples) == 1, f"never two leaders at once: {samples}"
    assert len(emu.admin.connections()) == 1  # nothing doubled


@pytest.mark.parametrize(
    ("lease", "pause"),
    [
        pytest.param(QUICK_LEASE, 0.0, id="quick"),
        # The form: the default lease (10 s), SIGSTOP for 30 s.
        pytest.param([], 30.0, id="thirty-seconds", marks=pytest.mark.slow),
    ],
)
def test_a_paused_leader_wakes_up_fenced_and_follows(
    replicas: Replicas, emu: EmulatorProcess, lease: list[str], pause: float
) -> None:
    root = replicas.root
    write_atomic(root / "a.yaml", manifest("a", display="A one"))
    replicas.extra = lease
    replicas.start(2)
    old = replicas.leader()
    wait_until(lambda: by_name(emu, "A one"), what="a created")
    stopped_at = time.monotonic()
    old.signal(signal.SIGSTOP)
    try:
        new = replicas.leader(exclude=old, timeout=25)
        patches = _patches(emu)
        # The edit is seen by both: the new leader applies it, the paused one later.
        write_atomic(root / "a.yaml", manifest("a", display="A two"))
        wait_until(lambda: by_name(emu, "A two"), what="the new leader applies the edit")
        # Paused longer than a whole quick lease (3 s) after the takeover, and `pause`
        # seconds in all.
        time.sleep(max(3.5, stopped_at + pause - time.monotonic()))
        rows = stored(replicas.dsn)
        patches_before_wake = _patches(emu)
        assert patches_before_wake == patches + 1
        mark = old.mark()
    finally:
        old.signal(signal.SIGCONT)
    lost = old.wait_event(lambda e: e["event"] == "leader.lost", after=mark, timeout=10)
    assert lost["epoch"] == 1
    wait_until(lambda: replicas.role(old) == "standby", what="the old leader follows")
    # Whatever it had queued (the edit it saw on waking) was refused before any write.
    assert _patches(emu) == patches_before_wake
    assert stored(replicas.dsn) == rows
    written = [
        e
        for e in old.events()[mark:]
        if e["event"] in ("connection.updated", "connection.created", "connection.deleted")
    ]
    assert written == []
    assert replicas.role(new) == "leader"
    assert old.proc is not None and old.proc.poll() is None


@pytest.mark.slow
def test_a_database_outage_stops_writes_and_the_election_resumes(
    replicas: Replicas, emu: EmulatorProcess
) -> None:
    root = replicas.root
    for i in range(10):
        write_atomic(root / f"c{i}.yaml", manifest(f"c{i}", display=f"C{i} one"))
    replicas.extra = QUICK_LEASE
    group = replicas.start(2)
    leader = replicas.leader()
    wait_until(lambda: len(emu.admin.connections()) == 10, what="10 created", timeout=30)
    database = replicas.dsn.rsplit("/", 1)[1]
    mark = leader.mark()
    with psycopg.connect(replicas.dsn.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            assert terminate_backends(replicas.dsn) > 0
            # The leader cannot renew: it gives up before its lease ends on the server.
            lost = leader.wait_event(lambda e: e["event"] == "leader.lost", after=mark)
            assert lost["reason"] == "renew deadline passed"
            patches = _patches(emu)
            for i in range(5):  # edits during the outage wait for a leader
                write_atomic(root / f"c{i}.yaml", manifest(f"c{i}", display=f"C{i} two"))
            time.sleep(1.0)
            assert _patches(emu) == patches  # nobody writes without the lease
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    replicas.leader(timeout=20)
    wait_until(
        lambda: all(by_name(emu, f"C{i} two") for i in range(5)),
        what="the edits made during the outage",
        timeout=30,
    )
    names = sorted(c["name"] for c in emu.admin.connections())
    assert names == sorted([f"C{i} two" for i in range(5)] + [f"C{i} one" for i in range(5, 10)])
    for d in group:
        assert d.proc is not None and d.proc.poll() is None, "a replica exited"


@pytest.mark.slow
def test_a_restarted_server_stops_writes_and_the_election_resumes(
    tmp_path: Path, emu: EmulatorProcess
) -> None:
    """A server of the test's own is stopped and started again while manifests change."""
    import threading

    root = tmp_path / "connections.d"
    for i in range(10):
        write_atomic(root / f"c{i}.yaml", manifest(f"c{i}", display=f"C{i} r0"))
    with private_server() as server:
        group = Replicas(
            tmp_path, emu, server.dsn, root, extra=QUICK_LEASE, env={"SW_SECRET": "s3cr3t-ha-1"}
        )
        try:
            replicas = group.start(2)
            leader = group.leader()
            wait_until(lambda: len(emu.admin.connections()) == 10, what="10 created", timeout=30)
            done = threading.Event()
            last: dict[str, str] = {}

            def edit() -> None:  # the load: an edit every 0.2 s, before, during and after
                round_ = 0
                while not done.is_set():
                    round_ += 1
                    i = round_ % 10
                    last[f"c{i}"] = f"C{i} r{round_}"
                    write_atomic(root / f"c{i}.yaml", manifest(f"c{i}", display=last[f"c{i}"]))
                    time.sleep(0.2)

            editor = threading.Thread(target=edit, daemon=True)
            editor.start()
            try:
                time.sleep(2.0)
                mark = leader.mark()
                server.stop()
                # The leader cannot renew: it stops writing within its lease.
                leader.wait_event(lambda e: e["event"] == "leader.lost", after=mark, timeout=10)
                patches = _patches(emu)
                time.sleep(2.0)
                assert _patches(emu) == patches  # nobody writes without the lease
                server.start()
                group.leader(timeout=30)
                time.sleep(2.0)
            finally:
                done.set()
                editor.join(timeout=10)
            want = sorted({**{f"c{i}": f"C{i} r0" for i in range(10)}, **last}.values())
            wait_until(
                lambda: sorted(c["name"] for c in emu.admin.connections()) == want,
                timeout=60,
                what="every connection once, with its last edit",
            )
            for d in replicas:
                assert d.proc is not None and d.proc.poll() is None, "a replica exited"
        finally:
            group.kill_all()


def _run_once(tmp_path: Path, emu: EmulatorProcess, state: str) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "bad.d"
    write_atomic(root / "a.yaml", manifest("a"))
    return subprocess.run(
        [
            *chanops_launcher(),
            "run",
            "--manifests",
            str(root),
            "--platform",
            emu.url,
            "--token",
            emu.token,
            "--state",
            state,
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "SW_SECRET": "s3cr3t-ha-12345"},
    )


def _one_line_failure(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if '"daemon.failed"' in line]
    assert len(failed) == 1, result.stdout
    assert expected in failed[0], failed[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_bad_stores_are_one_clear_line_and_exit_1(
    tmp_path: Path, emu: EmulatorProcess, pg_dsn: str
) -> None:
    wrong = _run_once(tmp_path, emu, "postgresql://chanops:pw-secret-77@127.0.0.1:1/none")
    _one_line_failure(wrong, "state store postgresql://chanops:***@127.0.0.1:1/none: ")
    assert "pw-secret-77" not in wrong.stdout + wrong.stderr

    role = f"noperm_{pg_dsn.rsplit('_', 1)[1]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        denied = _run_once(tmp_path, emu, pg_dsn.replace("postgres@", f"{role}@", 1))
        _one_line_failure(denied, "permission denied for schema public")
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{role}"')

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (42)")
    newer = _run_once(tmp_path, emu, pg_dsn)
    _one_line_failure(newer, "has schema version 42, newer than this chanops understands")


@pytest.mark.parametrize(
    ("kills", "lease"),
    [
        pytest.param(2, QUICK_LEASE, id="quick"),
        # The full form: the default lease (10 s, renewed every 2 s) and 20 SIGKILLs.
        pytest.param(20, [], id="twenty", marks=pytest.mark.slow),
    ],
)
def test_failovers_under_faults_lose_and_double_nothing(
    tmp_path: Path, pg_dsn: str, kills: int, lease: list[str]
) -> None:
    """SIGKILL the leader `kills` times while error_rate=0.2 faults fail platform calls;
    each time a manifest edit is pending, and the next leader writes it."""
    from support.emulator import start_emulator

    with start_emulator(tmp_path / "faulty", time_scale=0.002, faults="error_rate=0.2") as emu:
        root = tmp_path / "connections.d"
        for i in range(5):
            write_atomic(root / f"c{i}.yaml", manifest(f"c{i}", display=f"C{i} r0"))
        group = Replicas(
            tmp_path, emu, pg_dsn, root, extra=lease, env={"SW_SECRET": "s3cr3t-ha-12345"}
        )
        try:
            group.start(3)
            sampler = Sampler(group)
            sampler.start()
            for round_ in range(1, kills + 1):
                leader = group.leader(timeout=30)
                killed_at = time.monotonic()
                leader.signal(signal.SIGKILL)
                target = f"c{round_ % 5}"
                display = f"C{round_ % 5} r{round_}"
                write_atomic(root / f"{target}.yaml", manifest(target, display=display))
                wait_until(lambda d=display: by_name(emu, d), timeout=30, what=display)
                assert time.monotonic() - killed_at < 30
                group.start(1)  # the killed one comes back as a standby
            samples = sampler.stop()
            assert max(samples) == 1, samples
            last = {f"c{i}": f"C{i} r0" for i in range(5)}
            for round_ in range(1, kills + 1):
                last[f"c{round_ % 5}"] = f"C{round_ % 5} r{round_}"
            # Every connection once (nothing doubled), each with its last edit (nothing lost).
            # (The test's own reads meet the faults too: one that gets through.)
            listed = wait_until(emu.admin.connections, what="a read of the platform")
            assert sorted(c["name"] for c in listed) == sorted(last.values())
        finally:
            group.kill_all()


@pytest.mark.slow
def test_connections_killed_under_load_lose_nothing_and_no_replica_exits(
    replicas: Replicas, emu: EmulatorProcess
) -> None:
    """pg_terminate_backend every 0.3 s while 30 connections are created and 10 edited."""
    import threading

    root = replicas.root
    for i in range(30):
        write_atomic(root / f"c{i}.yaml", manifest(f"c{i}", display=f"C{i} one"))
    replicas.extra = QUICK_LEASE
    group = replicas.start(2)
    done = threading.Event()
    killed: list[int] = []

    def terminate() -> None:
        while not done.is_set():
            killed.append(terminate_backends(replicas.dsn))
            time.sleep(0.3)

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    try:
        time.sleep(2.0)
        for i in range(10):
            write_atomic(root / f"c{i}.yaml", manifest(f"c{i}", display=f"C{i} two"))
            time.sleep(0.3)
        time.sleep(2.0)
    finally:
        done.set()
        killer.join(timeout=10)
    assert sum(killed) > 0
    replicas.leader(timeout=20)
    want = sorted([f"C{i} two" for i in range(10)] + [f"C{i} one" for i in range(10, 30)])
    wait_until(
        lambda: sorted(c["name"] for c in emu.admin.connections()) == want,
        timeout=60,
        what="every create and edit, each once",
    )
    for d in group:
        assert d.proc is not None and d.proc.poll() is None, "a replica exited"


def test_standbys_and_the_next_leader_show_the_leaders_event_history(
    replicas: Replicas, emu: EmulatorProcess
) -> None:
    """The event history is in the store: a standby's /status and page show the
    leader's events, and after a failover the new leader shows the previous term's."""
    write_atomic(replicas.root / "a.yaml", manifest("a", display="A one"))
    replicas.extra = QUICK_LEASE
    group = replicas.start(2)
    leader = replicas.leader()
    (standby,) = [d for d in group if d is not leader]
    wait_until(lambda: by_name(emu, "A one"), what="the leader creates a")

    def created(d: DaemonProcess) -> list[dict[str, Any]]:
        events = d.http("/status").json().get("events", [])
        return [e for e in events if (e["event"], e.get("connection")) == _CREATED_A]

    # The standby created nothing: what it shows comes from the leader, by the store.
    wait_until(lambda: created(standby), what="the leader's event on the standby's /status")
    assert replicas.role(standby) == "standby"
    page = standby.http("/ui/connections/a").text
    assert "connection.created" in page  # the connection's recent events
    overview = standby.http("/ui/").text
    assert "none recorded yet" not in overview.split('id="reconciles"')[1]  # the leader's
    with psycopg.connect(replicas.dsn, autocommit=True) as conn:
        rows = [r[0] for r in conn.execute("SELECT event FROM event_history").fetchall()]
    assert rows and not any("s3cr3t-ha-1" in r for r in rows)  # what /status shows

    leader.signal(signal.SIGKILL)
    successor = replicas.leader(exclude=leader)
    assert successor is standby
    # Its own term reconciles a converged connection (no create): the created event
    # it shows is the previous term's, read back from the store.
    wait_until(
        lambda: successor.http("/status").json().get("lastReconcile"),
        what="the new leader's first reconcile",
    )
    assert created(successor)
    assert "connection.created" in successor.http("/ui/connections/a").text
    assert len(emu.admin.connections()) == 1


_CREATED_A = ("connection.created", "a")
