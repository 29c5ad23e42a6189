"""Edit-to-write latency of `chanops run`: manifest file written -> platform write done.

Whole processes: `chanops emulator --faults latency=20ms` and `chanops run` as
subprocesses. Each edit renames one connection (atomic save: temp file renamed over);
the latency is the `connection.updated` event's timestamp (logged once the PATCH has
returned) minus the wall time just after the rename. One edit at a time, round robin
over `--connections` manifests; `--runs` whole runs (fresh processes), median reported.

    .venv/bin/python benchmarks/daemon_latency.py --edits 100 --runs 3

Targets at latency=20ms: p50 < 200 ms, p99 < 1 s (issue 5); p50 < 150 ms, outside a resync
(issue 12: the work queue must not cost an edit more than the old loop did).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from daemon.helpers import DaemonProcess, manifest, wait_until, write_atomic
from support.emulator import start_emulator


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def one_run(edits: int, connections: int, latency: str) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "connections.d"
        for i in range(connections):
            write_atomic(root / f"c{i:03}.yaml", manifest(f"c{i:03}", secret_env="BENCH_SECRET"))
        with start_emulator(tmp / "emu", faults=f"latency={latency}") as emu:
            d = DaemonProcess(
                tmp,
                manifests=root,
                platform=emu.url,
                token=emu.token,
                resync="1h",
                env={"BENCH_SECRET": "bench-secret-value"},
            )
            d.start()
            try:
                wait_until(
                    lambda: len(emu.admin.connections()) == connections,
                    timeout=120,
                    what="initial connections",
                )
                samples: list[float] = []
                for n in range(edits):
                    name = f"c{n % connections:03}"
                    display = f"{name} edit {n}"
                    mark = d.mark()
                    write_atomic(
                        root / f"{name}.yaml",
                        manifest(name, display=display, secret_env="BENCH_SECRET"),
                    )
                    written = time.time()
                    event = d.wait_event(
                        lambda e, nm=name: (
                            e["event"] == "connection.updated" and e.get("connection") == nm
                        ),
                        after=mark,
                        timeout=30,
                    )
                    done = datetime.fromisoformat(event["timestamp"]).timestamp()
                    samples.append((done - written) * 1000)
                return samples
            finally:
                assert d.stop() == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--latency", default="20ms")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for r in range(args.runs):
        samples = one_run(args.edits, args.connections, args.latency)
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        runs.append((p50, p99, max(samples)))
        print(
            json.dumps(
                {
                    "run": r + 1,
                    "edits": len(samples),
                    "p50_ms": round(p50, 1),
                    "p99_ms": round(p99, 1),
                    "max_ms": round(max(samples), 1),
                }
            ),
            flush=True,
        )
    print(
        json.dumps(
            {
                "median_p50_ms": round(statistics.median(r[0] for r in runs), 1),
                "median_p99_ms": round(statistics.median(r[1] for r in runs), 1),
                "connections": args.connections,
                "latency": args.latency,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
