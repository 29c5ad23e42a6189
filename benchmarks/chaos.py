"""Chaos (issue 7), long forms: crash chaos with 30 SIGKILLs, and platform outages.

Crash chaos (tests/reliability/chaos.py): 300 connections, emulator faults
`error_rate=0.2,latency=30ms`, the daemon SIGKILLed at random moments `--kills` times
and restarted; afterwards every manifest has exactly one connection, the UI-made
connections are untouched, nothing was deleted, and `chanops run --once` reports
converged. Several seeds (`--runs`).

Outage: 300 connections converged, then the emulator is SIGKILLed for `--outage`
seconds and restarted on its database; meanwhile one manifest is renamed and one added.
Measured: the daemon's CPU share while the platform is down (/proc/<pid>/stat), the
events it logged at info and above up to its `platform.unreachable` and after it (the
retries), and the time from the platform's return to converged (the rename and the new
connection on the platform, every manifest one connection, nothing in backoff).

    .venv/bin/python benchmarks/chaos.py --kills 30 --runs 3 --outage 20 --outage 120

Targets: zero lost or doubled connections; CPU < 5% of one core while the platform is
down; one event per failure streak; converged within 60 s after the platform returns.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from daemon.helpers import wait_until
from reliability.chaos import DEFAULT_FAULTS, crash_chaos
from reliability.helpers import (
    add_manifest,
    check_platform,
    converged_full,
    cpu_share,
    edit_manifest,
    loud,
    metric,
    start_daemon,
    write_manifests,
)
from support.emulator import EmulatorProcess


def outage(seconds: float, connections: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "connections.d"
        names = write_manifests(root, connections)
        emu = EmulatorProcess(tmp / "emu", time_scale=0.002, faults="latency=30ms")
        emu.start()
        d = start_daemon(tmp, emu, root, resync="5m")
        try:
            d.wait_event(lambda e: converged_full([e]) is not None, timeout=300)
            assert d.proc is not None
            mark = d.mark()
            emu.kill()
            d.signal(1)  # SIGHUP: a full reconcile meets the outage at once
            # Work that piles up during the outage: a rename and a new manifest.
            edit_manifest(root, names[0], f"{names[0]}-renamed")
            want = [f"{names[0]}-renamed", *names[1:], add_manifest(root, connections)]
            time.sleep(2.0)  # let the calls in flight fail
            share = cpu_share(d.proc.pid, max(1.0, seconds - 2.0))
            events = d.events()[mark:]
            down = next(
                (i for i, e in enumerate(events) if e["event"] == "platform.unreachable"), None
            )
            before = loud(events[: down + 1]) if down is not None else loud(events)
            after = loud(events[down + 1 :]) if down is not None else []
            alive = d.proc.poll() is None
            emu.start()
            back = time.monotonic()

            def recovered() -> bool:
                if metric(d.http("/metrics").text, "chanops_connections_in_backoff") != 0:
                    return False
                return check_platform(emu, want, {}).ok

            wait_until(recovered, timeout=900, what="converged after the outage")
            recovery_s = time.monotonic() - back
            assert d.stop(timeout=60) == 0
        finally:
            d.kill()
            emu.stop()
        return {
            "outage_s": seconds,
            "connections": connections,
            "daemon_alive_during_outage": alive,
            "cpu_pct_while_down": round(share * 100, 2),
            "events_to_first_unreachable": len(before),
            "events_after_unreachable": len(after),
            "platform_unreachable_events": sum(1 for e in before if e.endswith("unreachable")),
            "recovery_to_converged_s": round(recovery_s, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--faults", default=DEFAULT_FAULTS)
    parser.add_argument("--runs", type=int, default=3, help="crash chaos runs (seeds)")
    parser.add_argument("--outage", type=float, action="append", help="seconds (repeatable)")
    parser.add_argument("--no-outage", action="store_true", help="crash chaos only")
    args = parser.parse_args()
    chaos = []
    for r in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp_name:
            t0 = time.monotonic()
            report = crash_chaos(
                Path(tmp_name),
                connections=args.connections,
                kills=args.kills,
                faults=args.faults,
                seed=100 + r,
            )
            summary = {"run": r + 1, "seconds": round(time.monotonic() - t0, 1), **report.summary()}
            summary.pop("kill_delays_s")
            summary.pop("connection_events_before_each_kill")
            chaos.append(summary)
            print(json.dumps({"crash_chaos": summary}), flush=True)
    for seconds in [] if args.no_outage else (args.outage or [20.0]):
        print(json.dumps({"outage": outage(seconds, args.connections)}), flush=True)
    print(
        json.dumps(
            {
                "crash_chaos_runs_ok": sum(1 for c in chaos if c["ok"]),
                "crash_chaos_runs": len(chaos),
                "lost": sum(c["missing"] or 0 for c in chaos),
                "doubled": sum((c["doubled"] or 0) + (c["stray"] or 0) for c in chaos),
                "cpus": os.cpu_count(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
