"""A replica's life on a shared PostgreSQL store (docs/ha.md): standby until elected, a
term as leader, standby again, with the election (`daemon/leader.py`) running throughout.

`Terms` drives the `Daemon` it belongs to: each term composes the daemon's parts afresh
and runs its ordinary reconcile loop from a startup resync, so everything a leader
knows comes from the store and the platform, nothing from an earlier term.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from chanops.errors import ChanopsError, StoreError

if TYPE_CHECKING:
    from chanops.daemon.leader import Leadership
    from chanops.daemon.service import Daemon


T = TypeVar("T")


class Terms:
    def __init__(self, daemon: Daemon, leader: Leadership) -> None:
        self.daemon = daemon
        self.leader = leader
        self.stopping = daemon._stop  # the process's stop, not a term's end

    async def run(self) -> None:
        """Standby until elected, leader until the lease is lost, standby again."""
        election = asyncio.create_task(self.leader.run(self.stopping), name="election")
        election.add_done_callback(self.daemon._supervise)
        try:
            while not self.stopping.is_set():
                await self._standby()
                if not self.stopping.is_set():
                    await self._lead()
        finally:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(election, timeout=self.daemon.options.shutdown_timeout)
            await self.leader.release()

    async def once(self) -> int:
        """`--once` on a shared store: take the lease, reconcile once, hand it back."""
        leader, daemon = self.leader, self.daemon
        election = asyncio.create_task(leader.run(self.stopping), name="election")
        try:
            wait = leader.lease_seconds + 2 * leader.renew_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leader.elected.wait(), timeout=wait)
            if not leader.elected.is_set():
                daemon.sink.emit(
                    "daemon.failed",
                    "error",
                    error=f"another replica holds the lease (waited {wait:g}s)",
                )
                return 1
            return await daemon._once()
        finally:
            self.stopping.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await election
            await leader.release()

    async def _standby(self) -> None:
        """Until elected: the manifests loaded and the store's records read, for /status."""
        daemon, leader = self.daemon, self.leader
        while not (leader.elected.is_set() or self.stopping.is_set()):
            with contextlib.suppress(ChanopsError):
                await daemon.loads.full()
                daemon.parts.records.replace(await asyncio.to_thread(daemon.store.records))
                await daemon.history.load()  # the leader's events, for /status and the page
            await first_set(leader.elected, self.stopping, seconds=daemon.options.standby_refresh)

    async def _lead(self) -> None:
        """One term: fresh parts, the reconcile loop from a startup resync, until the
        lease is lost (in-flight work is cancelled: it can write nothing any more) or
        the daemon stops (in-flight work may finish, as without replicas)."""
        daemon, leader = self.daemon, self.leader
        daemon._compose()
        leader.on_webhook = daemon.source.trigger if daemon.source is not None else None
        await daemon.history.load()  # the previous terms' events, then this term's
        flushing = asyncio.create_task(daemon.history.run(daemon._term_end), name="history")
        follower = await daemon._start_following()
        daemon.scheduler.start()
        reconciling = asyncio.create_task(daemon._reconcile_loop(), name="reconcile loop")
        await first_set(leader.lost, self.stopping, task=reconciling)
        daemon._term_end.set()
        daemon.queue.close()
        stopping = self.stopping.is_set()
        if stopping and not reconciling.done():
            await asyncio.wait({reconciling}, timeout=daemon.options.shutdown_timeout)
        if not reconciling.done():
            reconciling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reconciling
        await daemon.scheduler.shutdown(grace=5.0 if stopping else 0.0)
        await stop_follower(follower, daemon.source is not None)
        leader.on_webhook = None
        error = None if reconciling.cancelled() else reconciling.exception()
        await flushing
        if not (leader.lost.is_set() or isinstance(error, StoreError)):
            await daemon.history.flush()  # still the leader: this term's last events
        if isinstance(error, StoreError):
            # The shared store failed under the term (the database went away): nothing
            # more can be written safely. Hand the lease back and stand by; the election
            # goes on, and the next term starts again from the store.
            await leader.release(f"the state store failed: {error}")
        elif error is not None:
            raise error


async def first_set(
    *events: asyncio.Event, seconds: float | None = None, task: asyncio.Task[None] | None = None
) -> None:
    """Wait until one of `events` is set, `task` ends, or `seconds` pass."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(
            [*waits, *([task] if task is not None else [])],
            timeout=seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for wait in waits:
            wait.cancel()


async def stop_follower(follower: asyncio.Task[None], endless: bool) -> None:
    """Stop the watcher (it ends with the term) or the git follower (`endless`)."""
    if endless:
        follower.cancel()  # the fetch loop never ends by itself
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(follower, timeout=3)


class _Latest:
    """Forwards attribute reads to whatever `get()` returns now."""

    __slots__ = ("_get",)

    def __init__(self, get: Callable[[], object]) -> None:
        self._get = get

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


def latest(get: Callable[[], T]) -> T:
    """A stand-in for the object `get()` returns at each use: a consumer built once (the
    status page) follows the parts each replica term composes afresh."""
    return cast(T, _Latest(get))
