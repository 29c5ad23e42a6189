"""The event history in the state store (chanops.state._history): the writer appends
its events in batches, off the reconcile path; everyone shows what the store keeps.

An event costs the reconcile path a deque append (`EventLog`); once a second (and at
a clean stop) the writer (the SQLite daemon, or a shared store's leader) appends
whatever arrived since, in one transaction that also trims the table. On PostgreSQL
that write is fenced like every other: a replica that lost its lease writes nothing,
and its batch stays in memory. A standby reads the history when it refreshes its view;
a new leader and a restarted daemon read it before their first reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from chanops.errors import ChanopsError

if TYPE_CHECKING:
    from chanops.daemon._status import EventLog
    from chanops.state.protocol import Store

T = TypeVar("T")

FLUSH_SECONDS = 1.0


class History:
    """The store's side of an `EventLog`. `in_thread`: the store is shared (PostgreSQL,
    a network round trip, taken in a worker thread); SQLite's writer connection belongs
    to the event loop's thread, and its local write takes well under a millisecond."""

    def __init__(self, store: Store, events: EventLog, *, in_thread: bool) -> None:
        self.store = store
        self.events = events
        self.in_thread = in_thread

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn) if self.in_thread else fn()

    async def load(self) -> None:
        """Show the store's history (with this replica's unsaved events)."""
        with contextlib.suppress(ChanopsError):
            self.events.replace(await self._call(self.store.events))

    async def flush(self) -> None:
        """Append the unsaved events in one write; on failure they wait for the next."""
        batch = self.events.take()
        if not batch:
            return
        try:
            await self._call(lambda: self.store.append_events(batch))
        except ChanopsError:
            # Fenced (no longer the leader), or the store failed: nothing is lost from
            # this replica's view, and no event is emitted (it would join the batch).
            self.events.give_back(batch)

    async def run(self, until: asyncio.Event) -> None:
        """Flush every FLUSH_SECONDS until `until` is set (the caller flushes last)."""
        while not until.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), timeout=FLUSH_SECONDS)
            if not until.is_set():
                await self.flush()
