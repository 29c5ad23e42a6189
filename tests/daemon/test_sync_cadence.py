"""A new leader (or a restarted daemon) keeps each interval sync's cadence from the last
sync the store recorded, instead of starting a whole interval from its own start; an
overdue sync does not fire at once (no burst at a takeover)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chanops.daemon._scheduler import SyncScheduler, utc_iso
from chanops.manifests.model import Manifest, SourceLocation, SyncSpec
from engine.fake_platform import FakePlatform


def _manifest(name: str, interval: float) -> Manifest:
    return Manifest(
        name=name,
        driver="shopware6",
        display_name=name,
        source=SourceLocation("x.yaml", 1, 1),
        sync=SyncSpec(interval_seconds=interval),
    )


async def test_interval_syncs_continue_from_the_last_recorded_sync() -> None:
    scheduler = SyncScheduler(FakePlatform(), lookup=lambda name: None)
    scheduler.start()
    try:
        names = ["recent", "overdue", "never", "garbled"]
        scheduler.update([_manifest(n, interval=3600) for n in names])
        fresh = {n: scheduler.next_run(n) for n in names}
        now = datetime.now(UTC)
        scheduler.keep_cadence(
            {
                "recent": utc_iso(now - timedelta(minutes=50)),  # due in about 10 minutes
                "overdue": utc_iso(now - timedelta(hours=2)),
                "never": None,
                "garbled": "yesterday",
            }
        )
        due = scheduler.next_run("recent")
        assert due is not None
        assert abs((due - (now + timedelta(minutes=10))).total_seconds()) < 5
        # The others keep the whole interval from this start.
        assert {n: scheduler.next_run(n) for n in names[1:]} == {n: fresh[n] for n in names[1:]}
    finally:
        await scheduler.shutdown(grace=0)
