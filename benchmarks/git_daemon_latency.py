"""Push-webhook-to-platform-write latency of `chanops run --git` (whole processes).

`chanops emulator --faults latency=20ms` and `chanops run --git <local bare repo>
--git-interval 1h --webhook-secret-file F` as subprocesses. Each step commits one
renamed connection, pushes it, POSTs a signed GitHub-style delivery to /hooks/git, and
stops the clock at the `connection.updated` event's timestamp (logged once the PATCH has
returned). What it is made of: the fetch and the checkout (git subprocesses), a full
load of the new checkout, a full reconcile (one list of the platform) and the PATCH.
`--runs` whole runs (fresh processes), median reported.

    .venv/bin/python benchmarks/git_daemon_latency.py --commits 20 --runs 3

Target (issue 6): a commit becomes a reconcile "within seconds" of the push webhook.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from daemon.helpers import DaemonProcess, manifest, wait_until
from support.emulator import start_emulator

HOOK_SECRET = "bench-webhook-secret"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@example.com",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def one_run(commits: int, connections: int, latency: str) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bare, work = tmp / "remote.git", tmp / "work"
        git(tmp, "init", "--quiet", "--bare", "-b", "main", str(bare))
        git(tmp, "init", "--quiet", "-b", "main", str(work))
        root = work / "connections.d"
        root.mkdir()
        for i in range(connections):
            (root / f"c{i:03}.yaml").write_text(manifest(f"c{i:03}", secret_env="BENCH_SECRET"))
        git(work, "add", "-A")
        git(work, "commit", "--quiet", "-m", "initial")
        git(work, "push", "--quiet", str(bare), "HEAD:main")
        secret_file = tmp / "webhook-secret"
        secret_file.write_text(HOOK_SECRET)
        with start_emulator(tmp / "emu", faults=f"latency={latency}") as emu:
            d = DaemonProcess(
                tmp,
                manifests=tmp / "unused",
                platform=emu.url,
                token=emu.token,
                resync="1h",
                env={"BENCH_SECRET": "bench-secret-value"},
                extra=[
                    "--git",
                    str(bare),
                    "--git-interval",
                    "1h",
                    "--webhook-secret-file",
                    str(secret_file),
                ],
            )
            i = d.cmd.index("--manifests")
            del d.cmd[i : i + 2]
            d.start()
            try:
                wait_until(
                    lambda: len(emu.admin.connections()) == connections,
                    timeout=120,
                    what="initial connections",
                )
                samples: list[float] = []
                for n in range(commits):
                    name = f"c{n % connections:03}"
                    (root / f"{name}.yaml").write_text(
                        manifest(name, display=f"{name} commit {n}", secret_env="BENCH_SECRET")
                    )
                    git(work, "commit", "--quiet", "-am", f"rename {name}")
                    git(work, "push", "--quiet", str(bare), "HEAD:main")
                    mark = d.mark()
                    body = json.dumps({"ref": "refs/heads/main"}).encode()
                    digest = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
                    sent = time.time()
                    res = httpx.post(
                        f"http://127.0.0.1:{d.port}/hooks/git",
                        content=body,
                        headers={"X-Hub-Signature-256": f"sha256={digest}"},
                        timeout=5,
                    )
                    assert res.status_code == 202, res.text
                    event = d.wait_event(
                        lambda e, nm=name: (
                            e["event"] == "connection.updated" and e.get("connection") == nm
                        ),
                        after=mark,
                        timeout=30,
                    )
                    done = datetime.fromisoformat(event["timestamp"]).timestamp()
                    samples.append((done - sent) * 1000)
                return samples
            finally:
                assert d.stop() == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--latency", default="20ms")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for r in range(args.runs):
        samples = one_run(args.commits, args.connections, args.latency)
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        runs.append((p50, p99))
        print(
            json.dumps(
                {
                    "run": r + 1,
                    "commits": len(samples),
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
