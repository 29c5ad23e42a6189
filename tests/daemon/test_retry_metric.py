"""Metrics are fed by the event sink, not by log output (issue 12, part 6).

structlog drops an event below the log level before any processor runs, so a retries
counter fed from log lines read 1 after six retries at the default level. Here the
daemon runs at `--log-level warning` (the retries after the first of a streak are
debug) against an emulator that fails a third of its answers, and the counter must
equal the retried requests: one retry per faulted answer the emulator logged.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from daemon.helpers import DaemonProcess, manifest, wait_until, write_atomic
from reliability.helpers import metric
from support.emulator import EmulatorProcess, free_port, start_emulator

SECRET = "retry-test-secret-1"


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with start_emulator(
        tmp_path / "emulator", time_scale=0.002, faults="error_rate=0.5,seed=3"
    ) as emu:
        yield emu


def _faults(emu: EmulatorProcess) -> int:
    """Answers the emulator failed on purpose (each one makes the client retry once)."""
    count = 0
    for line in emu.logs().splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "emulator.fault":
            count += 1
    return count


def test_retries_counter_equals_the_retried_requests_at_log_level_warning(
    tmp_path: Path, faulty: EmulatorProcess
) -> None:
    root = tmp_path / "connections.d"
    names = [f"shop-{i}" for i in range(8)]
    for name in names:
        write_atomic(root / f"{name}.yaml", manifest(name, secret_env="SECRET_A"))
    port = free_port()
    daemon = DaemonProcess(
        tmp_path,
        manifests=root,
        platform=faulty.url,
        token=faulty.token,
        resync="1h",  # one startup reconcile, then quiet: the counts can settle
        env={"SECRET_A": SECRET},
        # One write at a time: the requests, and so the emulator's seeded faults, come
        # in the same order every run.
        extra=["--log-level", "warning", "--concurrency", "1"],
    )
    daemon.cmd[daemon.cmd.index("127.0.0.1:0")] = f"127.0.0.1:{port}"
    with daemon.log_path.open("wb") as out, daemon.err_path.open("wb") as err:
        daemon.proc = subprocess.Popen(daemon.cmd, stdout=out, stderr=err, env=daemon.env)
    daemon.port = port
    try:

        def settled() -> float | None:
            # Watched through the daemon only: the test's own requests to the emulator
            # would meet the faults too, and chanops does not retry those. Settled when
            # every connection exists and nothing is in flight (the emulator's fault
            # count stands still across a scrape).
            before = _faults(faulty)
            status = httpx.get(f"http://127.0.0.1:{port}/status", timeout=5).json()
            made = sorted(c["name"] for c in status["connections"] if c["observed"])
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
            if made != names or ready != 200 or _faults(faulty) != before:
                return None
            return metric(text, "chanops_retries_total", kind="api")

        retries = wait_until(settled, timeout=60, what="every connection made, the daemon idle")
        faults = _faults(faulty)
        assert faults >= 3, "the fault injection did not fire: the test would prove nothing"
        assert retries == faults
        # At warning, a retry streak logs its first retry only: the log could not count.
        logged = sum(1 for e in daemon.events() if e["event"] == "platform.retry")
        assert logged < faults
        # The platform agrees (this test's own reads meet the faults too: ask again).
        wait_until(
            lambda: sorted(c["name"] for c in faulty.admin.connections()) == names,
            what="the emulator listing every connection",
        )
    finally:
        assert daemon.stop() == 0
