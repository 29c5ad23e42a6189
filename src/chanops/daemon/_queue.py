"""The work queue: connection names waiting to be reconciled, one worker per name at a time.

The model is controller-runtime's workqueue (and kopf's per-object handlers): events
only say *which* names to look at; a worker plans them from desired + observed + memory.

- `add` is idempotent: a name waits in the queue at most once.
- A name is never handed to two workers at once. Added again while a worker has it, it
  is marked dirty and queued again when that worker is done, so the change that
  arrived meanwhile is not lost and is not planned concurrently with the old one.
- Two lanes. Names from a file edit and retries that are due (`URGENT`) are handed out
  before names from a full resync (`RESYNC`): an edit never waits behind 10,000 resync
  names. An edit of a name still waiting in the resync lane moves it to the urgent lane
  (one reconcile, not two).
- A worker takes a batch: every urgent name at once (an edit's names go together), or
  up to `resync_batch` resync names. At most `resync_slots` resync batches run at once
  (the daemon leaves one worker free for urgent work), and only one while urgent work
  runs: urgent work competes with one resync batch at most, and a stream of edits
  cannot stall a resync either.
- Failures are retried with the name's own exponential backoff (`Backoff`, the per-key
  rate limiter): the name comes back, urgent, when its delay is over. A refusal (a 4xx
  that will not change until the manifest does) parks the name: no retry, and periodic
  resyncs skip it, until `forget` (its manifest changed) or a resync that includes
  parked names (SIGHUP, startup, a new root).

Pure bookkeeping and a wake-up: no I/O, and the clock is injected (tests use a fake).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from chanops.daemon._backoff import Backoff, Retry


class Cause(enum.Enum):
    """Why a name is in the queue (the reason a partial reconcile logs)."""

    EDIT = "files changed"  # its manifest file changed, or a held deletion was released
    RETRY = "retry"  # it failed and its backoff is over
    RESYNC = "resync"  # a full resync enqueued every name


class Lane(enum.Enum):
    URGENT = "urgent"
    RESYNC = "resync"


@dataclass(frozen=True, slots=True)
class Batch:
    names: tuple[str, ...]
    lane: Lane
    causes: Mapping[str, Cause]

    @property
    def reason(self) -> str:
        if self.lane is Lane.RESYNC:
            return Cause.RESYNC.value
        edited = any(c is Cause.EDIT for c in self.causes.values())
        return Cause.EDIT.value if edited else Cause.RETRY.value

    @property
    def retries(self) -> list[str]:
        return [n for n, c in self.causes.items() if c is Cause.RETRY]


@dataclass(frozen=True, slots=True)
class Failure:
    error: str
    refusal: bool = False  # the platform refused: park the name until its manifest changes


class WorkQueue:
    def __init__(
        self,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        resync_batch: int = 500,
        urgent_batch: int = 1000,
        resync_slots: int = 1,
    ) -> None:
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._resync_batch = max(1, resync_batch)
        self._urgent_batch = max(1, urgent_batch)
        self._resync_slots = max(1, resync_slots)
        self._urgent: dict[str, Cause] = {}  # insertion-ordered
        self._resync: dict[str, None] = {}
        self._busy: set[str] = set()
        self._dirty: dict[str, Cause] = {}
        # Names a resync batch had when they were edited: queued again (urgent), and the
        # resync is not over before they are done.
        self._owed: set[str] = set()
        self._delayed: dict[str, float] = {}  # name -> due (monotonic)
        self._heap: list[tuple[float, str]] = []  # (due, name); stale entries skipped
        self._running = {Lane.URGENT: 0, Lane.RESYNC: 0}
        self._paused = False
        self._closed = False  # stopping: no urgent batch any more
        self._finished = False  # ... and no resync either: workers end
        self._changed = asyncio.Event()

    # -- adding ----------------------------------------------------------------------------

    def add(self, names: Iterable[str], cause: Cause, *, include_parked: bool = True) -> None:
        for name in names:
            if name in self._busy:
                if self._dirty.get(name) in (None, Cause.RESYNC):
                    self._dirty[name] = cause
            elif cause is Cause.RESYNC:
                if name in self._urgent or name in self._resync:
                    continue
                if not include_parked and self.parked(name):
                    continue
                self._delayed.pop(name, None)  # the resync plans it now
                self._resync[name] = None
            else:
                self._resync.pop(name, None)
                self._delayed.pop(name, None)
                if self._urgent.get(name) is not Cause.EDIT:
                    self._urgent[name] = cause
        self._kick()

    def forget(self, names: Iterable[str]) -> None:
        """Their manifests changed: failures and parking are forgotten."""
        names = list(names)
        self.backoff.reset(names)
        for name in names:
            self._delayed.pop(name, None)
        self._kick()

    def parked(self, name: str) -> bool:
        retry = self.backoff.get(name)
        return retry is not None and retry.terminal

    # -- taking ----------------------------------------------------------------------------

    def take(self) -> Batch | None:
        """The next batch a worker may run now, or None."""
        self._promote_due()
        if self._urgent and not self._paused and not self._closed:
            names = list(self._urgent)[: self._urgent_batch]
            causes = {n: self._urgent.pop(n) for n in names}
            return self._start(Batch(tuple(names), Lane.URGENT, causes))
        if self._resync and not self._paused and self._resync_slot_free():
            names = list(self._resync)[: self._resync_batch]
            for name in names:
                del self._resync[name]
            return self._start(Batch(tuple(names), Lane.RESYNC, dict.fromkeys(names, Cause.RESYNC)))
        return None

    async def get(self) -> Batch | None:
        """Wait for a batch; None once the queue is closed and no resync work is left."""
        while True:
            batch = self.take()
            if batch is not None:
                return batch
            if self._finished and not self._resync:
                return None
            changed = self._changed
            due = self.next_due()
            timeout = None if due is None else max(0.0, due - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)

    def _resync_slot_free(self) -> bool:
        running = self._running[Lane.RESYNC]
        if self._running[Lane.URGENT] or self._urgent:
            return running == 0  # urgent work competes with one resync batch at most
        return running < self._resync_slots

    def _start(self, batch: Batch) -> Batch:
        self._busy.update(batch.names)
        self._running[batch.lane] += 1
        return batch

    def _promote_due(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            due, name = heapq.heappop(self._heap)
            if self._delayed.get(name) != due:
                continue  # stale: re-added, forgotten or rescheduled since
            del self._delayed[name]
            if name in self._busy:
                self._dirty.setdefault(name, Cause.RETRY)
            elif name not in self._urgent:
                self._resync.pop(name, None)
                self._urgent[name] = Cause.RETRY

    # -- finishing -------------------------------------------------------------------------

    def done(
        self,
        batch: Batch,
        *,
        settled: Iterable[str] = (),
        failed: Mapping[str, Failure] | None = None,
    ) -> list[tuple[str, Retry]]:
        """A worker finished `batch`: `settled` names succeeded (backoff reset), `failed`
        ones are retried later or parked. Names in neither are just released (a batch
        cut short by an outage: the resync that follows it covers them)."""
        now = self._clock()
        self._running[batch.lane] -= 1
        self._busy.difference_update(batch.names)
        self.backoff.reset(settled)
        retries: list[tuple[str, Retry]] = []
        for name, failure in (failed or {}).items():
            if failure.refusal:
                retries.append((name, self.backoff.park(name, failure.error)))
                continue
            retry = self.backoff.fail(name, now, failure.error)
            retries.append((name, retry))
            self._delayed[name] = retry.due
            heapq.heappush(self._heap, (retry.due, name))
        if batch.lane is Lane.URGENT:
            self._owed.difference_update(batch.names)
        for name in batch.names:
            cause = self._dirty.pop(name, None)
            if cause is not None:
                if batch.lane is Lane.RESYNC:
                    self._owed.add(name)
                self.add([name], cause)
        self._kick()
        return retries

    def depth(self) -> dict[str, int]:
        """Names waiting, by lane (`chanops_queue_depth`): urgent, resync, delayed retries."""
        return {
            "urgent": len(self._urgent),
            "resync": len(self._resync),
            "delayed": len(self._delayed),
        }

    # -- control ---------------------------------------------------------------------------

    def pause(self) -> None:
        """Hand out nothing (the platform is unreachable, or the root is being switched)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._kick()

    def close(self) -> None:
        """Stopping: urgent work is abandoned, the resync in flight may finish."""
        self._closed = True
        self._owed.clear()  # edits are abandoned: the resync does not wait for them
        self._kick()

    def finish(self) -> None:
        """No resync will start any more: `get` returns None once the lane is empty."""
        self._closed = self._finished = True
        self._kick()

    def clear_resync(self) -> None:
        """Drop the resync lane (an outage: the resync that follows it enqueues again)."""
        self._resync.clear()
        self._owed.clear()
        self._dirty = {n: c for n, c in self._dirty.items() if c is not Cause.RESYNC}
        self._kick()

    def resync_pending(self) -> bool:
        """Resync names waiting or in flight, due back after an urgent batch, or edited
        while in a resync batch and not reconciled again yet: a resync ends after the
        edits of its own names."""
        if self._resync or self._running[Lane.RESYNC]:
            return True
        if self._paused:
            return False  # an outage: nothing more runs; the resync is over once idle
        return bool(self._owed) or any(c is Cause.RESYNC for c in self._dirty.values())

    def running(self) -> int:
        return self._running[Lane.URGENT] + self._running[Lane.RESYNC]

    def urgent_busy(self) -> bool:
        """Urgent work waits (and is not paused) or runs."""
        waiting = bool(self._urgent) and not self._paused and not self._closed
        return waiting or self._running[Lane.URGENT] > 0

    async def wait_until(self, done: Callable[[], bool]) -> None:
        """Wait until `done()` holds; it is checked after every change of the queue."""
        while not done():
            await self._changed.wait()

    def next_due(self) -> float | None:
        while self._heap and self._delayed.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def waiting(self) -> int:
        return len(self._urgent) + len(self._resync)

    def _kick(self) -> None:
        """Wake every waiter: each waits on the event that was current when it began."""
        self._changed.set()
        self._changed = asyncio.Event()
