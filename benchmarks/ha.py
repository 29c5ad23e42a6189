"""Replicas on PostgreSQL (issue 17): failover time, and steady state against SQLite.

Whole processes: `chanops emulator`, `chanops run` replicas, the PostgreSQL server of
CHANOPS_TEST_POSTGRES_DSN (default 127.0.0.1:5432, a fresh database per run).

failover: three replicas with the default lease (10 s, renewed every 2 s) on 20
connections. Each round SIGKILLs the leader, renames a connection in its manifest at
once, and measures until that name is on the platform (the pending edit written by the
next leader); the killed replica comes back as a standby. Goal: median < 12 s.

    .venv/bin/python benchmarks/ha.py failover --kills 10

steady: one daemon converges 10,000 connections, then `--runs` steady resyncs (SIGHUP,
each one's `duration_ms` and platform writes, which must be 0; the median); on SQLite,
then on PostgreSQL. For PostgreSQL also the store's round trips per resync (transactions
in its database, from pg_stat_database). Goal: PostgreSQL within 1.5x of SQLite.

    .venv/bin/python benchmarks/ha.py steady --connections 10000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import psycopg

from daemon.helpers import DaemonProcess, manifest, wait_until, write_atomic
from ha.helpers import Replicas
from reliability.helpers import SECRET, SECRET_ENV, start_daemon, write_manifests, writes
from support.emulator import EmulatorProcess
from support.postgres import fresh_database


def failover(kills: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name, fresh_database("chanops_bench") as dsn:
        tmp = Path(tmp_name)
        root = tmp / "connections.d"
        for i in range(20):
            write_atomic(root / f"c{i}.yaml", manifest(f"c{i}", display=f"C{i} r0"))
        emu = EmulatorProcess(tmp / "emu", time_scale=0.002)
        emu.start()
        group = Replicas(tmp, emu, dsn, root, env={"SW_SECRET": SECRET})
        seconds: list[float] = []
        try:
            group.start(3)
            wait_until(lambda: len(emu.admin.connections()) == 20, timeout=60, what="converged")
            for n in range(1, kills + 1):
                leader = group.leader(timeout=60)
                target = f"c{n % 20}"
                display = f"C{n % 20} r{n}"
                killed = time.monotonic()
                leader.signal(signal.SIGKILL)
                write_atomic(root / f"{target}.yaml", manifest(target, display=display))
                wait_until(lambda d=display: _shown(emu, d), timeout=60, what=display)
                seconds.append(time.monotonic() - killed)
                leader.kill()
                group.start(1)
            final = len(emu.admin.connections())
        finally:
            group.kill_all()
            emu.stop()
    return {
        "kills": kills,
        "failover_median_s": round(statistics.median(seconds), 2),
        "failover_max_s": round(max(seconds), 2),
        "failover_min_s": round(min(seconds), 2),
        "platform_connections_after": final,
        "samples_s": [round(s, 2) for s in seconds],
    }


def _shown(emu: EmulatorProcess, display: str) -> bool:
    return any(c["name"] == display for c in emu.admin.connections())


def steady(connections: int, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"connections": connections, "runs": runs}
    for backend in ("sqlite", "postgresql"):
        samples = _steady(connections, backend, runs)
        out[backend] = {
            "resync_median_s": statistics.median(s["resync_s"] for s in samples),
            "resync_writes": max(s["resync_writes"] for s in samples),
            "store_transactions_median": statistics.median(
                s["store_transactions"] for s in samples
            ),
            "leader_lost": samples[-1]["leader_lost"],
            "samples": samples,
        }
    ratio = out["postgresql"]["resync_median_s"] / out["sqlite"]["resync_median_s"]
    out["ratio"] = round(ratio, 2)
    return out


def _steady(connections: int, backend: str, runs: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp_name, fresh_database("chanops_bench") as dsn:
        tmp = Path(tmp_name)
        root = tmp / "connections.d"
        write_manifests(root, connections)
        emu = EmulatorProcess(tmp / "emu", time_scale=0.001, faults="rate_limit=2000/s")
        emu.start()
        state: Any = dsn if backend == "postgresql" else None
        samples = []
        try:
            d = start_daemon(tmp, emu, root, resync="1h", state=state, env={SECRET_ENV: SECRET})
            try:
                _converge(d)
                for _ in range(runs):
                    before = _transactions(dsn) if backend == "postgresql" else 0
                    resync_s, resync_writes = _resync(d, emu)
                    time.sleep(1.0)  # the server's statistics are flushed about once a second
                    after = _transactions(dsn) if backend == "postgresql" else 0
                    samples.append(
                        {
                            "resync_s": resync_s,
                            "resync_writes": resync_writes,
                            "store_transactions": after - before,
                        }
                    )
                # The lease through converging and resyncing 10,000 connections: a leader
                # whose event loop stalled past its deadline would have logged leader.lost.
                terms = [e["event"] for e in d.events() if e["event"].startswith("leader.")]
                samples[-1]["leader_lost"] = terms.count("leader.lost")
            finally:
                d.kill()
        finally:
            emu.stop()
    return samples


def _converge(d: DaemonProcess) -> None:
    def converged() -> bool:
        return any(
            e["event"] == "reconcile.completed" and e.get("kind") == "full" and e.get("converged")
            for e in d.events()
        )

    wait_until(converged, timeout=3600, what="a converged full resync")


def _resync(d: DaemonProcess, emu: EmulatorProcess) -> tuple[float, int]:
    before = emu.admin.stats()
    mark = d.mark()
    d.signal(signal.SIGHUP)
    done = d.wait_event(
        lambda e: e["event"] == "reconcile.completed" and e.get("kind") == "full",
        after=mark,
        timeout=600,
    )
    return round(done["duration_ms"] / 1000, 2), writes(emu.admin.stats()) - writes(before)


def _transactions(dsn: str) -> int:
    database = dsn.rsplit("/", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="what", required=True)
    fail = sub.add_parser("failover")
    fail.add_argument("--kills", type=int, default=10)
    stead = sub.add_parser("steady")
    stead.add_argument("--connections", type=int, default=10_000)
    stead.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    result = (
        failover(args.kills) if args.what == "failover" else steady(args.connections, args.runs)
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
