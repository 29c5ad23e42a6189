"""The conditions the executor marks on a record as it writes, stamped with the clock.

The executor's side of `chanops.engine.conditions` (the pure rules): an intent stored
before a write marks the write in flight (Ready Unknown, Reconciling True); settings
held back for the initial sync mark AwaitingInitialSync, and clear it once they went in.
The reconciler settles Ready, Reconciling and Stalled after the plan ran.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from chanops.condition import Condition, ConditionType
from chanops.engine.conditions import (
    holding,
    mark_in_flight,
    remove_condition,
    set_condition,
    timestamp,
)
from chanops.state.store import Intent, Record


def now() -> str:
    """The current time as a condition's transition time (RFC 3339, UTC)."""
    return timestamp(datetime.now(UTC))


def intending(record: Record, intent: Intent) -> Record:
    """`record` with `intent` recorded before its write: the write is in flight."""
    message = f"{intent.op} in flight"
    return replace(
        record, intent=intent, conditions=mark_in_flight(record.conditions, message, now())
    )


def waiting_on(conditions: tuple[Condition, ...], kind: str) -> tuple[Condition, ...]:
    """`conditions` with the domain condition `kind` holding (its time kept if it held)."""
    return set_condition(conditions, holding(ConditionType(kind)), now())


def initial_sync_done(conditions: tuple[Condition, ...]) -> tuple[Condition, ...]:
    return remove_condition(conditions, ConditionType.AWAITING_INITIAL_SYNC)


__all__ = ["initial_sync_done", "intending", "now", "waiting_on"]
