"""Edit-to-write latency of `chanops run` while a notification receiver hangs or fails.

Whole processes: `chanops emulator --faults latency=20ms` and `chanops run` as
subprocesses, and a local HTTP receiver in this process for three webhook providers
(slack, msteams, a signed webhook). Each run first takes the platform away and back
(the emulator stopped and started on its database), so the daemon has two messages
per provider to send; then it edits one connection at a time (atomic save) and measures
manifest written -> `connection.updated` logged, as benchmarks/daemon_latency.py does.

Receiver modes, one set of runs each:

- `none`: no `notifications:` configured (the baseline);
- `ok`: the receiver answers 200 at once;
- `hang`: the receiver never answers (each provider's thread waits out its 30 s timeout);
- `fail`: the receiver answers 500 (each notice is retried with backoff, then dropped).

    .venv/bin/python benchmarks/notify.py --edits 50 --runs 3

Target (issue 16): a slow or failing receiver does not slow edit -> write: the `hang`
and `fail` medians within noise of `none`.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from daemon.helpers import DaemonProcess, manifest, wait_until, write_atomic
from notify.receivers import HttpReceiver, http_receiver
from support.emulator import EmulatorProcess, start_emulator

MODES = ("none", "ok", "hang", "fail")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def config(tmp: Path, receiver: HttpReceiver) -> Path:
    (tmp / "slack-url").write_text(f"{receiver.url}/slack\n")
    (tmp / "teams-url").write_text(f"{receiver.url}/teams\n")
    (tmp / "hook-url").write_text(f"{receiver.url}/hook\n")
    (tmp / "hook-key").write_text("benchmark-hmac-key-0123456789\n")
    path = tmp / "chanops.yaml"
    path.write_text(
        "notifications:\n  providers:\n"
        "    - {name: slack, kind: slack, urlFile: slack-url, timeout: 30s}\n"
        "    - {name: teams, kind: msteams, urlFile: teams-url, timeout: 30s}\n"
        "    - {name: hook, kind: webhook, urlFile: hook-url, secretFile: hook-key,"
        " timeout: 30s}\n"
        "  routes:\n    - {providers: [slack, teams, hook], severity: info}\n"
    )
    return path


def outage(emu: EmulatorProcess, d: DaemonProcess) -> None:
    mark = d.mark()
    emu.stop()
    d.signal(signal.SIGHUP)
    d.wait_event(lambda e: e["event"] == "platform.unreachable", after=mark, timeout=60)
    emu.start()
    d.wait_event(lambda e: e["event"] == "platform.reachable", after=mark, timeout=60)


def edits(d: DaemonProcess, root: Path, count: int, connections: int) -> list[float]:
    samples: list[float] = []
    for n in range(count):
        name = f"c{n % connections:03}"
        mark = d.mark()
        text = manifest(name, display=f"{name} edit {n}", secret_env="BENCH_SECRET")
        write_atomic(root / f"{name}.yaml", text)
        written = time.time()
        event = d.wait_event(
            lambda e, nm=name: e["event"] == "connection.updated" and e.get("connection") == nm,
            after=mark,
            timeout=30,
        )
        samples.append((datetime.fromisoformat(event["timestamp"]).timestamp() - written) * 1000)
    return samples


def one_run(mode: str, count: int, connections: int, latency: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp_name, http_receiver() as receiver:
        tmp = Path(tmp_name)
        receiver.mode = "ok" if mode == "none" else mode
        root = tmp / "connections.d"
        for i in range(connections):
            write_atomic(root / f"c{i:03}.yaml", manifest(f"c{i:03}", secret_env="BENCH_SECRET"))
        extra = [] if mode == "none" else ["--config", str(config(tmp, receiver))]
        with start_emulator(tmp / "emu", faults=f"latency={latency}") as emu:
            d = DaemonProcess(
                tmp,
                manifests=root,
                platform=emu.url,
                token=emu.token,
                resync="1h",
                env={"BENCH_SECRET": "bench-secret-value"},
                extra=extra,
            ).start()
            try:
                wait_until(
                    lambda: len(emu.admin.connections()) == connections,
                    timeout=120,
                    what="initial connections",
                )
                outage(emu, d)
                if mode in ("hang", "fail"):
                    wait_until(lambda: receiver.attempts >= 3, what="each provider's attempt")
                samples = edits(d, root, count, connections)
                attempts = receiver.attempts
            finally:
                receiver.release.set()
                d.kill()
    return {
        "p50_ms": round(percentile(samples, 50), 1),
        "p99_ms": round(percentile(samples, 99), 1),
        "max_ms": round(max(samples), 1),
        "receiver_requests": attempts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--latency", default="20ms")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    print(json.dumps({"loadavg_before": [round(x, 2) for x in os.getloadavg()]}), flush=True)
    modes = args.modes.split(",")
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    # Modes interleaved run by run, so a busy moment of the machine weighs on each alike.
    for r in range(args.runs):
        for mode in modes:
            result = one_run(mode, args.edits, args.connections, args.latency)
            results[mode].append(result)
            print(json.dumps({"mode": mode, "run": r + 1, **result}), flush=True)
    summary = {}
    for mode, runs in results.items():
        summary[mode] = {
            "median_p50_ms": round(statistics.median(x["p50_ms"] for x in runs), 1),
            "median_p99_ms": round(statistics.median(x["p99_ms"] for x in runs), 1),
            "p50_runs": [x["p50_ms"] for x in runs],
            "p99_runs": [x["p99_ms"] for x in runs],
        }
    loadavg = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"summary": summary, "cpus": os.cpu_count(), "loadavg_after": loadavg}))


if __name__ == "__main__":
    main()
