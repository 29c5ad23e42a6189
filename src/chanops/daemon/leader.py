"""Leader election for replicas sharing a PostgreSQL store, and the fence on their writes.

Every replica runs `Leadership.run`: a standby tries to take the lease (chanops.state.
lease) about when it expires; the leader renews it every `renew` seconds. Time is kept
on two clocks that are never compared: the lease's expiry is the server's, and the
leader's own deadline is its monotonic clock's, started *before* each successful renew
was sent and `lease - margin` long. That deadline passes before the server can hand the
lease to anyone else, so:

- at its deadline the leader stops every platform write (`FencedPlatform` refuses them
  with `NotLeader`, checking the clock itself: a process woken from SIGSTOP refuses
  before its election loop has even run), logs `leader.lost` and becomes a standby;
- every store write is fenced in the database by the term's epoch
  (chanops.state.postgres), so a write that slipped past the clock still fails;
- the intents a lost leader left keep their idempotency keys: the next leader repeats a
  create with the same key, and the platform makes it once.

A clean shutdown releases the lease, so a standby takes over within one retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from prometheus_client import Gauge

from chanops.errors import PlatformUnavailable, StoreError
from chanops.events import EventSink, Level
from chanops.observability.metrics import Metrics
from chanops.platform.api import PlatformAPI
from chanops.platform.models import Connection, CreateResult, Driver, Job
from chanops.state import lease
from chanops.state.postgres import CONNECT_TIMEOUT, PostgresStore, first_line

LEASE_SECONDS = 10.0
RENEW_SECONDS = 2.0
# A standby that saw the lease expire in `remaining` seconds tries again just after.
EXPIRY_SLACK = 0.05


class NotLeader(PlatformUnavailable):
    """A platform write refused: this replica does not hold the lease (any more)."""


def new_holder() -> str:
    """This replica's name in the lease: host, pid and a random tag (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leadership:
    """This replica's role: standby until it holds the lease, leader until it loses it."""

    def __init__(
        self,
        *,
        dsn: str,
        store: PostgresStore,
        events: EventSink,
        metrics: Metrics,
        lease_seconds: float = LEASE_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dsn = dsn
        self.store = store
        self.events = events
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        # The leader gives up this long before the server's expiry: one renew interval,
        # and never less than a fifth of the lease.
        self.margin = max(renew_seconds, lease_seconds / 5)
        # A store operation waiting for a connection (the server is away) blocks the
        # event loop: at most half the margin, so the term still ends on time.
        store.wait = min(store.wait, max(self.margin / 2, 0.5))
        self.holder = holder or new_holder()
        self.clock = clock
        self.term: lease.Term | None = None
        self.deadline = 0.0  # monotonic: the leader writes nothing after it
        self.elected = asyncio.Event()  # set while leading
        self.lost = asyncio.Event()  # set when a term ends; cleared when the next starts
        self.on_webhook: Callable[[], None] | None = None  # the leader's git fetch trigger
        self.gauge = Gauge(
            "chanops_leader",
            "1 while this replica holds the leader lease, 0 on a standby.",
            registry=metrics.registry,
        )
        self._conn: psycopg.AsyncConnection[Any] | None = None

    # -- what the rest of the daemon asks --------------------------------------------------

    @property
    def role(self) -> str:
        return "leader" if self.term is not None else "standby"

    def may_write(self) -> bool:
        """True while leading and before the deadline; past it the term is over."""
        if self.term is None:
            return False
        if self.clock() >= self.deadline:
            self._lose("renew deadline passed")
            return False
        return True

    def describe(self) -> dict[str, Any]:
        """The `leader` part of /status."""
        info: dict[str, Any] = {"role": self.role, "holder": self.holder}
        if self.term is not None:
            info["epoch"] = self.term.epoch
        return info

    def webhook(self) -> None:
        """A verified push delivery: the leader fetches; a standby records it for the leader."""
        if self.term is not None and self.on_webhook is not None:
            self.on_webhook()
            return
        self.store.record_webhook(self.holder)

    # -- the election loop -----------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Acquire or renew every `renew` seconds until `stopping`; never raises for the
        database: a failed attempt is logged and tried again."""
        while not stopping.is_set():
            wait = await self._attempt()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=max(wait, 0.0))
        await self._close()

    async def _attempt(self) -> float:
        """One acquire or renew; how long to wait before the next."""
        started = self.clock()
        if self.term is not None and started >= self.deadline:
            self._lose("renew deadline passed")  # e.g. the process was stopped
        try:
            conn = await self._connection()
            if self.term is not None:
                return await self._renew(conn, started)
            return await self._acquire(conn, started)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self._close()
            self.events.emit(
                "leader.election_failed",
                "warning",
                role=self.role,
                error=first_line(exc) if str(exc) else "no answer from the database in time",
            )
            if self.term is not None:
                return min(self.renew_seconds, max(self.deadline - self.clock(), 0.0))
            return self.renew_seconds

    async def _renew(self, conn: psycopg.AsyncConnection[Any], started: float) -> float:
        term = self.term
        assert term is not None
        renewed = await asyncio.wait_for(
            lease.arenew(conn, term, self.lease_seconds),
            timeout=max(self.deadline - self.clock(), 0.01),
        )
        if not renewed:
            self._lose("the lease is no longer this replica's")
            return 0.0  # try to take it again at once: it may simply have expired
        self.deadline = started + self.lease_seconds - self.margin
        if self.on_webhook is not None:
            with contextlib.suppress(StoreError):
                if await asyncio.to_thread(self.store.take_webhooks):
                    self.on_webhook()  # what standbys received since the last renew
        return self.renew_seconds

    async def _acquire(self, conn: psycopg.AsyncConnection[Any], started: float) -> float:
        term = await asyncio.wait_for(
            lease.aacquire(conn, self.holder, self.lease_seconds), timeout=self.renew_seconds
        )
        if term is None:
            view = await asyncio.wait_for(lease.acurrent(conn), timeout=self.renew_seconds)
            if view is None:
                return self.renew_seconds
            return min(self.renew_seconds, max(view.remaining, 0.0) + EXPIRY_SLACK)
        self._lead(term, deadline=started + self.lease_seconds - self.margin)
        return self.renew_seconds

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn: psycopg.AsyncConnection[Any] = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            ),
            timeout=CONNECT_TIMEOUT,
        )
        self._conn = conn
        return conn

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    # -- terms -----------------------------------------------------------------------------

    def _lead(self, term: lease.Term, *, deadline: float) -> None:
        self.term = term
        self.deadline = deadline
        self.store.fence = term
        self.gauge.set(1)
        self.lost.clear()
        self.elected.set()
        self.events.emit("leader.elected", "info", holder=term.holder, epoch=term.epoch)

    def _lose(self, reason: str) -> None:
        term = self.term
        if term is None:
            return
        self.term = None
        self.store.fence = None
        self.gauge.set(0)
        self.elected.clear()
        self.lost.set()
        level: Level = "info" if reason == "stopping" else "warning"  # a clean stop is no news
        self.events.emit("leader.lost", level, holder=term.holder, epoch=term.epoch, reason=reason)

    async def release(self, reason: str = "stopping") -> None:
        """Hand the lease over now instead of at its expiry (a clean stop, a failed term)."""
        term = self.term
        if term is None:
            return
        self._lose(reason)
        with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
            conn = await self._connection()
            await asyncio.wait_for(lease.arelease(conn, term), timeout=self.renew_seconds)
        await self._close()


class FencedPlatform:
    """The platform client of a replica: reads pass, writes only while `may_write()`."""

    def __init__(self, client: PlatformAPI, leadership: Leadership) -> None:
        self._client = client
        self._leadership = leadership

    def _check(self, what: str) -> None:
        if not self._leadership.may_write():
            raise NotLeader(f"{what} not sent: this replica is not the leader")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def list_drivers(self) -> list[Driver]:
        return await self._client.list_drivers()

    async def list_connections(self) -> list[Connection]:
        return await self._client.list_connections()

    async def get_connection(self, connection_id: int) -> Connection:
        return await self._client.get_connection(connection_id)

    async def create_connection(
        self,
        *,
        name: str,
        driver: str,
        credentials: Mapping[str, Any],
        automation: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> CreateResult:
        self._check("create")
        return await self._client.create_connection(
            name=name,
            driver=driver,
            credentials=credentials,
            automation=automation,
            idempotency_key=idempotency_key,
        )

    async def update_connection(
        self, connection_id: int, patch: Mapping[str, Any], *, if_match: int | None = None
    ) -> Connection:
        self._check("update")
        return await self._client.update_connection(connection_id, patch, if_match=if_match)

    async def delete_connection(self, connection_id: int) -> Job:
        self._check("delete")
        return await self._client.delete_connection(connection_id)

    async def enable(self, ids: Sequence[int]) -> list[Connection]:
        self._check("enable")
        return await self._client.enable(ids)

    async def disable(self, ids: Sequence[int]) -> list[Connection]:
        self._check("disable")
        return await self._client.disable(ids)

    async def trigger_sync(self, connection_id: int) -> Job:
        self._check("sync")
        return await self._client.trigger_sync(connection_id)

    async def get_job(self, job_id: int) -> Job:
        return await self._client.get_job(job_id)

    async def list_jobs(
        self, *, connection_id: int | None = None, state: str | None = None
    ) -> list[Job]:
        return await self._client.list_jobs(connection_id=connection_id, state=state)

    async def aclose(self) -> None:
        await self._client.aclose()
