"""No batch is planned before the daemon has read the state store's records.

A new leader on a shared store whose database is still coming back reads its manifests,
fails to read the records, and retries; an edit arriving meanwhile must wait. Planned
without the records it would take the edited connection for a new one and create it
again (found by tests/ha's PostgreSQL restart under edits)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from chanops.daemon._queue import Cause
from chanops.daemon.service import Daemon, DaemonOptions
from chanops.engine.reconciler import EngineOptions, Reconciler
from chanops.errors import StoreError
from chanops.observability.logging import LogConfig
from chanops.observability.metrics import Metrics
from chanops.state.store import Record, StateStore
from daemon.helpers import manifest, write_atomic
from daemon.test_workers import until
from engine.fake_platform import FakePlatform

SECRET = "records-first-secret-1"
NAMES = ["a", "b", "c"]


class AwayStore:
    """The store, whose `records()` fails while `away` (the database is not back yet)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.away = True
        self.refused = 0

    def records(self) -> dict[str, Record]:
        if self.away:
            self.refused += 1
            raise StoreError("state store: no database connection available")
        return self._store.records()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _daemon(root: Path, fake: FakePlatform, store: Any) -> Daemon:
    options = EngineOptions(follow_jobs=False, environ={"SW_SECRET": SECRET})
    return Daemon(
        client=fake,
        store=store,
        reconciler=Reconciler(client=fake, store=store, options=options),
        options=DaemonOptions(manifests=root, listen=None, resync_seconds=3600, workers=2),
        metrics=Metrics(),
        logging=LogConfig(),
    )


async def test_an_edit_waits_until_the_records_are_read(tmp_path: Path) -> None:
    root = tmp_path / "connections.d"
    for name in NAMES:
        write_atomic(root / f"{name}.yaml", manifest(name, secret_env="SW_SECRET"))
    fake = FakePlatform()
    store = StateStore.open(tmp_path / "state" / "state.db")
    try:
        first = _daemon(root, fake, store)  # the previous leader: creates all three
        loop = asyncio.create_task(first._reconcile_loop())
        await until(lambda: first.outcomes.first_done)
        first._request_stop("test")
        first.queue.finish()
        await asyncio.wait_for(loop, 10)
        assert len(fake.rows) == len(NAMES)

        # Renamed while nobody led; the next leader's database is not back yet.
        write_atomic(root / "a.yaml", manifest("a", display="A renamed", secret_env="SW_SECRET"))
        before = {cid: (row.name, row.version) for cid, row in fake.rows.items()}
        away = AwayStore(store)
        second = _daemon(root, fake, away)
        loop = asyncio.create_task(second._reconcile_loop())
        await until(lambda: away.refused >= 1)
        second.queue.add(["a"], Cause.EDIT)  # as the watcher does
        await asyncio.sleep(0.5)
        # Nothing written without the records: no create, no adoption, no secret re-sent.
        assert {cid: (row.name, row.version) for cid, row in fake.rows.items()} == before
        away.away = False
        second.intake.request_full("the database is back")
        await until(lambda: any(r.name == "A renamed" for r in fake.rows.values()))
        assert len(fake.rows) == len(NAMES)  # renamed, not created again
        second._request_stop("test")
        second.queue.finish()
        await asyncio.wait_for(loop, 10)
    finally:
        store.close()
