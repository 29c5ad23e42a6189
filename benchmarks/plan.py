"""`chanops plan` on N converged connections: wall time and peak RSS, whole process.

    .venv/bin/python benchmarks/plan.py [--n 10000] [--latency 20ms] [--runs 5]

1. Generates N manifests (shopware6 and tradebyte, secrets from env) in a temp dir.
2. Starts `chanops emulator` without faults and converges it with `chanops apply --yes`
   (the seeding; timed but not the figure).
3. Restarts the emulator on the same database with `--faults latency=<latency>`.
4. Times `chanops plan --detailed-exitcode` end to end (process start to exit), --runs
   times, and reports the median wall time and the peak RSS (ru_maxrss of the child).
   Exit code 0 proves the plan was empty (converged).
A figure, not a test: nothing here asserts, except that the system is converged.
"""

from __future__ import annotations

import argparse
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
PER_FILE = 10


def manifest(i: int) -> str:
    if i % 2:
        creds = (
            f"    merchantNumber: 'm{i}'\n    shopName: shop{i}\n    restUsername: rest\n"
            "    restPassword: {secretRef: {env: BENCH_SECRET}}\n    sftpUsername: sftp\n"
            "    sftpPassword: {secretRef: {env: BENCH_SECRET}}\n"
        )
        driver, settings = "tradebyte", ""
    else:
        creds = (
            f"    url: https://shop-{i}.example.com\n    accessKeyId: SWIA{i}\n"
            "    secretAccessKey: {secretRef: {env: BENCH_SECRET}}\n"
        )
        driver = "shopware6"
        settings = "  settings:\n    klarna: true\n    orders: {importAboveNumber: '100'}\n"
    return (
        f"apiVersion: chanops/v1\nkind: Connection\nmetadata:\n  name: conn-{i:05d}\n"
        f"  labels: {{team: t{i % 7}}}\nspec:\n  driver: {driver}\n  credentials:\n{creds}"
        f"{settings}"
    )


def write_manifests(root: Path, n: int) -> None:
    root.mkdir(parents=True)
    for start in range(0, n, PER_FILE):
        docs = [manifest(i) for i in range(start, min(n, start + PER_FILE))]
        (root / f"batch-{start:05d}.yaml").write_text("---\n".join(docs), encoding="utf-8")


def run(args: list[str], env: dict[str, str]) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS KiB, exit code, stderr tail) of one whole process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
        # wait4: the resource usage of exactly this child (its own peak RSS).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode("utf-8", "replace")[-2000:]
    return wall, usage.ru_maxrss, proc.returncode, tail


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--latency", default="20ms")
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="chanops-bench-plan-") as tmp_dir:
        tmp = Path(tmp_dir)
        root = tmp / "connections.d"
        write_manifests(root, opts.n)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
        env["BENCH_SECRET"] = "bench-secret"
        db = tmp / "platform.db"
        common = ["--manifests", str(root), "--state", str(tmp / "state.db")]
        with start_emulator(tmp / "emu", db=db, time_scale=0.001) as emu:
            seed = [
                CHANOPS,
                "apply",
                "--yes",
                "--concurrency",
                "16",
                *common,
                "--platform",
                emu.url,
                "--token",
                emu.token,
            ]
            started = time.perf_counter()
            proc = subprocess.run(seed, env=env, capture_output=True, text=True)
            print(
                f"seeded {opts.n} connections in {time.perf_counter() - started:.1f}s "
                f"(exit {proc.returncode})"
            )
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:])
                sys.exit(1)
        with start_emulator(tmp / "emu2", db=db, faults=f"latency={opts.latency}") as emu:
            args = [
                CHANOPS,
                "plan",
                "--detailed-exitcode",
                *common,
                "--platform",
                emu.url,
                "--token",
                emu.token,
            ]
            walls = []
            rss = 0
            for _ in range(opts.runs):
                wall, peak, code, err = run(args, env)
                if code != 0:
                    print(f"plan exited {code} (not converged?):\n{err}")
                    sys.exit(1)
                walls.append(wall)
                rss = max(rss, peak)
            stats = emu.admin.stats()
        print(f"chanops plan, {opts.n} converged connections, latency={opts.latency}:")
        print(
            f"  wall median {statistics.median(walls):.2f}s "
            f"(runs: {', '.join(f'{w:.2f}' for w in walls)})"
        )
        print(f"  peak RSS {rss / 1024:.0f} MiB")
        print(f"  requests for {opts.runs} plans: {stats}")


if __name__ == "__main__":
    main()
