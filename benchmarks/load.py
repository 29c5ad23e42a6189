"""Load (issues 7 and 12): 10,000 connections in the manifests and in the emulator.

Whole processes: `chanops emulator --faults rate_limit=100/s` and `chanops run`. One run:

1. converge: daemon start (empty platform, 10,000 manifests) -> a full resync that
   reports converged; every create goes through the emulator's 100 requests/s limit;
2. steady-state resync: SIGHUP, the resync's `duration_ms`, and the platform writes it
   made (emulator request counters; must be 0);
3. edit-to-write latency while a full resync runs: SIGHUP, wait for its
   `reconcile.started`, rename one connection (atomic save); latency = the
   `connection.updated` timestamp minus the wall time just after the rename. Each edit
   is made during its own resync, and counted as written before that resync ended
   (compared once it has ended) and as written twice (more than one update event);
4. idle CPU: share of one core over `--idle-window` seconds with nothing to do
   (/proc/<pid>/stat), and peak RSS (VmHWM) at the end.

    .venv/bin/python benchmarks/load.py --connections 10000 --edits 20 --runs 3

Targets (issue 12): edit-to-write p99 < 250 ms during a full resync; a steady resync of
10,000 with 0 writes in under 2 s; peak RSS < 200 MB.
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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from daemon.helpers import DaemonProcess, wait_until
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
                converge_s = converge(d, t0)
                assert d.proc is not None
                pid = d.proc.pid
                resync_s, resync_writes = steady_resync(d, emu)
                runs = [
                    edit_during_a_resync(d, root, names[(n * 7919) % connections], n)
                    for n in range(edits)
                ]
                wait_until(lambda: quiet(d), timeout=600)  # the last resync has ended
                idle = cpu_share(pid, idle_window)
                rss = peak_rss_mb(pid)
                assert d.stop(timeout=120) == 0
                final = len(emu.admin.connections())
            finally:
                d.kill()
        finally:
            emu.stop()
        samples = [r.latency_ms for r in runs]
        return {
            "connections": connections,
            "platform_connections_after": final,
            "converge_s": round(converge_s, 1),
            "resync_s": resync_s,
            "resync_writes": resync_writes,
            "edit_to_write_p50_ms": round(percentile(samples, 50), 1),
            "edit_to_write_p99_ms": round(percentile(samples, 99), 1),
            "edit_to_write_max_ms": round(max(samples), 1),
            "edits": len(samples),
            "edits_written_before_the_resync_ended": sum(r.before_end for r in runs),
            "edits_written_twice": sum(r.extra_writes for r in runs),
            "idle_cpu_pct": round(idle * 100, 2),
            "peak_rss_mb": round(rss, 1),
        }


def converge(d: DaemonProcess, t0: float) -> float:
    """Seconds from the daemon's start to a converged full resync."""
    first = d.wait_event(
        lambda e: (
            e["event"] in ("reconcile.completed", "reconcile.failed") and e.get("kind") == "full"
        ),
        timeout=3600,
    )
    if not first.get("converged"):
        # A first resync that could not finish everything is retried: wait on.
        wait_until(lambda: converged_full(d.events()), timeout=3600)
    return time.monotonic() - t0


def steady_resync(d: DaemonProcess, emu: EmulatorProcess) -> tuple[float, int]:
    """SIGHUP with nothing changed: the resync's seconds and platform writes (must be 0)."""
    before = emu.admin.stats()
    mark = d.mark()
    d.signal(signal.SIGHUP)
    resync = d.wait_event(
        lambda e: e["event"] == "reconcile.completed" and e.get("kind") == "full",
        after=mark,
        timeout=600,
    )
    return round(resync["duration_ms"] / 1000, 2), writes(emu.admin.stats()) - writes(before)


@dataclass(frozen=True)
class EditRun:
    latency_ms: float
    before_end: bool  # written before the resync it was made in ended
    extra_writes: int  # connection.updated events for it beyond the first


def edit_during_a_resync(d: DaemonProcess, root: Path, name: str, n: int) -> EditRun:
    """SIGHUP, wait for the resync's reconcile.started, rename `name`; wait for that
    resync's end, so the next edit is made during its own resync."""
    mark = d.mark()
    d.signal(signal.SIGHUP)
    started = d.wait_event(
        lambda e: e["event"] == "reconcile.started" and e.get("kind") == "full",
        after=mark,
        timeout=600,
    )
    edit_manifest(root, name, f"{name} load edit {n}")
    written = time.time()

    def updated(e: dict[str, Any]) -> bool:
        return bool(e["event"] == "connection.updated" and e.get("connection") == name)

    event = d.wait_event(updated, after=mark, timeout=600)
    done = datetime.fromisoformat(event["timestamp"]).timestamp()
    # Compared once that resync has ended. (The old count compared while it could still
    # be running, so an edit written first counted as "not before": the bug it had.)
    rid = started["reconcile_id"]
    end = d.wait_event(
        lambda e: (
            e["event"] in ("reconcile.completed", "reconcile.failed")
            and e.get("reconcile_id") == rid
        ),
        after=mark,
        timeout=600,
    )
    updates = sum(1 for e in d.events()[mark:] if updated(e))
    return EditRun((done - written) * 1000, event["timestamp"] <= end["timestamp"], updates - 1)


def quiet(d: DaemonProcess) -> bool:
    """Every reconcile.started has its end event."""
    events = d.events()
    started = sum(1 for e in events if e["event"] == "reconcile.started")
    ended = sum(1 for e in events if e["event"] in ("reconcile.completed", "reconcile.failed"))
    return started == ended


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
