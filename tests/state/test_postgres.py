"""The PostgreSQL store's own promises: the lease, fenced writes, bad DSNs, permissions."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest

from chanops.errors import StoreError, StoreLocked
from chanops.state import lease
from chanops.state.postgres import Fenced, PostgresStore, display_dsn
from chanops.state.store import Record
from chanops.state.tokens import StoredTokens
from support.postgres import server_dsn, with_database


async def _acquire(dsn: str, holder: str, seconds: float) -> lease.Term | None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await lease.aacquire(conn, holder, seconds)


async def _renew(dsn: str, term: lease.Term, seconds: float) -> bool:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await lease.arenew(conn, term, seconds)


def test_the_lease_goes_to_one_holder_and_its_epoch_grows(pg_dsn: str) -> None:
    PostgresStore.open(pg_dsn, fenced=True).close()  # migrated
    first = asyncio.run(_acquire(pg_dsn, "a", 0.4))
    assert first == lease.Term("a", 1)
    assert asyncio.run(_acquire(pg_dsn, "b", 10)) is None  # held: b waits
    assert asyncio.run(_renew(pg_dsn, first, 0.4))
    time.sleep(0.5)  # a stops renewing (a pause, a crash)
    assert not asyncio.run(_renew(pg_dsn, first, 10))  # expired: not renewable any more
    second = asyncio.run(_acquire(pg_dsn, "b", 10))
    assert second == lease.Term("b", 2)


def test_a_write_after_the_epoch_moved_on_is_fenced_and_changes_nothing(pg_dsn: str) -> None:
    old = PostgresStore.open(pg_dsn, fenced=True)
    new = PostgresStore.open(pg_dsn, fenced=True)
    try:
        # A standby (no term) writes nothing.
        with pytest.raises(Fenced, match="not the leader"):
            old.put(Record(name="x", driver="d"))
        old.fence = asyncio.run(_acquire(pg_dsn, "old", 0.3))
        old.put(Record(name="a", driver="d", connection_id=1, version=1))
        time.sleep(0.4)  # the old leader is paused past its lease ...
        new.fence = asyncio.run(_acquire(pg_dsn, "new", 10))
        new.put(Record(name="a", driver="d", connection_id=1, version=2))
        # ... and wakes up still believing it leads: every kind of write is refused.
        with pytest.raises(Fenced, match="no longer holds the lease"):
            old.put(Record(name="a", driver="d", connection_id=1, version=99))
        with pytest.raises(Fenced):
            old.forget("a")
        with pytest.raises(Fenced):
            old.clear_intent("a")
        assert new.get("a").version == 2  # type: ignore[union-attr]
    finally:
        old.close()
        new.close()


def test_the_event_history_is_written_by_the_leader_only(pg_dsn: str) -> None:
    old = PostgresStore.open(pg_dsn, fenced=True)
    new = PostgresStore.open(pg_dsn, fenced=True)
    try:
        with pytest.raises(Fenced, match="not the leader"):  # a standby writes nothing
            old.append_events([{"event": "standby"}])
        old.fence = asyncio.run(_acquire(pg_dsn, "old", 0.3))
        old.append_events([{"event": "connection.created", "connection": "a"}])
        time.sleep(0.4)  # paused past its lease; another replica takes over
        new.fence = asyncio.run(_acquire(pg_dsn, "new", 10))
        new.append_events([{"event": "leader.elected"}])
        with pytest.raises(Fenced, match="no longer holds the lease"):
            old.append_events([{"event": "late"}])
        # Both replicas read the same history: the previous term's event and the new one.
        assert [e["event"] for e in old.events()] == ["connection.created", "leader.elected"]
        assert new.events() == old.events()
    finally:
        old.close()
        new.close()


def test_an_expired_lease_fences_even_before_anyone_else_takes_it(pg_dsn: str) -> None:
    store = PostgresStore.open(pg_dsn, fenced=True)
    try:
        store.fence = asyncio.run(_acquire(pg_dsn, "solo", 0.2))
        time.sleep(0.3)
        with pytest.raises(Fenced):
            store.put(Record(name="a", driver="d"))
        assert store.records() == {}
    finally:
        store.close()


def test_a_writer_that_does_not_elect_is_refused_while_a_leader_holds_the_lease(
    pg_dsn: str,
) -> None:
    PostgresStore.open(pg_dsn, fenced=True).close()
    asyncio.run(_acquire(pg_dsn, "host:42:abc", 10))
    with pytest.raises(StoreLocked, match=r"in use by the leader host:42:abc \(epoch 1\)"):
        PostgresStore.open(pg_dsn)  # what `chanops apply` opens
    reader = PostgresStore.open(pg_dsn, readonly=True)  # readers are welcome, and so is
    try:  # `chanops login`, which saves the token set beside a running leader
        saved = reader.save_tokens(StoredTokens("https://p", "cid", "at", "rt", "", 1.0, 2.0))
        assert saved.generation == 1
    finally:
        reader.close()


def test_a_wrong_dsn_is_one_line_without_the_password() -> None:
    dsn = "postgresql://chanops:hunter2-pw@127.0.0.1:1/nowhere"
    with pytest.raises(StoreError) as err:
        PostgresStore.open(dsn)
    message = str(err.value)
    assert "\n" not in message
    assert "hunter2-pw" not in message
    assert message.startswith("state store postgresql://chanops:***@127.0.0.1:1/nowhere: ")
    assert display_dsn(dsn) == "postgresql://chanops:***@127.0.0.1:1/nowhere"


def test_a_database_without_permissions_is_one_line(pg_dsn: str) -> None:
    role = f"chanops_noperm_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'REVOKE CREATE ON SCHEMA public FROM "{role}", PUBLIC')
    try:
        dsn = with_database(pg_dsn, pg_dsn.rsplit("/", 1)[1]).replace("postgres@", f"{role}@", 1)
        assert role in dsn, f"the test needs a DSN with a user name: {server_dsn()}"
        with pytest.raises(StoreError, match="permission denied for schema public") as err:
            PostgresStore.open(dsn)
        assert "\n" not in str(err.value)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{role}"')
