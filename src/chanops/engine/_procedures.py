"""Syncs the vendor's procedures require after a change: which writes call for one.

Some fields take effect only through a synchronisation (DRIVERS: "sync after change"):
Amazon's shipping provider mapping, Tradebyte's sales channels, Shopware 6's price
rules (the sync creates their price attributes), and Shopware 6's Klarna and Ratepay
integrations when they are turned on. The driver schemas mark them
`x-chanops-sync-after-change` (`true`: any change; `"enable"`: turning it on); the
planner adds one `sync` action per connection after the create or update that changed
one, so `plan`, `apply` and the daemon all show and do the same.

Pure: actions and driver metadata in, actions out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from chanops.engine import pointers
from chanops.engine.diff import Desired, DriverMeta
from chanops.engine.plan import Action, ActionKind, Cause, FieldChange

__all__ = ["sync_actions", "sync_reason"]

# The writes whose changes can call for a sync: a create's settings go in right after it.
_WRITES = (ActionKind.CREATE, ActionKind.RECREATE, ActionKind.UPDATE)


def _needs_sync(change: FieldChange, field: str, trigger: str) -> bool:
    if not pointers.is_under(change.path, field):
        return False
    if trigger == "enable":
        return change.path == field and change.after is True and change.before is not True
    return True


def sync_reason(changes: Iterable[FieldChange], triggers: Mapping[str, str]) -> str | None:
    """Why these changes need a sync afterwards (the fields, by pointer), or None."""
    fields = [
        f"{field} turned on" if trigger == "enable" else field
        for field, trigger in triggers.items()
        if any(_needs_sync(c, field, trigger) for c in changes)
    ]
    if not fields:
        return None
    return "the vendor's procedure requires a sync after a change to " + ", ".join(fields)


def sync_actions(
    actions: Sequence[Action],
    desired: Mapping[str, Desired],
    meta: Callable[[str], DriverMeta],
) -> list[Action]:
    """One `sync` for each connection a write of `actions` changes a sync-after-change field of.

    Only active connections synchronise: a manifest that keeps its connection disabled
    gets none.
    """
    out: list[Action] = []
    planned: set[str] = {a.name for a in actions if a.kind == ActionKind.SYNC}
    for a in actions:
        d = desired.get(a.name)
        if a.kind not in _WRITES or a.name in planned or d is None or not d.manifest.enabled:
            continue
        reason = sync_reason(a.changes, meta(a.driver).sync_after_change)
        if reason is None:
            continue
        planned.add(a.name)
        out.append(
            Action(
                ActionKind.SYNC,
                a.name,
                a.driver,
                reason,
                connection_id=a.connection_id if a.kind == ActionKind.UPDATE else None,
                cause=Cause.PROCEDURE,
            )
        )
    return out
