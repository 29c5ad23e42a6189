"""The planner's safety guards as a table: (desired, observed, memory, options) -> decisions.

Pure and in-process: no emulator, no files. Each row names the situation, builds the
planner's four inputs and says which actions and blocked actions must come out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from chanops.engine._planner import Desired, Observed, PlanOptions, make_plan
from chanops.manifests.model import Manifest
from chanops.platform.models import Connection
from chanops.state.store import Record
from engine.helpers import manifest

NAMES = ("a", "b", "c", "d", "e", "f", "g", "h")


def conn(i: int, name: str, status: str = "active") -> Connection:
    return Connection(id=i, name=name, driver="shopware6", status=status, version=1)  # type: ignore[arg-type]


def record(i: int, name: str, policy: str = "Delete") -> Record:
    return Record(
        name=name,
        driver="shopware6",
        connection_id=i,
        source_file=f"{name}.yaml",
        deletion_policy=policy,
        version=1,
    )


@dataclass
class Row:
    """One situation: `present` manifests (by name) of the eight managed connections."""

    present: tuple[str, ...]
    failed: tuple[str, ...] = ()  # files that exist but fail to load
    only: tuple[str, ...] | None = None  # a partial reconcile of these names
    root_ok: bool = True
    max_delete: int | None = None
    policies: dict[str, str] = field(default_factory=dict)
    actions: set[tuple[str, str]] = field(default_factory=set)
    blocked: set[tuple[str, str, str]] = field(default_factory=set)


ROWS = {
    "nothing changed": Row(present=NAMES),
    "one file removed: deleted": Row(present=NAMES[1:], actions={("delete", "a")}),
    "one removed, Disable policy": Row(
        present=NAMES[1:], policies={"a": "Disable"}, actions={("disable", "a")}
    ),
    "one removed, Orphan policy": Row(
        present=NAMES[1:], policies={"a": "Orphan"}, actions={("orphan", "a")}
    ),
    "broken file: frozen": Row(present=NAMES, failed=("b",), blocked={("delete", "b", "frozen")}),
    "removed while another is broken: unhealthy root": Row(
        present=NAMES[1:],
        failed=("b",),
        blocked={("delete", "a", "unhealthy-root"), ("delete", "b", "frozen")},
    ),
    "unreadable root: nothing deleted": Row(
        present=(),
        root_ok=False,
        blocked={("delete", n, "root-unreadable") for n in NAMES},
    ),
    "three of eight removed, limit 2: none deleted": Row(
        present=NAMES[3:],
        blocked={("delete", n, "mass-delete") for n in NAMES[:3]},
    ),
    "three removed, --max-delete 3: all deleted": Row(
        present=NAMES[3:], max_delete=3, actions={("delete", n) for n in NAMES[:3]}
    ),
    # A partial reconcile (a daemon edit, or a batch of a resync) counts the deletes a
    # full plan would make: a root that lost three files is not deleted a batch at a time.
    "partial of one removed name, three removed in all: none deleted": Row(
        present=NAMES[3:],
        only=("a",),
        blocked={("delete", "a", "mass-delete")},
    ),
    "partial of one removed name, it alone removed: deleted": Row(
        present=NAMES[1:], only=("a",), actions={("delete", "a")}
    ),
    "partial of an untouched name while a broken file holds a removal": Row(
        present=NAMES[1:], failed=("b",), only=("c",)
    ),
}


@pytest.mark.parametrize("situation", sorted(ROWS))
def test_guard_table(situation: str) -> None:
    row = ROWS[situation]
    manifests: list[Manifest] = [manifest(n, display_name=n) for n in row.present]
    desired = {m.name: Desired(m) for m in manifests}
    memory = {n: record(i, n, row.policies.get(n, "Delete")) for i, n in enumerate(NAMES, 1)}
    observed = Observed(tuple(conn(i, n) for i, n in enumerate(NAMES, 1)))
    files = {f"{n}.yaml" for n in row.present} | {f"{n}.yaml" for n in row.failed}
    options = PlanOptions(
        max_delete=row.max_delete,
        failed_files=frozenset(f"{n}.yaml" for n in row.failed),
        files=frozenset(files),
        root_ok=row.root_ok,
        only=frozenset(row.only) if row.only is not None else None,
    )
    plan = make_plan(desired, observed, memory, options)
    assert {(a.kind.value, a.name) for a in plan.actions if a.kind.value != "update"} == (
        row.actions
    )
    assert {(b.kind.value, b.name, b.rule.value) for b in plan.blocked} == row.blocked
