"""Typed conditions in the SQLite store: round trip, and rows an older chanops wrote."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from chanops.condition import Condition, ConditionStatus, ConditionType
from chanops.errors import StoreError
from chanops.state.store import Record, StateStore

STALLED = Condition(
    ConditionType.STALLED,
    ConditionStatus.TRUE,
    "UnknownValue",
    "422 unknown_value: settings.defaultLanguage",
    "2026-12-01T10:00:00Z",
)
READY = Condition(
    ConditionType.READY,
    ConditionStatus.FALSE,
    "UnknownValue",
    STALLED.message,
    STALLED.last_transition_time,
)


def _write(path: Path, sql: str, params: tuple[str, ...]) -> None:
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(sql, params)
    finally:
        db.close()


def _raw(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("SELECT conditions FROM connections").fetchone()[0])
    finally:
        db.close()


def test_conditions_round_trip_as_json_objects(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path) as store:
        store.put(
            Record(name="a", driver="shopware6", connection_id=1, conditions=(READY, STALLED))
        )
    with StateStore.open(path, readonly=True) as store:
        got = store.get("a")
    assert got is not None and got.conditions == (READY, STALLED)
    raw = _raw(path)
    assert json.loads(raw) == [READY.to_json(), STALLED.to_json()]
    assert json.loads(raw)[1]["lastTransitionTime"] == "2026-12-01T10:00:00Z"


def test_an_old_row_of_bare_strings_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path) as store:
        store.put(Record(name="shop", driver="shopify"))
    # What a chanops before typed conditions wrote: a JSON list of type names.
    _write(
        path,
        "UPDATE connections SET conditions = ?, updated_at = ? WHERE name = 'shop'",
        (json.dumps(["AwaitingMarketplaceSetup", "Frozen"]), "2026-11-30T08:15:00+00:00"),
    )
    with StateStore.open(path) as store:
        got = store.get("shop")
        assert got is not None
        assert got.conditions == (
            Condition(
                ConditionType.AWAITING_MARKETPLACE_SETUP,
                ConditionStatus.TRUE,
                "AwaitingMarketplaceSetup",
                "",
                "2026-11-30T08:15:00Z",
            ),
            Condition(
                ConditionType.FROZEN, ConditionStatus.TRUE, "Frozen", "", "2026-11-30T08:15:00Z"
            ),
        )
        # Written back, the row holds the objects: nothing was lost on the way.
        store.put(got)
    raw = _raw(path)
    assert [c["type"] for c in json.loads(raw)] == ["AwaitingMarketplaceSetup", "Frozen"]
    assert {c["lastTransitionTime"] for c in json.loads(raw)} == {"2026-11-30T08:15:00Z"}


def test_a_condition_no_type_matches_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path) as store:
        store.put(Record(name="shop", driver="shopify"))
    _write(path, "UPDATE connections SET conditions = ?", ('["FromTheFuture"]',))
    with StateStore.open(path, readonly=True) as store, pytest.raises(StoreError) as caught:
        store.records()
    assert "'shop'" in str(caught.value) and "FromTheFuture" in str(caught.value)
