"""Which writes call for a sync (pure: actions and driver metadata in, sync actions out)."""

from __future__ import annotations

from typing import Any

from chanops.engine._procedures import sync_actions, sync_reason
from chanops.engine.diff import Desired, DriverMeta
from chanops.engine.plan import Action, ActionKind, Cause, FieldChange
from engine.helpers import manifest

TRIGGERS = {
    "/settings/priceRules": "change",
    "/settings/shippingProviderMapping": "change",
    "/settings/klarna": "enable",
}


def change(path: str, before: Any, after: Any) -> FieldChange:
    return FieldChange(path, "change" if before is not None else "add", before, after)


def test_any_change_under_a_change_field_and_only_turning_on_an_enable_field() -> None:
    assert sync_reason([change("/settings/priceRules", ["a"], ["a", "b"])], TRIGGERS)
    nested = change("/settings/shippingProviderMapping/gift-wrap", None, "DHL")
    assert sync_reason([nested], TRIGGERS) == (
        "the vendor's procedure requires a sync after a change to /settings/shippingProviderMapping"
    )
    removed = FieldChange("/settings/priceRules", "remove", ["a"], None)
    assert sync_reason([removed], TRIGGERS) is not None
    assert sync_reason([change("/settings/klarna", None, True)], TRIGGERS) is not None
    assert sync_reason([change("/settings/klarna", False, True)], TRIGGERS) is not None
    assert sync_reason([change("/settings/klarna", True, False)], TRIGGERS) is None
    assert sync_reason([change("/settings/priceRulesX", None, ["a"])], TRIGGERS) is None
    assert sync_reason([change("/name", "a", "b")], TRIGGERS) is None


def test_one_sync_per_connection_after_its_writes_and_none_while_disabled() -> None:
    meta = DriverMeta(sync_after_change=TRIGGERS)
    on = manifest("on")
    off = manifest("off", enabled=False)
    desired = {m.name: Desired(m) for m in (on, off)}
    rules = change("/settings/priceRules", None, ["a"])
    klarna = change("/settings/klarna", None, True)
    actions = [
        Action(ActionKind.CREATE, "on", "shopware6", "new", changes=(rules,)),
        Action(ActionKind.UPDATE, "on", "shopware6", "x", connection_id=3, changes=(klarna,)),
        Action(ActionKind.UPDATE, "off", "shopware6", "x", connection_id=4, changes=(rules,)),
        Action(ActionKind.ENABLE, "on", "shopware6", "x", connection_id=3),
    ]
    (sync,) = sync_actions(actions, desired, lambda driver: meta)
    assert (sync.kind, sync.name, sync.cause) == (ActionKind.SYNC, "on", Cause.PROCEDURE)
    assert sync.connection_id is None  # after a create: the executor knows the new id
    assert sync.reason.endswith("/settings/priceRules")
