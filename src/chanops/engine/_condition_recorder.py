"""After a reconcile: each planned connection's conditions decided, stored and logged.

The shell around `chanops.engine.conditions.decide`: it gathers what the plan and the
executor's outcomes say per name, merges the result into what held before the
reconcile (so a transition time moves only when a status changed), writes the records
that changed and emits one `connection.condition` per transition, never per reconcile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from chanops.condition import Condition, ConditionType
from chanops.engine._executor import Context
from chanops.engine._outcome import Outcome
from chanops.engine.conditions import (
    decide,
    find_condition,
    holding,
    is_converged,
    merge,
    timestamp,
    transitions,
)
from chanops.engine.diff import source_key
from chanops.engine.plan import Plan
from chanops.events import EventSink
from chanops.state.protocol import Store
from chanops.state.store import Record

# The domain conditions a reconcile result reports as waited on (not failures).
WAITING_CONDITIONS = frozenset(
    {
        ConditionType.AWAITING_MARKETPLACE_SETUP,
        ConditionType.AWAITING_AUTHORIZATION,
        ConditionType.AWAITING_INITIAL_SYNC,
        ConditionType.SUSPENDED,
    }
)


class ConditionRecorder:
    def __init__(self, store: Store, events: EventSink) -> None:
        self.store = store
        self.events = events

    def record(
        self,
        plan: Plan,
        outcomes: Iterable[Outcome],
        memory: Mapping[str, Record],
        records: dict[str, Record],
        *,
        planned: Set[str],
        ctx: Context,
    ) -> dict[str, tuple[str, ...]]:
        """Persist each planned name's conditions; log only transitions (no log spam).

        `memory` holds the records as the plan read them; `records` as they are after
        the executor ran, and is kept current with what is written here. Returns the
        domain conditions names wait on (a person's step, the initial sync).
        """
        outcomes = tuple(outcomes)
        domain = _domain_conditions(plan, outcomes)
        results = _by_name(outcomes)
        blocked = _by_name(plan.blocked)
        problems = _by_name(plan.errors)
        touched = {a.name for a in plan.actions}
        busy = touched | domain.keys() | results.keys() | blocked.keys() | problems.keys()
        now = timestamp(datetime.now(UTC))
        for name in sorted(planned):
            held = domain.get(name, [])
            record = records.get(name) or _condition_holder(name, held, ctx)
            if record is None or (name not in busy and is_converged(record.conditions)):
                continue  # converged before and nothing new: a steady resync's 10,000 names
            syncing = find_condition(record.conditions, ConditionType.AWAITING_INITIAL_SYNC)
            if name not in touched and syncing is not None and syncing.holds:
                held = [*held, syncing]  # the executor owns it; a plan without an update keeps it
            wanted = decide(
                held, results.get(name, ()), blocked.get(name, ()), problems.get(name, ())
            )
            # Merged into what held before this reconcile, not the executor's in-flight
            # marks: a write refused again leaves Stalled True since the first refusal.
            before = memory.get(name)
            held_before = before.conditions if before is not None else record.conditions
            merged = merge(held_before, wanted, now)
            self._log_transitions(record, before.conditions if before else (), merged)
            if merged == record.conditions and name in records:
                continue
            if not self.store.readonly:
                records[name] = self.store.put(replace(record, conditions=merged))
        return {
            name: tuple(c.type.value for c in held)
            for name, held in domain.items()
            if any(c.type in WAITING_CONDITIONS for c in held)
        }

    def _log_transitions(
        self, record: Record, before: tuple[Condition, ...], after: tuple[Condition, ...]
    ) -> None:
        """One `connection.condition` per condition whose status changed.

        A domain condition or Stalled coming to hold is news (info); Ready and
        Reconciling flip with every write, so theirs are debug (consumers of the event
        sink see them whatever the log level).
        """
        for c in transitions(before, after):
            news = c.holds and c.type not in (ConditionType.READY, ConditionType.RECONCILING)
            self.events.emit(
                "connection.condition",
                "info" if news else "debug",
                connection=record.name,
                driver=record.driver,
                connection_id=record.connection_id,
                condition=c.type.value,
                status=c.status.value,
                reason=c.reason,
                message=c.message,
            )


def _condition_holder(name: str, held: list[Condition], ctx: Context) -> Record | None:
    """A record for a name with no connection yet, so a condition it waits on is kept."""
    if not held or name not in ctx.desired:
        return None
    m = ctx.desired[name].manifest
    return Record(
        name=name,
        driver=m.driver,
        source_file=source_key(m.source.file, ctx.root),
        deletion_policy=m.deletion_policy,
    )


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_N = TypeVar("_N", bound=_Named)


def _by_name(items: Iterable[_N]) -> dict[str, list[_N]]:
    out: dict[str, list[_N]] = {}
    for item in items:
        out.setdefault(item.name, []).append(item)
    return out


def _domain_conditions(plan: Plan, outcomes: Iterable[Outcome]) -> dict[str, list[Condition]]:
    """The domain conditions per name: the plan's, and those actions now wait on."""
    domain = {name: list(held) for name, held in plan.conditions.items()}
    for o in outcomes:
        if o.waiting:
            held = domain.setdefault(o.name, [])
            if all(c.type != o.waiting for c in held):
                held.append(holding(ConditionType(o.waiting)))
    return domain


__all__ = ["WAITING_CONDITIONS", "ConditionRecorder"]
