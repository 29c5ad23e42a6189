"""The daemon's reconcile loop in process: the real queue, resyncer and workers against
the in-memory platform (tests/engine/fake_platform.py) and a real state store.

What replaced preemption: an edit made while a full resync runs is written before that
resync finishes, by its own partial reconcile, and nothing is written twice, whether
the edited name was still waiting in the resync or already in one of its batches.
Resync batches are slowed down (`SlowResync`) so the edit lands in the middle.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from chanops.daemon._cache import ObservedCache
from chanops.daemon._outcomes import Tally
from chanops.daemon._reconcile import AdoptionGate
from chanops.daemon.service import Daemon, DaemonOptions
from chanops.engine.reconciler import EngineOptions, Prepared, Reconciler
from chanops.manifests.model import LoadResult
from chanops.observability.logging import LogConfig
from chanops.observability.metrics import Metrics
from chanops.platform.api import page_turned
from chanops.platform.models import Connection
from chanops.state.store import StateStore
from daemon.helpers import manifest, write_atomic
from engine.fake_platform import FakePlatform

SECRET = "worker-test-secret-1"
NAMES = [f"c{i:02}" for i in range(12)]


class SlowResync(Reconciler):
    """Resync batches (they plan against the resync's listing) take `delay` seconds;
    `hold` names make the batch holding them wait for `release` instead."""

    delay = 0.05
    hold: frozenset[str] = frozenset()
    release = asyncio.Event

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.holding = asyncio.Event()
        self.released = asyncio.Event()

    async def prepare(self, load: LoadResult, **kw: Any) -> Prepared:
        if kw.get("observed") is not None:
            if self.hold & set(kw.get("only") or ()):
                self.holding.set()
                await self.released.wait()
            await asyncio.sleep(self.delay)
        return await super().prepare(load, **kw)


class Recorder:
    """The order of platform writes and reconcile ends."""

    def __init__(self, fake: FakePlatform, daemon: Daemon) -> None:
        self.log: list[tuple[str, Any]] = []
        update = fake.update_connection
        completed = daemon.outcomes.completed

        async def recorded_update(cid: int, patch: Mapping[str, Any], **kw: Any) -> Connection:
            self.log.append(("write", cid))
            return await update(cid, patch, **kw)

        def recorded_completed(tally: Tally) -> None:
            self.log.append((f"completed {tally.kind}", tally.reconcile_id))
            completed(tally)

        fake.update_connection = recorded_update  # type: ignore[method-assign]
        daemon.outcomes.completed = recorded_completed  # type: ignore[method-assign]

    def index(self, entry: tuple[str, Any]) -> int:
        return self.log.index(entry)


async def until(check: Callable[[], object], within: float = 10.0) -> None:
    """Poll `check` (a fake clock's state, not an awaitable event) until it holds."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - nothing to await: the state is polled
            await asyncio.sleep(0.005)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Daemon, FakePlatform, SlowResync, Path]]:
    root = tmp_path / "connections.d"
    for name in NAMES:
        write_atomic(root / f"{name}.yaml", manifest(name, secret_env="SW_SECRET"))
    fake = FakePlatform()
    store = StateStore.open(tmp_path / "state" / "state.db")
    options = EngineOptions(follow_jobs=False, environ={"SW_SECRET": SECRET})
    reconciler = SlowResync(client=fake, store=store, options=options)
    daemon = Daemon(
        client=fake,
        store=store,
        reconciler=reconciler,
        options=DaemonOptions(
            manifests=root, listen=None, resync_seconds=3600, workers=2, resync_batch=2
        ),
        metrics=Metrics(),
        logging=LogConfig(),
    )
    loop = asyncio.create_task(daemon._reconcile_loop())
    await until(lambda: daemon.outcomes.first_done)
    assert len(fake.rows) == len(NAMES)
    try:
        yield daemon, fake, reconciler, root
    finally:
        daemon._request_stop("test")
        daemon.queue.finish()
        await asyncio.wait_for(loop, 10)
        store.close()


def edit(root: Path, name: str, display: str) -> str:
    path = root / f"{name}.yaml"
    write_atomic(path, manifest(name, display=display, secret_env="SW_SECRET"))
    return os.path.realpath(path)


def connection_id(fake: FakePlatform, name: str) -> int:
    return next(cid for cid, row in fake.rows.items() if row.name == name)


async def test_an_edit_waiting_in_the_resync_is_written_before_it_ends_and_once(
    world: tuple[Daemon, FakePlatform, SlowResync, Path],
) -> None:
    daemon, fake, _, root = world
    recorder = Recorder(fake, daemon)
    last = NAMES[-1]  # the last name of the resync lane: its batch would run last
    cid = connection_id(fake, last)
    fake.writes.clear()
    daemon.intake.request_full("SIGHUP")
    await until(lambda: daemon.resyncer.tally is not None)
    rid = daemon.resyncer.tally.reconcile_id if daemon.resyncer.tally else ""
    await daemon.intake.edited({edit(root, last, "Renamed while resyncing")})
    await until(lambda: ("completed full", rid) in recorder.log)
    assert recorder.index(("write", cid)) < recorder.index(("completed full", rid))
    assert fake.writes == {cid: 1}  # written once, by the edit; the resync wrote nothing
    assert fake.rows[cid].name == "Renamed while resyncing"
    partial = next(e for e in recorder.log if e[0] == "completed partial")
    assert partial[1] != rid and recorder.index(partial) < recorder.index(("completed full", rid))
    assert daemon.outcomes.last_reconcile["kind"] == "full"
    assert daemon.outcomes.last_reconcile["converged"]
    assert daemon.outcomes.last_reconcile["actions"] == 0


async def test_an_edit_of_a_name_in_a_running_resync_batch_waits_for_it_and_writes_once(
    world: tuple[Daemon, FakePlatform, SlowResync, Path],
) -> None:
    daemon, fake, reconciler, root = world
    recorder = Recorder(fake, daemon)
    name = NAMES[0]  # in the first resync batch, held there until the edit is queued
    cid = connection_id(fake, name)
    reconciler.hold = frozenset({name})
    fake.writes.clear()
    daemon.intake.request_full("SIGHUP")
    await asyncio.wait_for(reconciler.holding.wait(), 10)
    rid = daemon.resyncer.tally.reconcile_id if daemon.resyncer.tally else ""
    await daemon.intake.edited({edit(root, name, "Renamed mid-batch")})
    assert daemon.queue.take() is None  # the name is busy: not handed out twice
    reconciler.released.set()
    await until(lambda: ("completed full", rid) in recorder.log)
    assert fake.writes == {cid: 1}
    assert fake.rows[cid].name == "Renamed mid-batch"
    assert recorder.index(("write", cid)) < recorder.index(("completed full", rid))


async def test_a_resync_listing_lets_an_edit_go_first_between_its_pages(
    world: tuple[Daemon, FakePlatform, SlowResync, Path],
) -> None:
    """The resync's listing is background work: an edit queued while one of its pages
    is in flight is written before the listing asks for the next page."""
    daemon, fake, _, root = world
    order: list[str] = []
    in_flight, answered = asyncio.Event(), asyncio.Event()
    listed, update = fake.list_connections, fake.update_connection

    async def two_pages() -> list[Connection]:
        rows = await listed()
        in_flight.set()
        await answered.wait()  # the first page's answer, once the edit is queued
        order.append("page 1")
        await page_turned()
        order.append("page 2")
        return rows

    async def recorded_update(cid: int, patch: Mapping[str, Any], **kw: Any) -> Connection:
        order.append("write")
        return await update(cid, patch, **kw)

    fake.list_connections = two_pages  # type: ignore[method-assign]
    fake.update_connection = recorded_update  # type: ignore[method-assign]
    daemon.intake.request_full("SIGHUP")
    await asyncio.wait_for(in_flight.wait(), 10)
    await daemon.intake.edited({edit(root, NAMES[3], "Renamed while listing")})
    answered.set()
    await until(lambda: "page 2" in order)
    assert order == ["page 1", "write", "page 2"]


async def test_a_failed_write_is_retried_with_backoff_and_a_refusal_parks(
    world: tuple[Daemon, FakePlatform, SlowResync, Path],
) -> None:
    from chanops import errors

    daemon, fake, _, root = world
    cid = connection_id(fake, NAMES[1])
    update = fake.update_connection
    failures = [errors.ServerError("boom"), errors.InvalidCredentials("no")]

    async def failing(connection_id: int, patch: Mapping[str, Any], **kw: Any) -> Connection:
        if connection_id == cid and failures:
            raise failures.pop(0)
        return await update(connection_id, patch, **kw)

    fake.update_connection = failing  # type: ignore[method-assign]
    await daemon.intake.edited({edit(root, NAMES[1], "Will fail")})
    await until(lambda: daemon.queue.backoff.get(NAMES[1]) is not None)
    retry = daemon.queue.backoff.get(NAMES[1])
    assert retry is not None and retry.failures == 1 and not retry.terminal
    await until(lambda: daemon.queue.parked(NAMES[1]), within=5)  # the retry is refused
    await daemon.intake.edited({edit(root, NAMES[1], "Fixed")})  # the manifest changed
    await until(lambda: fake.rows[cid].name == "Fixed")
    await until(lambda: daemon.queue.backoff.get(NAMES[1]) is None)


async def test_the_adoption_gate_runs_an_adopting_batch_alone() -> None:
    gate = AdoptionGate()
    order: list[str] = []
    first = asyncio.Event()

    async def shared(tag: str, hold: asyncio.Event | None = None) -> None:
        async with gate.shared():
            order.append(f"{tag} in")
            if hold is not None:
                await hold.wait()
            order.append(f"{tag} out")

    async def exclusive() -> None:
        async with gate.exclusive():
            order.append("adopt in")
            await asyncio.sleep(0)
            order.append("adopt out")

    a = asyncio.ensure_future(shared("a", first))
    await asyncio.sleep(0)
    x = asyncio.ensure_future(exclusive())
    await asyncio.sleep(0)
    b = asyncio.ensure_future(shared("b"))  # arrives after the adopting batch: waits
    await asyncio.sleep(0.01)
    assert order == ["a in"]
    first.set()
    await asyncio.gather(a, x, b)
    assert order == ["a in", "a out", "adopt in", "adopt out", "b in", "b out"]


def test_a_listing_never_overwrites_what_was_read_after_it_began() -> None:
    def conn(cid: int, version: int) -> Connection:
        return Connection(
            id=cid, name=f"n{cid}", driver="shopware6", status="active", version=version
        )

    cache = ObservedCache()
    cache.replace_all([conn(1, 1), conn(2, 1), conn(3, 1)], cache.tick())
    since = cache.tick()  # a listing starts ...
    cache.update([conn(1, 2)])  # ... an edit writes 1 meanwhile
    cache.remove(3)  # ... and deletes 3
    cache.replace_all([conn(1, 1), conn(2, 5), conn(3, 1), conn(4, 1)], since)  # stale for 1, 3
    by_id = {c.id: c.version for c in cache.snapshot().connections}
    assert by_id == {1: 2, 2: 5, 4: 1}
    assert cache.snapshot().scope is None
