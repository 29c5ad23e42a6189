"""Sync jobs followed to their end, against a real emulator process (jobs take ~1 s)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from chanops.daemon._scheduler import SyncOutcome, SyncScheduler, Target
from chanops.manifests.model import Manifest, SourceLocation, SyncSpec
from chanops.platform.client import open_client
from support.emulator import EmulatorProcess, start_emulator


@pytest.fixture
def slow_emu(tmp_path: Path) -> Iterator[EmulatorProcess]:
    # time scale 0.5: a sync job is queued 0.25 s and runs 1 s.
    with start_emulator(tmp_path / "emu", time_scale=0.5) as emu:
        yield emu


def _manifest(name: str, timeout: float) -> Manifest:
    return Manifest(
        name=name,
        driver="shopware6",
        display_name=name,
        source=SourceLocation("x.yaml", 1, 1),
        sync=SyncSpec(interval_seconds=3600, timeout_seconds=timeout),
    )


async def test_jobs_are_followed_to_stuck_completed_and_failed(slow_emu: EmulatorProcess) -> None:
    ok_id = slow_emu.admin.marketplace_install(
        "shopware6", "ok", {"url": "https://a.example", "accessKeyId": "k"}
    )
    bad_id = slow_emu.admin.marketplace_install(
        "shopware6", "bad", {"url": "https://a.example", "accessKeyId": "fail-sync-key"}
    )
    targets = {
        "ok": Target(connection_id=ok_id, driver="shopware6", active=True),
        "bad": Target(connection_id=bad_id, driver="shopware6", active=True),
        "off": Target(connection_id=ok_id, driver="shopware6", active=False),
    }
    outcomes: list[SyncOutcome] = []
    structlog.reset_defaults()
    async with open_client(slow_emu.url, slow_emu.token) as client:
        scheduler = SyncScheduler(client, lookup=targets.get, on_outcome=outcomes.append)
        scheduler.update([_manifest("ok", timeout=0.3), _manifest("bad", timeout=60)])
        assert scheduler.scheduled() == ["bad", "ok"]
        with capture_logs() as logs:
            await scheduler.sync_now("ok")
            await scheduler.sync_now("ok")  # still running: skipped, not a second job
            await scheduler.sync_now("bad")
            await scheduler.sync_now("off")
            await scheduler.sync_now("unknown")
            await scheduler.shutdown(grace=30)
    by_event = [(e["event"], e.get("connection")) for e in logs]
    assert ("sync.stuck", "ok") in by_event
    assert ("sync.completed", "ok") in by_event
    assert ("sync.failed", "bad") in by_event
    skipped = {e["connection"]: e["reason"] for e in logs if e["event"] == "sync.skipped"}
    assert skipped == {
        "ok": "a sync is already running",
        "off": "connection inactive",
        "unknown": "connection not on the platform yet",
    }
    failed = next(e for e in logs if e["event"] == "sync.failed")
    assert failed["error"] and failed["job_id"]
    assert sorted(o.outcome for o in outcomes) == ["completed", "failed", "stuck"]
    # Removing a manifest removes its schedule.
    scheduler.update([])
    assert scheduler.scheduled() == []
