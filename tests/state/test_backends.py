"""What both backends promise, run against each: records, intents, HMACs, read-only
readers, tokens and the schema versions (tests/state/conftest.py picks the backend)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from chanops.condition import Condition, ConditionStatus, ConditionType
from chanops.errors import StoreError
from chanops.state._history import HISTORY_SIZE
from chanops.state.factory import is_postgres, open_store
from chanops.state.store import Intent, Record
from chanops.state.tokens import StoredTokens


def _record(**changes: object) -> Record:
    base = Record(
        name="a",
        driver="shopware6",
        connection_id=7,
        source_file="c.d/a.yaml",
        fingerprint="f1",
        applied_spec={"settings": {"klarna": True}},
        secret_hmacs={"/credentials/x": "ab"},
        version=3,
        conditions=(
            Condition(
                ConditionType.STALLED,
                ConditionStatus.TRUE,
                "UnknownValue",
                "422 unknown_value: settings.defaultLanguage",
                "2026-12-01T10:00:00Z",
            ),
        ),
        intent=Intent("create", idempotency_key="k-1", display_name="A"),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_records_round_trip_update_and_forget(store_location: str | Path) -> None:
    store = open_store(store_location)
    try:
        rec = _record()
        store.put(rec)
        got = store.get("a")
        assert got is not None
        assert replace(got, updated_at="") == rec
        assert got.intent is not None and got.intent.idempotency_key == "k-1"
        assert store.clear_intent("a").intent is None  # type: ignore[union-attr]
        changed = store.update("a", lambda r: replace(r, version=4))
        assert changed is not None and changed.version == 4
        assert store.update("missing", lambda r: r) is None
        # A platform id belongs to one name: re-binding it under a new name moves it.
        store.put(Record(name="b", driver="shopware6", connection_id=7))
        assert set(store.records()) == {"b"}
        store.forget("b")
        assert store.records() == {}
    finally:
        store.close()


def test_hmac_key_is_kept_across_opens(store_location: str | Path) -> None:
    store = open_store(store_location)
    digest = store.hmac("secret")
    store.put(Record(name="a", driver="d", secret_hmacs={"/p": store.hmac("hunter2")}))
    store.close()
    again = open_store(store_location)
    try:
        assert again.hmac("secret") == digest
        assert again.hmac("other") != digest
        assert again.get("a").secret_hmacs == {"/p": again.hmac("hunter2")}  # type: ignore[union-attr]
    finally:
        again.close()


def test_readonly_reads_and_refuses_writes(store_location: str | Path) -> None:
    writer = open_store(store_location)
    writer.put(_record())
    reader = open_store(store_location, readonly=True)
    try:
        assert set(reader.records()) == {"a"}
        assert reader.readonly
        with pytest.raises(StoreError, match="read-only"):
            reader.put(Record(name="x", driver="d"))
    finally:
        reader.close()
        writer.close()


def test_token_set_round_trips_and_counts_generations(store_location: str | Path) -> None:
    store = open_store(store_location)
    try:
        assert store.tokens() is None
        tokens = StoredTokens(
            platform_url="https://p.example",
            client_id="cid",
            access_token="at-1",
            refresh_token="rt-1",
            scope="connections",
            issued_at=1.0,
            expires_at=2.0,
        )
        first = store.save_tokens(tokens, login=True)
        second = store.save_tokens(replace(tokens, access_token="at-2"))
        assert (first.generation, first.login) == (1, 1)
        assert (second.generation, second.login) == (2, 1)
        assert store.tokens() == second
    finally:
        store.close()


def _set_version(location: str | Path, version: int) -> None:
    if is_postgres(location):
        with psycopg.connect(str(location), autocommit=True) as conn:
            conn.execute("UPDATE schema_version SET version = %s", (version,))
        return
    db = sqlite3.connect(location)
    db.execute("UPDATE schema_version SET version = ?", (version,))
    db.commit()
    db.close()


def test_a_store_of_a_newer_schema_is_refused_in_one_line(store_location: str | Path) -> None:
    open_store(store_location).close()
    _set_version(store_location, 99)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="schema version 99, newer than this chanops") as err:
            open_store(store_location, readonly=readonly)
        assert "\n" not in str(err.value)


def test_get_many_reads_the_named_records_and_none_for_the_rest(
    store_location: str | Path,
) -> None:
    store = open_store(store_location)
    try:
        store.put(_record())
        store.put(Record(name="b", driver="d", connection_id=2))
        got = store.get_many(["a", "missing", "b"])
        assert list(got) == ["a", "missing", "b"]
        assert got["missing"] is None
        assert got["a"] == store.get("a") and got["b"] == store.get("b")
    finally:
        store.close()


def test_the_event_history_appends_trims_and_reads_back_oldest_first(
    store_location: str | Path,
) -> None:
    store = open_store(store_location)
    try:
        assert store.events() == []
        first = [{"event": "connection.created", "connection": "a", "n": 0}]
        store.append_events(first)
        store.append_events([])  # nothing to write: no transaction
        assert store.events() == first
        # Batches keep their order; the table keeps the newest HISTORY_SIZE overall.
        more = [{"event": "reconcile.completed", "n": i} for i in range(1, HISTORY_SIZE + 30)]
        store.append_events(more[:50])
        store.append_events(more[50:])
        got = store.events()
        assert len(got) == HISTORY_SIZE
        assert got == more[-HISTORY_SIZE:]
    finally:
        store.close()
    again = open_store(store_location, readonly=True)
    try:
        assert again.events()[-1]["n"] == HISTORY_SIZE + 29  # kept across opens
        with pytest.raises(StoreError, match="read-only"):
            again.append_events([{"event": "x"}])
    finally:
        again.close()
