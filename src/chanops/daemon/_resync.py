"""The full resync: relist the platform once, enqueue every name, wait for them.

A resync runs at startup, every `--resync`, on SIGHUP, when the root is swapped or a
directory moves, for every new git commit, and (with backoff) while the platform is
unreachable. One at a time; requests that arrive while one runs make the next one.

    load (a walk of the root)  |  list the platform (once)   -> ObservedCache
    enqueue desired + remembered names (resync lane)
    the workers take them in batches, each planned against that one listing
    -> reconcile.completed (kind full), once its last batch is done

With `--git` a resync is also where the checkout switches: only once no batch is in
flight (the queue is paused while it drains), so every batch of a resync plans against
the same commit: one commit, one consistent plan.

When a batch finds the platform unreachable the queue pauses and drops the resync's
remaining names; once the batches in flight have ended (their failures logged first),
the outage is declared once (`platform.unreachable`) and the resync is retried with
backoff; the first retry whose listing succeeds closes the outage and resumes the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from chanops.daemon._intake import FullRequest, Intake
from chanops.daemon._outcomes import Outcomes, Tally
from chanops.daemon._parts import Parts
from chanops.daemon._queue import Cause
from chanops.daemon._reconcile import BatchRunner, new_id
from chanops.errors import ChanopsError, PlatformError
from chanops.observability.logging import describe_error
from chanops.platform.models import Connection

log = structlog.get_logger("chanops.daemon")


class Resyncer:
    def __init__(
        self,
        parts: Parts,
        outcomes: Outcomes,
        *,
        intake: Intake,
        runner: BatchRunner,
        interval: float,
        stopping: asyncio.Event,
        after_startup: Callable[[], None] | None = None,
    ) -> None:
        self.client = parts.client
        self.sources = parts.sources
        self.queue = parts.queue
        self.records = parts.records
        self.scheduler = parts.scheduler
        self.observed = parts.observed
        self.logging = parts.logging
        self.intake = intake
        self.loads = intake.loads
        self.outcomes = outcomes
        self.runner = runner
        self.interval = interval
        self.after_startup = after_startup
        self.stopping = stopping
        self.tally: Tally | None = None  # the resync whose names are in the queue
        self._suspect: str | None = None  # a batch found the platform unreachable
        self._wake = asyncio.Event()
        self._records_read = False
        # Batches plan against the copy of the store's records: none runs before it is
        # read (a batch planned without it takes every managed connection for a new one,
        # e.g. an edit while a new leader's store is still unreachable). Resumed by the
        # first resync that reads the records and lists the platform.
        self.queue.pause()

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        if self.sources.source is not None and self.sources.next_revision is None:
            # No checkout yet (first start, remote down): nothing to load, nothing to
            # delete. /readyz says why; the first fetch that works starts the loop.
            await _first(self.intake.have_revision.wait(), self.stopping.wait())
            if self.stopping.is_set():
                return
            self.intake.take_full()  # the startup resync covers the checkout so far
        await self.resync(FullRequest("startup"))
        if self.after_startup is not None:
            self.after_startup()
        next_resync = time.monotonic() + self.interval
        while True:
            request = await self._next(next_resync)
            if request is None:
                return
            await self.resync(request)
            next_resync = time.monotonic() + self.interval

    async def _next(self, next_resync: float) -> FullRequest | None:
        """Wait for the next resync to run; None when the daemon stops."""
        while not self.stopping.is_set():
            if self._suspect is not None:
                await self._declare_outage(self._suspect)
                continue
            request = self.intake.take_full()
            if request is not None:
                return request
            now = time.monotonic()
            if now >= next_resync:
                return FullRequest("resync", include_parked=False)
            due = self.outcomes.retry_due()
            if due is not None and due <= now:
                return FullRequest("platform retry", include_parked=False)
            deadline = min(next_resync, due if due is not None else float("inf"))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    _first(
                        self.intake.full_requested.wait(),
                        self.stopping.wait(),
                        self._wake.wait(),
                    ),
                    timeout=deadline - now,
                )
        return None

    def unreachable(self, error: str) -> None:
        """A batch could not reach the platform: stop handing out work, and drop the
        resync's remaining names (the retry after the outage enqueues every name)."""
        self.queue.pause()
        self.queue.clear_resync()
        if self.tally is not None and self.tally.error is None:
            self.tally.error = error
        elif self._suspect is None and self.tally is None:
            self._suspect = error
            self._wake.set()

    async def _declare_outage(self, error: str) -> None:
        """After the batches in flight have ended: one `platform.unreachable`."""
        await self.queue.wait_until(lambda: self.queue.running() == 0)
        self._suspect = None
        self.outcomes.unreachable(error)

    # -- one resync ------------------------------------------------------------------------

    def stamp(self) -> dict[str, Any]:
        """What every event of a reconcile carries beyond its id: the git commit."""
        revision = self.sources.revision
        return {} if revision is None else {"revision": revision.sha, "subject": revision.subject}

    async def resync(self, request: FullRequest) -> None:
        tally = Tally("full", request.reason, new_id())
        if self.sources.source is not None:
            await self._switch_root()
        with structlog.contextvars.bound_contextvars(
            reconcile_id=tally.reconcile_id, **self.stamp()
        ):
            names = await self._read(tally)
            if names is None:
                return
            self.outcomes.held.clear()  # every name is planned now
            self.tally = tally
            self.queue.add(sorted(names), Cause.RESYNC, include_parked=request.include_parked)
            await self.queue.wait_until(lambda: not self.queue.resync_pending())
            self.tally = None
            await self.runner.refresh_stale()
            if tally.error is None:
                self.outcomes.completed(tally)
                return
            await self.queue.wait_until(lambda: self.queue.running() == 0)
            self.outcomes.failed(tally, tally.error)
            self.outcomes.unreachable(tally.error)

    async def _read(self, tally: Tally) -> set[str] | None:
        """Load, list the platform (concurrently), and return every name to plan;
        None when the listing failed (logged, retry scheduled)."""
        since = self.observed.tick()
        with self.runner.background_listing():  # the task keeps this context
            listing = asyncio.ensure_future(self.client.list_connections())
        try:
            load = await self.loads.full()
            if not self._records_read:
                # Once: from then on the workers keep the copy current.
                self.records.replace(await asyncio.to_thread(self.records.read_all))
                self.loads.index.note_records(dict(self.records))
                self.scheduler.keep_cadence({n: r.last_sync_at for n, r in self.records.items()})
                self._records_read = True
            self.outcomes.started(tally, len(load.manifests))
            listed: list[Connection] = await listing
        except PlatformError as exc:
            _discard(listing)
            self.outcomes.failed(tally, describe_error(exc))
            self.queue.pause()  # batches would fail the same way: let those in flight end
            await self.queue.wait_until(lambda: self.queue.running() == 0)
            self.outcomes.unreachable(describe_error(exc))
            return None
        except ChanopsError as exc:
            _discard(listing)
            self.outcomes.failed(tally, describe_error(exc))
            self.outcomes.retry_resync(describe_error(exc))
            return None
        self.observed.replace_all(listed, since)
        self._suspect = None  # it answered
        self.outcomes.reachable()
        self.queue.resume()
        return {m.name for m in load.manifests} | set(self.records)

    async def _switch_root(self) -> None:
        """Between resyncs, with no batch in flight: read the newest checkout."""
        revision, self.sources.next_revision = self.sources.next_revision, None
        current = self.sources.revision
        if revision is None or (current is not None and revision.path == current.path):
            return
        self.queue.pause()  # resumed once this resync has listed the platform
        await self.queue.wait_until(lambda: self.queue.running() == 0)
        self.sources.revision = revision
        self.loads.switch_root(revision.path)
        self.logging.revision.value = revision.sha
        self.logging.revision.subject = revision.subject


async def _first(*waits: Any) -> None:
    """Wait for the first of several awaitables; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _discard(listing: asyncio.Future[list[Connection]]) -> None:
    if listing.done() and not listing.cancelled():
        listing.exception()  # retrieved: no "exception was never retrieved"
    else:
        listing.cancel()
