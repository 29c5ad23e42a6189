"""An idle `chanops run` with many connections: CPU, API calls between resyncs, peak RSS.

Whole processes: `chanops emulator` and `chanops run` as subprocesses. The daemon
creates `--connections` connections (no `spec.sync`, so no scheduled syncs), then sits
idle for `--seconds` with the default 5 min resync. Measured over the idle window:
the daemon's CPU time (utime+stime from /proc) as a share of one core, and every API
request the emulator received. Peak RSS is the daemon's VmHWM over the whole run
(including the initial reconcile that created everything).

    .venv/bin/python benchmarks/daemon_idle.py --connections 1000 --seconds 60 --runs 3
    .venv/bin/python benchmarks/daemon_idle.py --connections 10000 --seconds 10 --runs 1

Target (issue 5): CPU < 1% of one core, zero API calls between resyncs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from daemon.helpers import DaemonProcess, manifest, wait_until
from support.emulator import start_emulator

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_run(connections: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "connections.d"
        root.mkdir()
        for i in range(connections):
            (root / f"c{i:05}.yaml").write_text(
                manifest(f"c{i:05}", secret_env="BENCH_SECRET"), encoding="utf-8"
            )
        with start_emulator(tmp / "emu") as emu:
            d = DaemonProcess(
                tmp,
                manifests=root,
                platform=emu.url,
                token=emu.token,
                resync="5m",
                env={"BENCH_SECRET": "bench-secret-value"},
                extra=["--concurrency", "16"],
            )
            started = time.monotonic()
            d.start(wait_reconciled=False)
            d.wait_event(
                lambda e: e["event"] == "reconcile.completed", timeout=1800, what="first reconcile"
            )
            startup_s = time.monotonic() - started
            wait_until(lambda: d.http("/readyz").status_code == 200, what="ready")
            assert d.proc is not None
            pid = d.proc.pid
            time.sleep(2)  # let the initial-sync bookkeeping settle
            emu.admin.reset_stats()
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(seconds)
            cpu1, t1 = cpu_seconds(pid), time.monotonic()
            calls = sum(emu.admin.stats().values())
            rss = peak_rss_mb(pid)
            assert d.stop() == 0
            return {
                "connections": connections,
                "startup_reconcile_s": round(startup_s, 1),
                "idle_s": round(t1 - t0, 1),
                "idle_cpu_percent_of_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
                "api_calls_while_idle": calls,
                "peak_rss_mb": round(rss, 1),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for r in range(args.runs):
        result = one_run(args.connections, args.seconds)
        results.append(result)
        print(json.dumps({"run": r + 1, **result}), flush=True)
    keys = ("idle_cpu_percent_of_core", "api_calls_while_idle", "peak_rss_mb")
    print(json.dumps({f"median_{k}": statistics.median(x[k] for x in results) for k in keys}))


if __name__ == "__main__":
    main()
