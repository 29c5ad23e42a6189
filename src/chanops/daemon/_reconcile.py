"""One batch of names -> one partial reconcile -> its outcomes.

A worker's batch is planned and executed as ONE partial reconcile,
`Reconciler.prepare(load, only=batch)` + `execute`: per-name plans would be far too slow
at 10,000 connections, and one plan per batch keeps the planner's guards whole (the
mass-delete guard counts the deletes outside `only` too, so a resync cannot delete a
root a batch at a time).

What a batch observes depends on its lane:

- a resync batch plans against the resync's listing (`ObservedCache.snapshot`): the
  platform is listed once per resync, not once per batch;
- an urgent batch (an edit, a retry) reads its connections fresh, by id, as the engine
  does for `only` (a name chanops has not bound yet lists the platform, to adopt rather
  than duplicate).

Both plan with the daemon's copy of the store's records (`RecordCache`), current for the
batch's names because a name is in one batch at a time and every batch re-reads the
rows it wrote when it ends (all of its names' rows when it failed).

Adoption by name must see every connection together with who owns it. A connection
another batch is creating at that moment is on the platform before its owner is in the
store, so it would look unmanaged: a batch holding a name that is not bound yet runs
alone (`AdoptionGate`), after the batches in flight and before the next ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

import structlog

from chanops.daemon._outcomes import Outcomes, Tally
from chanops.daemon._parts import Parts
from chanops.daemon._queue import Batch, Lane
from chanops.engine.reconciler import Prepared, ReconcileResult
from chanops.errors import ChanopsError, NotFound, PlatformError
from chanops.manifests.model import LoadResult, Manifest
from chanops.observability.logging import describe_error
from chanops.platform.api import between_pages

REFRESH_BY_LIST = 50  # more written connections than this: re-list instead of GET each
YIELD_CAP_S = 1.0  # the longest a resync batch waits for urgent work at one step


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class AdoptionGate:
    """A readers-writer lock: batches share it; a batch that may adopt holds it alone.

    Writer-preferring: once an adopting batch waits, no new batch starts before it.
    """

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
            self._shared += 1
        try:
            yield
        finally:
            async with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            self._waiting += 1
            try:
                await self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            async with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class BatchRunner:
    def __init__(
        self,
        parts: Parts,
        outcomes: Outcomes,
        *,
        load: Callable[[], LoadResult | None],
        resync: Callable[[], Tally | None],
        on_unreachable: Callable[[str], None],
        on_success: Callable[[Batch, ReconcileResult, Tally], None],
    ) -> None:
        self.events = parts.events
        self.client = parts.client
        self.reconciler = parts.reconciler
        self.index = parts.index
        self.records = parts.records
        self.observed = parts.observed
        self.metrics = parts.metrics
        self.logging = parts.logging
        self.outcomes = outcomes
        self._load = load
        self._resync = resync
        self._on_unreachable = on_unreachable
        self._on_success = on_success
        self.gate = AdoptionGate()
        self.stale: set[int] = set()  # written by resync batches, re-read when it ends
        self._scanned: dict[str, Manifest] = {}  # manifests searched for literal secrets

    async def run(self, batch: Batch, stamp: Mapping[str, Any]) -> None:
        """Plan and execute `batch`; every outcome is booked before this returns.

        Expected failures (the platform, the store, a plan) are handled here; anything
        else escapes to the reconcile loop's supervision (a bug: the daemon exits 70).
        """
        resync = self._resync() if batch.lane is Lane.RESYNC else None
        tally = resync or Tally("partial", batch.reason, new_id())
        with structlog.contextvars.bound_contextvars(reconcile_id=tally.reconcile_id, **stamp):
            if resync is None:
                self.outcomes.started(tally, len(batch.names))
            if batch.retries:
                self.metrics.retries.labels(kind="reconcile").inc(len(batch.retries))
            gate = self.gate.exclusive() if self._adopting(batch.names) else self.gate.shared()
            async with gate:
                await self._reconcile(batch, tally)

    async def _reconcile(self, batch: Batch, tally: Tally) -> None:
        load = self._load()
        assert load is not None, "a name is queued only after a load"
        only = set(batch.names)
        resync = batch.lane is Lane.RESYNC
        try:
            if resync:
                await self.yield_to_urgent()
            observed = self.observed.snapshot() if resync else None
            prepared = await self.reconciler.prepare(
                load, only=only, observed=observed, memory=self.records.snapshot()
            )
            self.register_secrets(load, prepared, only)
            if resync:
                await self.yield_to_urgent()
            result = await self.reconciler.execute(prepared)
        except PlatformError as exc:
            await self._reread_records(batch.names)  # it may have written some
            self.outcomes.queue.done(batch)  # released: the resync after the outage covers them
            self._unreachable(tally, describe_error(exc))
            return
        except ChanopsError as exc:
            await self._reread_records(batch.names)
            error = describe_error(exc)
            self.outcomes.batch_failed(batch, error, tally)
            if tally.kind == "partial":
                self.outcomes.failed(tally, error)
            return
        # Only the rows this reconcile wrote: a converged resync batch writes none, and
        # re-reading 1,000 rows per batch cost a fifth of a resync's CPU.
        await self._reread_records(batch.names if result.written is None else result.written)
        await self._observe_after(batch, prepared, result)
        self._on_success(batch, result, tally)

    async def yield_to_urgent(self) -> None:
        """A resync batch lets urgent work (an edit, a retry) run alone between its steps:
        its CPU-bound planning would otherwise share the one interpreter with the edit.
        At most YIELD_CAP_S per step, so a stream of edits cannot stall the resync."""
        queue = self.outcomes.queue
        if queue.urgent_busy():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    queue.wait_until(lambda: not queue.urgent_busy()), YIELD_CAP_S
                )

    def _unreachable(self, tally: Tally, error: str) -> None:
        if tally.kind == "partial":
            self.outcomes.failed(tally, error)
        elif tally.error is None:
            tally.error = error  # the resync ends failed, once its batches in flight end
        self._on_unreachable(error)

    def _adopting(self, names: Iterable[str]) -> bool:
        """Whether a name may adopt by name: a manifest without spec.connectionId whose
        name the store has not bound to a connection yet."""
        for name in names:
            m = self.index.manifest(name)
            if m is None or m.suspend or m.connection_id is not None:
                continue
            record = self.records.get(name)
            if record is None or record.connection_id is None:
                return True
        return False

    async def _reread_records(self, names: Iterable[str]) -> None:
        names = list(names)
        if not names:
            return
        rows = await asyncio.to_thread(self.records.read, names)
        self.index.note_records(self.records.apply(rows))

    async def _observe_after(
        self, batch: Batch, prepared: Prepared, result: ReconcileResult
    ) -> None:
        """Keep the observed cache (and /status, and the scheduler) current: what an
        urgent batch read, and the connections it wrote, re-read now; a resync batch's
        writes are re-read once, when the resync ends (`refresh_stale`)."""
        written: set[int] = set()
        for o in result.outcomes:
            cid = o.connection_id
            if cid is None and (record := self.records.get(o.name)) is not None:
                cid = record.connection_id
            if cid is not None:
                written.add(cid)
        if batch.lane is Lane.RESYNC:
            self.stale |= written
            return
        self.observed.update(prepared.observed.connections)
        await self.refresh(written)

    async def refresh_stale(self) -> None:
        stale, self.stale = self.stale, set()
        with self.background_listing():
            await self.refresh(stale)

    @contextlib.contextmanager
    def background_listing(self) -> Iterator[None]:
        """Listings started in this block are background work: between two pages they
        let urgent work run first (`between_pages`), as a resync batch does between its
        steps. Not for an urgent batch's own listing: it would wait for itself."""
        token = between_pages.set(self.yield_to_urgent)
        try:
            yield
        finally:
            between_pages.reset(token)

    async def refresh(self, ids: set[int]) -> None:
        """Re-read connections that were written (one paged list when there are many)."""
        if not ids:
            return
        if len(ids) > REFRESH_BY_LIST:
            since = self.observed.tick()
            try:
                listed = await self.client.list_connections()
            except PlatformError as exc:
                self.events.emit("status.refresh_failed", "debug", error=describe_error(exc))
                return
            self.observed.replace_all(listed, since)
        else:
            await asyncio.gather(*(self._read(cid) for cid in sorted(ids)))
        # The connections gauge is counted once the reconcile is booked (`Outcomes`):
        # a count here too would walk 10,000 records twice per edit.

    async def _read(self, cid: int) -> None:
        try:
            self.observed.update([await self.client.get_connection(cid)])
        except NotFound:
            self.observed.remove(cid)
        except PlatformError as exc:
            # The entry stays as it was: a write planned against it carries If-Match,
            # so a stale version costs a 412 and a re-read, never a lost update.
            self.events.emit(
                "status.refresh_failed", "debug", connection_id=cid, error=describe_error(exc)
            )

    def register_secrets(self, load: LoadResult, prepared: Prepared, only: set[str]) -> None:
        """Teach the log redactor every secret value this batch may write or echo."""
        from chanops.manifests.secrets import iter_secret_refs

        values: list[str] = []
        for by_pointer in prepared.context.secrets.values():
            values.extend(str(v) for v in by_pointer.values() if v is not None)
        for name in only:
            m = self.index.manifest(name)
            if m is None or self._scanned.get(name) is m:
                continue  # the same manifest object: scanned already (loads reuse them)
            self._scanned[name] = m
            for _, ref in iter_secret_refs(m):
                if isinstance(ref, str):  # a literal secret in a manifest (validate warns)
                    values.append(ref)
        self.logging.redactor.add(values)
