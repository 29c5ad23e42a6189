"""Load (issue 7): 10,000 connections in the manifests and in the emulator.

Whole processes: `chanops emulator --faults rate_limit=100/s` and `chanops run`. One run:

1. converge: daemon start (empty platform, 10,000 manifests) -> a full reconcile that
   reports converged; every create goes through the emulator's 100 requests/s limit;
2. steady-state resync: SIGHUP, the full reconcile's `duration_ms`, and the platform
   writes it made (emulator request counters; must be 0);
3. edit-to-write latency while a full resync runs: SIGHUP, wait for its
   `reconcile.started`, rename one connection (atomic save); latency = the
   `connection.updated` timestamp minus the wall time just after the rename;
4. idle CPU: share of one core over `--idle-window` seconds with nothing to do
   (/proc/<pid>/stat), and peak RSS (VmHWM) at the end.

    .venv/bin/python benchmarks/load.py --connections 10000 --edits 20 --runs 1

Targets: resync of 10,000 with zero writes < 10 s; edit-to-write p99 < 1 s during a
full resync; peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from daemon.helpers import wait_until
from reliability.helpers import (
    converged_full,
    cpu_share,
    edit_manifest,
    peak_rss_mb,
    start_daemon,
    write_manifests,
    writes,
)
from support.emulator import EmulatorProcess


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def one_run(connections: int, edits: int, rate: str, idle_window: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "connections.d"
        names = write_manifests(root, connections)
        emu = EmulatorProcess(tmp / "emu", time_scale=0.001, faults=f"rate_limit={rate}")
        emu.start()
        try:
            t0 = time.monotonic()
            d = start_daemon(tmp, emu, root, resync="1h")
            try:
                first = d.wait_event(
                    lambda e: (
                        e["event"] in ("reconcile.completed", "reconcile.failed")
                        and e.get("kind") == "full"
                    ),
                    timeout=3600,
                )
                converge_s = time.monotonic() - t0
                # A first reconcile that could not finish everything is retried: wait on.
                if not first.get("converged"):
                    wait_until(lambda: converged_full(d.events()), timeout=3600)
                    converge_s = time.monotonic() - t0
                assert d.proc is not None
                pid = d.proc.pid

                # Steady-state resync: nothing changed, so nothing may be written.
                before = emu.admin.stats()
                mark = d.mark()
                d.signal(signal.SIGHUP)
                resync = d.wait_event(
                    lambda e: e["event"] == "reconcile.completed" and e.get("kind") == "full",
                    after=mark,
                    timeout=600,
                )
                resync_writes = writes(emu.admin.stats()) - writes(before)

                # Edit-to-write latency while a full resync runs.
                samples: list[float] = []
                during: list[bool] = []
                for n in range(edits):
                    name = names[(n * 7919) % connections]
                    mark = d.mark()
                    d.signal(signal.SIGHUP)
                    d.wait_event(
                        lambda e: e["event"] == "reconcile.started" and e.get("kind") == "full",
                        after=mark,
                        timeout=600,
                    )
                    edit_manifest(root, name, f"{name} load edit {n}")
                    written = time.time()

                    def updated(e: dict[str, Any], nm: str = name) -> bool:
                        return bool(
                            e["event"] == "connection.updated" and e.get("connection") == nm
                        )

                    event = d.wait_event(updated, after=mark, timeout=600)
                    done = datetime.fromisoformat(event["timestamp"]).timestamp()
                    samples.append((done - written) * 1000)
                    ends = [
                        e
                        for e in d.events()[mark:]
                        if e["event"] == "reconcile.completed" and e.get("kind") == "full"
                    ]
                    during.append(bool(ends) and ends[0]["timestamp"] >= event["timestamp"])
                # Let the last resync finish, then measure idle.
                wait_until(
                    lambda: (
                        sum(1 for e in d.events() if e["event"] == "reconcile.started")
                        == sum(
                            1
                            for e in d.events()
                            if e["event"] in ("reconcile.completed", "reconcile.failed")
                        )
                    ),
                    timeout=600,
                )
                idle = cpu_share(pid, idle_window)
                rss = peak_rss_mb(pid)
                assert d.stop(timeout=120) == 0
                final = len(emu.admin.connections())
            finally:
                d.kill()
        finally:
            emu.stop()
        return {
            "connections": connections,
            "platform_connections_after": final,
            "converge_s": round(converge_s, 1),
            "resync_s": round(resync["duration_ms"] / 1000, 2),
            "resync_writes": resync_writes,
            "edit_to_write_p50_ms": round(percentile(samples, 50), 1),
            "edit_to_write_p99_ms": round(percentile(samples, 99), 1),
            "edit_to_write_max_ms": round(max(samples), 1),
            "edits": len(samples),
            "edits_written_before_the_resync_ended": sum(during),
            "idle_cpu_pct": round(idle * 100, 2),
            "peak_rss_mb": round(rss, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--rate-limit", default="100/s")
    parser.add_argument("--idle-window", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    runs = []
    for r in range(args.runs):
        result = one_run(args.connections, args.edits, args.rate_limit, args.idle_window)
        runs.append(result)
        print(json.dumps({"run": r + 1, **result}), flush=True)
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    median = {k: statistics.median(r[k] for r in runs) for k in keys}
    print(json.dumps({"median": median, "runs": len(runs), "cpus": os.cpu_count()}), flush=True)


if __name__ == "__main__":
    main()
