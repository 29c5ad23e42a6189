"""What the event history costs the store (issue 17): one flush, and one read.

The daemon appends the events of the last second in one transaction that also trims
the table to the last 100 (`chanops.state._history`), on SQLite in the event loop's
thread, on PostgreSQL in a worker thread; standbys read the table at each refresh. This
times `append_events` with batches of 1, 10 and 100 events, and `events()`, on a fresh
SQLite store and a fresh PostgreSQL database (CHANOPS_TEST_POSTGRES_DSN, default
127.0.0.1:5432): 50 calls per run, `--runs` runs, the median of the runs' medians.

    flock /tmp/chanops-bench.lock .venv/bin/python benchmarks/history.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from chanops.state.factory import open_store
from support.postgres import fresh_database

EVENT = {
    "event": "connection.updated",
    "connection": "shop-0001",
    "level": "info",
    "timestamp": "2026-12-02T05:00:00.000000Z",
    "duration_ms": 12,
    "revision": "0123456789abcdef",
    "reconcile_id": "r-0001",
}
CALLS = 50


def _median_ms(fn: Any) -> float:
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def one_run(location: str | Path) -> dict[str, float]:
    store = open_store(location)
    try:
        store.append_events([EVENT] * 100)  # a full table: every append trims
        out = {
            f"append_{n}_ms": _median_ms(lambda n=n: store.append_events([EVENT] * n))
            for n in (1, 10, 100)
        }
        out["read_ms"] = _median_ms(store.events)
        return out
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql"):
        runs = []
        for _ in range(args.runs):
            if backend == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    runs.append(one_run(Path(tmp) / "state.db"))
            else:
                with fresh_database() as dsn:
                    runs.append(one_run(dsn))
            print(json.dumps({"backend": backend, **{k: round(v, 3) for k, v in runs[-1].items()}}))
        medians = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
        print(json.dumps({"backend": backend, "median": medians, "runs": args.runs}))


if __name__ == "__main__":
    main()
