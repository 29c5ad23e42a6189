"""`chanops apply` creating N connections against an emulator with a rate limit.

    .venv/bin/python benchmarks/apply.py [--n 1000] [--rate 50] [--latency 20ms] [--runs 3]

Each run: a fresh emulator (`--faults rate_limit=<rate>/s,latency=<latency>`), N new
shopware6 manifests without settings (one POST each), and `chanops apply --yes
--rate-limit <rate>` timed end to end. Reported per run, from the emulator's own
request counts (/api/v1/testing/stats) and its log of rate-limited answers:
- the achieved request rate: requests the emulator answered (not 429) divided by the
  time from its first to its last request (the process start-up is not the platform's),
- its ratio to the limit,
- 429 answers (each one is a retry the client had to make).
A second configuration runs without `--rate-limit` (the client discovers the limit
from 429 + Retry-After) for comparison. A figure, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

from support.emulator import start_emulator  # noqa: E402

CHANOPS = str(Path(sys.executable).parent / "chanops")


def write_manifests(root: Path, n: int) -> None:
    root.mkdir(parents=True)
    docs = [
        f"apiVersion: chanops/v1\nkind: Connection\nmetadata:\n  name: new-{i:05d}\nspec:\n"
        "  driver: shopware6\n  credentials:\n"
        f"    url: https://shop-{i}.example.com\n    accessKeyId: K{i}\n"
        "    secretAccessKey: {secretRef: {env: BENCH_SECRET}}\n"
        for i in range(n)
    ]
    (root / "all.yaml").write_text("---\n".join(docs), encoding="utf-8")


def request_log(log_text: str) -> tuple[int, int, float]:
    """(answered requests, 429 answers, seconds from first to last) from the emulator log."""
    from datetime import datetime

    ok = limited = 0
    stamps: list[float] = []
    for line in log_text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        path = event.get("path", "")
        if (
            event.get("event") != "emulator.request"
            or "/testing/" in path
            or path == "/openapi.json"
        ):
            continue
        if event.get("status") == 429:
            limited += 1
        else:
            ok += 1
        stamps.append(datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp())
    span = max(stamps) - min(stamps) if len(stamps) > 1 else 0.0
    return ok, limited, span


def one_run(n: int, rate: float, latency: str, client_pacing: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="chanops-bench-apply-") as tmp_dir:
        tmp = Path(tmp_dir)
        root = tmp / "connections.d"
        write_manifests(root, n)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
        env["BENCH_SECRET"] = "bench-secret"
        faults = f"rate_limit={rate:g}/s,latency={latency}"
        with start_emulator(tmp / "emu", faults=faults, time_scale=0.001) as emu:
            args = [
                CHANOPS,
                "apply",
                "--yes",
                "--manifests",
                str(root),
                "--state",
                str(tmp / "state.db"),
                "--platform",
                emu.url,
                "--token",
                emu.token,
            ]
            if client_pacing:
                args += ["--rate-limit", f"{rate:g}"]
            time.sleep(1.1)  # let the emulator's token bucket fill, as on a quiet platform
            started = time.perf_counter()
            proc = subprocess.run(args, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:])
                raise SystemExit(1)
            stats = emu.admin.stats()
            ok, limited, span = request_log(emu.logs())
    return {
        "wall_s": wall,
        "requests": ok,
        "rate": ok / span if span else 0.0,
        "ratio": (ok / span if span else 0.0) / rate,
        "http_429": limited,
        "creates": stats.get("POST /api/v1/connections", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--latency", default="20ms")
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    for pacing in (True, False):
        runs = [one_run(opts.n, opts.rate, opts.latency, pacing) for _ in range(opts.runs)]
        label = "with --rate-limit" if pacing else "without --rate-limit (429-driven)"
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"apply creating {opts.n}, emulator rate_limit={opts.rate:g}/s "
            f"latency={opts.latency}, {label}:"
        )
        print(
            f"  wall median {med['wall_s']:.1f}s; achieved {med['rate']:.1f} req/s "
            f"= {med['ratio'] * 100:.1f}% of the limit; requests {med['requests']:.0f} "
            f"(creates {med['creates']:.0f}); 429 answers median {med['http_429']:.0f} "
            f"(runs: {[int(r['http_429']) for r in runs]})"
        )


if __name__ == "__main__":
    main()
