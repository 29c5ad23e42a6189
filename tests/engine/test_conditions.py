"""The rules of typed conditions (pure): transitions, merging, the kstatus summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chanops.condition import (
    Condition,
    ConditionStatus,
    ConditionType,
    decode_conditions,
    encode_conditions,
)
from chanops.engine._outcome import ErrorInfo, Outcome
from chanops.engine.conditions import (
    FALSE,
    TRUE,
    UNKNOWN,
    Reason,
    camel,
    decide,
    find_condition,
    holding,
    is_converged,
    is_true,
    mark_in_flight,
    merge,
    remove_condition,
    set_condition,
    summary,
    timestamp,
    transitions,
)
from chanops.engine.plan import ActionKind, Blocked, Guard, Plan, PlanProblem

T0 = "2026-12-01T10:00:00Z"
T1 = "2026-12-01T11:00:00Z"
T2 = "2026-12-01T12:00:00Z"


def test_set_condition_keeps_the_time_while_the_status_stays() -> None:
    first = set_condition((), holding(ConditionType.SUSPENDED), T0)
    again = set_condition(first, holding(ConditionType.SUSPENDED, "new words"), T1)
    assert again == (Condition(ConditionType.SUSPENDED, TRUE, "Suspended", "new words", T0),)


def test_set_condition_moves_the_time_when_the_status_changes() -> None:
    ready = set_condition((), Condition(ConditionType.READY, FALSE, "Progressing"), T0)
    done = set_condition(ready, Condition(ConditionType.READY, TRUE, Reason.SUCCEEDED), T1)
    assert done[0].status == TRUE
    assert done[0].last_transition_time == T1


def test_set_condition_ignores_the_time_the_new_condition_carries() -> None:
    new = Condition(ConditionType.READY, TRUE, "x", "", "1999-01-01T00:00:00Z")
    assert set_condition((), new, T0)[0].last_transition_time == T0


def test_set_condition_keeps_the_position_of_the_others() -> None:
    conds = (
        Condition(ConditionType.READY, FALSE, "a", "", T0),
        Condition(ConditionType.STALLED, TRUE, "b", "", T0),
    )
    out = set_condition(conds, Condition(ConditionType.READY, TRUE, "c"), T1)
    assert [c.type for c in out] == [ConditionType.READY, ConditionType.STALLED]
    assert out[1] is conds[1]


def test_merge_removes_what_is_no_longer_wanted_but_only_of_owned_types() -> None:
    current = (
        Condition(ConditionType.READY, FALSE, "Suspended", "", T0),
        Condition(ConditionType.SUSPENDED, TRUE, "Suspended", "", T0),
        Condition(ConditionType.AWAITING_AUTHORIZATION, TRUE, "NoToken", "", T0),
    )
    wanted = (Condition(ConditionType.READY, TRUE, Reason.SUCCEEDED),)
    owned = {ConditionType.READY, ConditionType.SUSPENDED}
    out = merge(current, wanted, T1, owned=owned)
    assert [c.type for c in out] == [ConditionType.READY, ConditionType.AWAITING_AUTHORIZATION]
    assert out[0].last_transition_time == T1
    assert out[1].last_transition_time == T0
    assert merge(current, wanted, T1) == (out[0],)


def test_transitions_are_new_conditions_and_changed_statuses() -> None:
    before = (
        Condition(ConditionType.READY, FALSE, "a", "", T0),
        Condition(ConditionType.SUSPENDED, TRUE, "b", "", T0),
    )
    after = (
        Condition(ConditionType.READY, FALSE, "other reason", "", T0),
        Condition(ConditionType.SUSPENDED, TRUE, "b", "", T0),
        Condition(ConditionType.STALLED, TRUE, "c", "", T1),
    )
    assert transitions(before, after) == (after[2],)
    flipped = (Condition(ConditionType.READY, TRUE, "d", "", T1),)
    assert transitions(before, flipped) == flipped


def test_find_remove_and_is_true() -> None:
    conds = (holding(ConditionType.FROZEN), Condition(ConditionType.READY, FALSE, "Frozen"))
    assert find_condition(conds, ConditionType.FROZEN) == conds[0]
    assert find_condition(conds, ConditionType.STALLED) is None
    assert is_true(conds, ConditionType.FROZEN)
    assert not is_true(conds, ConditionType.READY)
    assert remove_condition(conds, ConditionType.FROZEN) == conds[1:]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("unknown_value", "UnknownValue"),
        ("invalid_credentials", "InvalidCredentials"),
        ("server_error", "ServerError"),
        ("platform", "Platform"),
        ("ConnectError", "ConnectError"),
        ("", "Unknown"),
    ],
)
def test_camel_turns_codes_into_reasons(code: str, reason: str) -> None:
    assert camel(code) == reason


def test_timestamp_is_rfc3339_utc() -> None:
    moment = datetime(2026, 12, 1, 11, 47, 22, 999, tzinfo=timezone(timedelta(hours=1)))
    assert timestamp(moment) == "2026-12-01T10:47:22Z"


def _kinds(conds: tuple[Condition, ...]) -> dict[ConditionType, tuple[str, str]]:
    return {c.type: (c.status.value, c.reason) for c in conds}


def test_summary_converged_is_ready() -> None:
    assert _kinds(summary(())) == {ConditionType.READY: ("True", "ReconciliationSucceeded")}


def test_summary_refusal_is_stalled_with_the_code_as_reason() -> None:
    out = summary((), refusal=("unknown_value", "422 unknown_value: settings.x"))
    assert _kinds(out) == {
        ConditionType.READY: ("False", "UnknownValue"),
        ConditionType.STALLED: ("True", "UnknownValue"),
    }
    assert out[1].message == "422 unknown_value: settings.x"


def test_summary_transient_failure_is_reconciling_with_retry() -> None:
    out = summary((), failure=("server_error", "503"))
    assert _kinds(out) == {
        ConditionType.READY: ("False", "ServerError"),
        ConditionType.RECONCILING: ("True", "ProgressingWithRetry"),
    }


def test_summary_in_flight_is_unknown_and_reconciling() -> None:
    out = summary((), in_flight="update in flight")
    assert _kinds(out) == {
        ConditionType.READY: ("Unknown", "Progressing"),
        ConditionType.RECONCILING: ("True", "Progressing"),
    }


def test_summary_domain_condition_gives_ready_its_reason_in_order() -> None:
    domain = (
        holding(ConditionType.AWAITING_AUTHORIZATION),
        holding(ConditionType.SUSPENDED, "paused by ops"),
    )
    out = summary(domain)
    assert _kinds(out) == {ConditionType.READY: ("False", "Suspended")}
    assert out[0].message == "paused by ops"


def test_summary_initial_sync_is_reconciling() -> None:
    out = summary((holding(ConditionType.AWAITING_INITIAL_SYNC),))
    assert _kinds(out) == {
        ConditionType.READY: ("False", "AwaitingInitialSync"),
        ConditionType.RECONCILING: ("True", "AwaitingInitialSync"),
    }


def test_summary_blocked_is_not_ready() -> None:
    out = summary((), blocked=("mass-delete", "mass-delete guard: 3 of 4"))
    assert _kinds(out) == {ConditionType.READY: ("False", "MassDelete")}
    assert out[0].message == "mass-delete guard: 3 of 4"


def test_condition_json_round_trip_and_legacy_strings() -> None:
    c = Condition(ConditionType.STALLED, TRUE, "UnknownValue", "no", T0)
    assert c.to_json() == {
        "type": "Stalled",
        "status": "True",
        "reason": "UnknownValue",
        "message": "no",
        "lastTransitionTime": T0,
    }
    assert Condition.from_json(c.to_json()) == c
    legacy = Condition.from_json("AwaitingInitialSync", legacy_time=T1)
    assert legacy == Condition(
        ConditionType.AWAITING_INITIAL_SYNC, TRUE, "AwaitingInitialSync", "", T1
    )


_statuses = st.sampled_from(list(ConditionStatus))
_types = st.sampled_from(list(ConditionType))
_times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(timestamp)


@given(
    st.lists(st.tuples(_types, _statuses, st.text(max_size=5)), max_size=6),
    st.lists(st.tuples(_types, _statuses, st.text(max_size=5), _times), max_size=12),
)
def test_transition_time_changes_iff_status_changes(
    start: list[tuple[ConditionType, ConditionStatus, str]],
    steps: list[tuple[ConditionType, ConditionStatus, str, str]],
) -> None:
    conds: tuple[Condition, ...] = ()
    for kind, status, reason in start:
        conds = set_condition(conds, Condition(kind, status, reason or "R"), T0)
    for kind, status, reason, now in steps:
        before = find_condition(conds, kind)
        after_all = set_condition(conds, Condition(kind, status, reason or "R"), now)
        after = find_condition(after_all, kind)
        assert after is not None
        assert after.status == status
        if before is not None and before.status == status:
            assert after.last_transition_time == before.last_transition_time
        else:
            assert after.last_transition_time == now
        assert len(after_all) == len({c.type for c in after_all})
        assert [c for c in after_all if c.type != kind] == [c for c in conds if c.type != kind]
        conds = after_all
    assert all(c.last_transition_time for c in conds)


def _failed(name: str, code: str, *, refusal: bool, retryable: bool = False) -> Outcome:
    info = ErrorInfo(code, retryable, refusal, f"422 {code}: no")
    return Outcome(name, "update", False, info.message, 1, 1.0, info=info)


def test_decide_a_refusal_is_stalled_and_wins_over_a_domain_condition() -> None:
    out = decide(
        (holding(ConditionType.AWAITING_AUTHORIZATION),),
        [Outcome("a", "create", True), _failed("a", "unknown_value", refusal=True)],
    )
    assert [(c.type, c.status, c.reason) for c in out] == [
        (ConditionType.AWAITING_AUTHORIZATION, TRUE, "AwaitingAuthorization"),
        (ConditionType.READY, FALSE, "UnknownValue"),
        (ConditionType.STALLED, TRUE, "UnknownValue"),
    ]


def test_decide_a_transient_failure_and_a_plan_problem_are_retried() -> None:
    out = decide((), [_failed("a", "server_error", refusal=False, retryable=True)])
    assert _kinds(out) == {
        ConditionType.READY: ("False", "ServerError"),
        ConditionType.RECONCILING: ("True", "ProgressingWithRetry"),
    }
    problem = PlanProblem("a", "2 unmanaged shopify connections are named 'Twin'")
    out = decide((), problems=[problem])
    assert _kinds(out) == {
        ConditionType.READY: ("False", "PlanFailed"),
        ConditionType.RECONCILING: ("True", "ProgressingWithRetry"),
    }
    assert out[0].message == problem.message
    # A secret that does not resolve is its own reason, not a failed plan.
    held = (holding(ConditionType.SECRET_UNRESOLVED, "secretRef env X is not set"),)
    out = decide(held, problems=[PlanProblem("a", "secretRef env X is not set")])
    assert _kinds(out)[ConditionType.READY] == ("False", "SecretUnresolved")
    assert ConditionType.RECONCILING not in _kinds(out)


def test_decide_a_blocked_action_names_its_guard() -> None:
    blocked = Blocked(ActionKind.DELETE, "a", "mass-delete guard: 3 of 4", 1, Guard.MASS_DELETE)
    out = decide((), blocked=[blocked])
    assert _kinds(out) == {ConditionType.READY: ("False", "MassDelete")}
    assert _kinds(decide((), [Outcome("a", "update", True)])) == {
        ConditionType.READY: ("True", "ReconciliationSucceeded")
    }


def test_mark_in_flight_is_unknown_and_reconciling_and_clears_stalled() -> None:
    before = (
        Condition(ConditionType.READY, FALSE, "UnknownValue", "", T0),
        Condition(ConditionType.STALLED, TRUE, "UnknownValue", "", T0),
        Condition(ConditionType.SUSPENDED, TRUE, "Suspended", "", T0),
    )
    out = mark_in_flight(before, "update in flight", T1)
    assert [(c.type, c.status, c.last_transition_time) for c in out] == [
        (ConditionType.READY, UNKNOWN, T1),
        (ConditionType.SUSPENDED, TRUE, T0),
        (ConditionType.RECONCILING, TRUE, T1),
    ]


def test_is_converged_only_for_ready_true_alone() -> None:
    ready = set_condition((), summary(())[0], T0)
    assert is_converged(ready)
    assert not is_converged(())
    assert not is_converged((*ready, holding(ConditionType.SUSPENDED)))
    assert not is_converged(set_condition((), summary((), failure=("x", "y"))[0], T0))


def test_decode_conditions_reads_objects_and_old_names_and_refuses_the_rest() -> None:
    conds = (Condition(ConditionType.READY, TRUE, "ReconciliationSucceeded", "ok", T0),)
    text = encode_conditions(conds)
    assert decode_conditions(text) == conds
    assert decode_conditions(text) is decode_conditions(text)  # equal rows share one tuple
    old = decode_conditions('["Suspended"]', legacy_time="2026-11-30T08:15:00+00:00")
    assert old == (
        Condition(ConditionType.SUSPENDED, TRUE, "Suspended", "", "2026-11-30T08:15:00Z"),
    )
    for bad in ('["Nope"]', '[{"type": "Ready"}]', "[3]", '[{"type": "Ready", "status": "Maybe"}]'):
        with pytest.raises(ValueError):
            decode_conditions(bad)


def test_a_plan_saved_before_conditions_were_typed_still_reads() -> None:
    plan = Plan.from_json({"conditions": {"sfy": ["AwaitingMarketplaceSetup"]}})
    (held,) = plan.conditions["sfy"]
    assert (held.type, held.status, held.reason) == (
        ConditionType.AWAITING_MARKETPLACE_SETUP,
        TRUE,
        "AwaitingMarketplaceSetup",
    )
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert plan.to_json()["conditions"]["sfy"][0]["type"] == "AwaitingMarketplaceSetup"
