"""The rules of conditions: how they change over time and what they sum up to.

Pure: no clock (callers pass `now`), no I/O. The type itself is `chanops.condition`
(re-exported here), so the store below the engine can hold it.

Conditions follow Flux and kstatus:

- `Ready` is always present: True when the connection matches its manifest, False
  with a reason while it does not, Unknown while chanops has not decided yet.
- `Reconciling` is True while chanops itself will get the connection there without a
  person's help: a write pending a retry, settings waiting for the initial sync.
- `Stalled` is True while the platform refused a write that asking again cannot cure:
  the daemon parks the connection until its manifest changes. The reason is the
  platform's error code in CamelCase (`unknown_value` -> `UnknownValue`).
- The domain conditions (`AwaitingAuthorization`, `AwaitingMarketplaceSetup`,
  `AwaitingInitialSync`, `SecretUnresolved`, `Suspended`, `Frozen`) are True while they
  hold.

Conditions that would be False other than `Ready` are removed rather than kept False
(kstatus's "abnormal-true" polarity), so a connection's list says what is going on.
A condition's `last_transition_time` moves only when its status changes, as in
Kubernetes: a message or reason may change under the same time.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from chanops.condition import Condition, ConditionStatus, ConditionType
from chanops.engine._outcome import Outcome
from chanops.engine.plan import Blocked, PlanProblem

TRUE = ConditionStatus.TRUE
FALSE = ConditionStatus.FALSE
UNKNOWN = ConditionStatus.UNKNOWN


class Reason(enum.StrEnum):
    """The reasons chanops sets itself; a refusal's reason is the platform's code."""

    SUCCEEDED = "ReconciliationSucceeded"  # Ready=True
    PROGRESSING = "Progressing"  # Ready=Unknown, Reconciling=True: a write in flight
    PROGRESSING_WITH_RETRY = "ProgressingWithRetry"  # Reconciling=True after a failure
    AWAITING_INITIAL_SYNC = "AwaitingInitialSync"  # Reconciling=True: settings wait


# The domain conditions that keep a connection from being Ready, most telling first:
# the first one that holds gives Ready its reason.
DOMAIN_ORDER: tuple[ConditionType, ...] = (
    ConditionType.SUSPENDED,
    ConditionType.FROZEN,
    ConditionType.SECRET_UNRESOLVED,
    ConditionType.AWAITING_AUTHORIZATION,
    ConditionType.AWAITING_MARKETPLACE_SETUP,
    ConditionType.AWAITING_INITIAL_SYNC,
)
DOMAIN = frozenset(DOMAIN_ORDER)
SUMMARY = frozenset({ConditionType.READY, ConditionType.RECONCILING, ConditionType.STALLED})

# What a domain condition means, for its message when the code setting it has no better.
_DOMAIN_MESSAGES: dict[ConditionType, str] = {
    ConditionType.SUSPENDED: "spec.suspend is true: chanops leaves the connection alone",
    ConditionType.FROZEN: "the manifest's file fails to load: no update, no delete",
    ConditionType.SECRET_UNRESOLVED: "a secretRef does not resolve",
    ConditionType.AWAITING_AUTHORIZATION: "the marketplace's authorization is a person's step",
    ConditionType.AWAITING_MARKETPLACE_SETUP: "the connection is created from the marketplace",
    ConditionType.AWAITING_INITIAL_SYNC: "settings go in once the initial sync has finished",
}


_CONVERGED = (
    ConditionType.READY,
    TRUE,
    Reason.SUCCEEDED.value,
    "the connection matches its manifest",
)


def holding(kind: ConditionType, message: str = "", reason: str = "") -> Condition:
    """A domain condition that holds (status True), its reason the type unless given."""
    return Condition(kind, TRUE, reason or kind.value, message or _DOMAIN_MESSAGES.get(kind, ""))


def find_condition(conditions: Iterable[Condition], kind: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)


def is_true(conditions: Iterable[Condition], kind: ConditionType) -> bool:
    found = find_condition(conditions, kind)
    return found is not None and found.holds


def is_converged(conditions: Sequence[Condition]) -> bool:
    """Only `Ready=True` as a converged connection has it: a reconcile with nothing new
    for the connection would decide the same again."""
    if len(conditions) != 1:
        return False
    ready = conditions[0]
    return (ready.type, ready.status, ready.reason, ready.message) == _CONVERGED


def set_condition(
    conditions: Iterable[Condition], new: Condition, now: str
) -> tuple[Condition, ...]:
    """`conditions` with `new` in place of the condition of its type.

    The transition time is `now` when the status changes (or the type is new) and the
    old one when it does not, whatever `new` carries; position in the list is kept.
    """
    out: list[Condition] = []
    found = False
    for c in conditions:
        if c.type != new.type:
            out.append(c)
            continue
        found = True
        since = c.last_transition_time if c.status == new.status else now
        out.append(replace(new, last_transition_time=since or now))
    if not found:
        out.append(replace(new, last_transition_time=now))
    return tuple(out)


def remove_condition(conditions: Iterable[Condition], kind: ConditionType) -> tuple[Condition, ...]:
    return tuple(c for c in conditions if c.type != kind)


def merge(
    current: Iterable[Condition],
    wanted: Iterable[Condition],
    now: str,
    *,
    owned: Iterable[ConditionType] | None = None,
) -> tuple[Condition, ...]:
    """`current` brought to `wanted`: each wanted condition set, each owned one not wanted removed.

    `owned` are the types the caller decides (all of them unless given); the others (set
    by someone else, such as an authorization flow) are kept as they are.
    """
    wanted = tuple(wanted)
    kinds = {c.type for c in wanted}
    decided = set(ConditionType) if owned is None else set(owned)
    out = tuple(c for c in current if c.type in kinds or c.type not in decided)
    for c in wanted:
        out = set_condition(out, c, now)
    return out


def transitions(before: Iterable[Condition], after: Iterable[Condition]) -> tuple[Condition, ...]:
    """The conditions of `after` that are new or whose status changed: what to log."""
    was = {c.type: c.status for c in before}
    return tuple(c for c in after if was.get(c.type) != c.status)


def timestamp(moment: datetime) -> str:
    """`moment` as RFC 3339 in UTC to the second (`2026-12-01T10:47:22Z`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def camel(code: str) -> str:
    """A platform error code as a condition reason: `unknown_value` -> `UnknownValue`."""
    words = code.replace("-", "_").split("_")
    return "".join(w[:1].upper() + w[1:] for w in words if w) or "Unknown"


def summary(
    domain: Sequence[Condition],
    *,
    refusal: tuple[str, str] | None = None,
    failure: tuple[str, str] | None = None,
    blocked: tuple[str, str] | None = None,
    in_flight: str | None = None,
) -> tuple[Condition, ...]:
    """Ready, and Reconciling/Stalled when they hold, from what is known of a connection.

    `domain`: the domain conditions that hold. `refusal` / `failure`: the (code,
    message) of a write the platform refused / that failed and will be retried.
    `blocked`: the (rule, message) of a safety rule that held an action back, its
    reason the rule in CamelCase (`mass-delete` -> `MassDelete`). `in_flight`: what is being
    written. The first that applies decides Ready: a refusal, an in-flight write, a
    failure, a held domain condition, a blocked action; otherwise Ready is True.
    """
    if refusal is not None:
        reason, message = camel(refusal[0]), refusal[1]
        return (
            Condition(ConditionType.READY, FALSE, reason, message),
            Condition(ConditionType.STALLED, TRUE, reason, message),
        )
    if in_flight is not None:
        return (
            Condition(ConditionType.READY, UNKNOWN, Reason.PROGRESSING, in_flight),
            Condition(ConditionType.RECONCILING, TRUE, Reason.PROGRESSING, in_flight),
        )
    if failure is not None:
        reason, message = camel(failure[0]), failure[1]
        return (
            Condition(ConditionType.READY, FALSE, reason, message),
            Condition(
                ConditionType.RECONCILING,
                TRUE,
                Reason.PROGRESSING_WITH_RETRY,
                f"retrying after: {message}",
            ),
        )
    return _settled(domain, blocked)


def mark_in_flight(
    conditions: Iterable[Condition], message: str, now: str
) -> tuple[Condition, ...]:
    """`conditions` while a write is in flight: Ready Unknown, Reconciling, not Stalled.

    Stored with the write's intent, so a process that stops mid-write leaves the
    connection shown as in progress until the next reconcile resolves the intent.
    """
    out = remove_condition(conditions, ConditionType.STALLED)
    for c in summary((), in_flight=message):
        out = set_condition(out, c, now)
    return out


def _settled(domain: Sequence[Condition], blocked: tuple[str, str] | None) -> tuple[Condition, ...]:
    """The summary when no write is failing or in flight: domain conditions, then guards."""
    held = {c.type: c for c in domain if c.holds}
    first = next((held[k] for k in DOMAIN_ORDER if k in held), None)
    if first is not None:
        ready = Condition(ConditionType.READY, FALSE, first.type.value, first.message)
        if first.type != ConditionType.AWAITING_INITIAL_SYNC:
            return (ready,)
        reconciling = Condition(
            ConditionType.RECONCILING, TRUE, Reason.AWAITING_INITIAL_SYNC, first.message
        )
        return ready, reconciling
    if blocked is not None:
        return (Condition(ConditionType.READY, FALSE, camel(blocked[0]), blocked[1]),)
    return (Condition(*_CONVERGED),)


def decide(
    domain: Sequence[Condition],
    outcomes: Iterable[Outcome] = (),
    blocked: Sequence[Blocked] = (),
    problems: Sequence[PlanProblem] = (),
) -> tuple[Condition, ...]:
    """Every condition a connection should have after a reconcile: `domain` and its summary.

    A failed action the platform refused is Stalled (its code the reason): the daemon
    parks it until the manifest changes. Any other failure is retried (Reconciling), and
    so is a plan problem (an ambiguous adoption, a `spec.connectionId` that does not
    exist: the platform may change), unless a domain condition already says why (a
    secret that does not resolve).
    """
    refusal: tuple[str, str] | None = None
    failure: tuple[str, str] | None = None
    for o in outcomes:
        if o.ok:
            continue
        info = o.info
        code, message = (info.code, info.message) if info else ("failed", o.error or "")
        if info is not None and info.refusal:
            refusal = refusal or (code, message)
        else:
            failure = failure or (code, message)
    if failure is None and problems and not any(c.holds for c in domain):
        failure = ("plan_failed", problems[0].message)
    held = (blocked[0].rule.value, blocked[0].reason) if blocked else None
    return (*domain, *summary(domain, refusal=refusal, failure=failure, blocked=held))


__all__ = [
    "DOMAIN",
    "DOMAIN_ORDER",
    "FALSE",
    "SUMMARY",
    "TRUE",
    "UNKNOWN",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "Reason",
    "camel",
    "decide",
    "find_condition",
    "holding",
    "is_converged",
    "is_true",
    "mark_in_flight",
    "merge",
    "remove_condition",
    "set_condition",
    "summary",
    "timestamp",
    "transitions",
]
