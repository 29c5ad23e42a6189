"""The election in process against the real PostgreSQL server: a push delivered to a
standby reaches the leader through the store; a leader that cannot renew stops writing
at its own deadline, before the lease expires on the server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import psycopg
import pytest
from starlette.applications import Starlette

from chanops.daemon.leader import FencedPlatform, Leadership, NotLeader
from chanops.events import Event, EventSink
from chanops.observability.metrics import Metrics
from chanops.sources.webhook import git_webhook_route
from chanops.state import lease
from chanops.state.postgres import PostgresStore


def _leadership(dsn: str, store: PostgresStore, seen: list[Event]) -> Leadership:
    return Leadership(
        dsn=dsn,
        store=store,
        events=EventSink(seen.append),
        metrics=Metrics(),
        lease_seconds=2.0,
        renew_seconds=0.2,
    )


def test_a_push_to_a_standby_is_fetched_by_the_leader(pg_dsn: str, tmp_path: Path) -> None:
    secret = tmp_path / "webhook-secret"
    secret.write_text("hook-secret-123\n")
    stores = [PostgresStore.open(pg_dsn, fenced=True) for _ in range(2)]
    seen: list[Event] = []
    leader, standby = (_leadership(pg_dsn, s, seen) for s in stores)
    fetches: list[str] = []
    fetched = asyncio.Event()

    def fetch() -> None:
        fetches.append("fetch")
        fetched.set()

    leader.on_webhook = fetch

    async def scenario() -> None:
        stop = asyncio.Event()
        first = asyncio.create_task(leader.run(stop))
        await asyncio.wait_for(leader.elected.wait(), 10)
        second = asyncio.create_task(standby.run(stop))
        await asyncio.sleep(0.5)
        assert (leader.role, standby.role) == ("leader", "standby")
        app = Starlette(routes=[git_webhook_route(standby.webhook, secret)])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            answer = await client.post(
                "/hooks/git", headers={"X-Gitlab-Token": "hook-secret-123"}, content=b"{}"
            )
        assert answer.status_code == 202
        await asyncio.wait_for(fetched.wait(), 10)
        assert fetches == ["fetch"]
        stop.set()
        await asyncio.gather(first, second)
        await leader.release()

    try:
        asyncio.run(scenario())
    finally:
        for s in stores:
            s.close()
    assert stores[0].fence is None  # released on the way out
    assert [e.name for e in seen].count("leader.elected") == 1


def test_a_leader_that_cannot_renew_refuses_platform_writes_at_its_deadline(
    pg_dsn: str,
) -> None:
    store = PostgresStore.open(pg_dsn, fenced=True)
    seen: list[Event] = []
    leadership = _leadership(pg_dsn, store, seen)

    class Platform:
        async def update_connection(self, *a: object, **kw: object) -> str:
            return "written"

    platform = FencedPlatform(Platform(), leadership)  # type: ignore[arg-type]

    async def scenario() -> None:
        stop = asyncio.Event()
        election = asyncio.create_task(leadership.run(stop))
        await asyncio.wait_for(leadership.elected.wait(), 10)
        assert await platform.update_connection(1, {}) == "written"
        leadership.dsn = "postgresql://postgres@127.0.0.1:1/unreachable"  # renewals fail
        await leadership._close()
        await asyncio.wait_for(leadership.lost.wait(), 10)
        # It gave up while the server still counts the lease as its: nobody else could
        # have taken it yet, so there was never a moment with two writers.
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            view = lease.current(conn)
        assert view is not None and view.epoch == 1 and view.remaining > 0
        with pytest.raises(NotLeader):
            await platform.update_connection(1, {})
        stop.set()
        await election

    try:
        asyncio.run(scenario())
    finally:
        store.close()
    lost = [e for e in seen if e.name == "leader.lost"]
    assert [e.fields["reason"] for e in lost] == ["renew deadline passed"]
    assert any(e.name == "leader.election_failed" for e in seen)
