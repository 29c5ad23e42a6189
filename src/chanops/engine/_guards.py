"""The safety rules for removals and deletes: pure functions the planner applies.

No I/O. `removal` decides what happens to a connection whose manifest is gone, with the
guards in the order `Guard` documents (frozen file, unreadable root, unhealthy root);
`mass_delete` holds back every delete of a plan that would delete more than the limit.
The planner is their only caller, so `plan`, `apply` and the daemon all decide alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chanops.condition import ConditionType
from chanops.engine.diff import Observed, source_key
from chanops.engine.plan import FROZEN, Action, ActionKind, Blocked, Cause, Guard
from chanops.platform.models import Connection
from chanops.state.store import Record

# What removing a manifest does to its connection, by deletionPolicy (for blocked removals).
_REMOVAL: Mapping[str, ActionKind] = {
    "Delete": ActionKind.DELETE,
    "Disable": ActionKind.DISABLE,
    "Orphan": ActionKind.ORPHAN,
}
DELETING = frozenset({ActionKind.DELETE, ActionKind.RECREATE})


def default_max_delete(managed: int) -> int:
    return max(1, managed // 4)


@dataclass(frozen=True, slots=True)
class RootFacts:
    """What the load said about the manifests root, as the guards need it.

    Files are compared by `source_key` (relative to the root); a record may hold an
    older as-discovered path, so both forms are tried.
    """

    root: str
    failed: frozenset[str]  # keys of files that exist but fail to load
    present: frozenset[str]  # keys of every manifest file found, loaded or not
    root_ok: bool
    has_manifests: bool  # any manifest or failed file: an empty root deletes nothing

    @classmethod
    def of(
        cls, root: str, failed: Iterable[str], files: Iterable[str], root_ok: bool, desired: int
    ) -> RootFacts:
        failed_keys = frozenset(source_key(f, root) for f in failed)
        return cls(
            root=root,
            failed=failed_keys,
            present=frozenset(source_key(f, root) for f in files),
            root_ok=root_ok,
            has_manifests=desired > 0 or bool(failed_keys),
        )

    def frozen(self, stored: str) -> bool:
        """Whether a record's `source_file` is a file that fails to load."""
        return stored in self.failed or source_key(stored, self.root) in self.failed

    def gone(self, stored: str) -> bool:
        """Whether a record's `source_file` is no longer among the root's files."""
        return stored not in self.present and source_key(stored, self.root) not in self.present


Removal = Action | Blocked | None


def removal(
    record: Record, observed: Observed, by_id: Mapping[int, Connection], facts: RootFacts
) -> Removal:
    """What to do with a managed connection whose manifest is gone (None: nothing now)."""
    if record.source_file and facts.frozen(record.source_file):
        return Blocked(
            ActionKind.DELETE,
            record.name,
            f"{record.source_file} failed to load; its connections are frozen "
            "(no update, no delete) until it loads again",
            connection_id=record.connection_id,
            rule=Guard.FROZEN,
        )
    if record.connection_id is None or record.connection_id not in by_id:
        return _forgotten(record, observed)
    conn = by_id[record.connection_id]
    return _held_by_the_root(record, conn, facts) or _by_policy(record, conn)


def _forgotten(record: Record, observed: Observed) -> Removal:
    """A removed manifest whose connection does not exist (any more): forget it."""
    if record.connection_id is None:
        # Only a condition or an unresolved create intent was remembered.
        return Action(
            ActionKind.ORPHAN,
            record.name,
            record.driver,
            "manifest removed; nothing was created",
            cause=Cause.REMOVED,
        )
    if not observed.saw(record.connection_id):
        return None  # not read in this partial reconcile: decide next time
    return Action(
        ActionKind.ORPHAN,
        record.name,
        record.driver,
        f"connection {record.connection_id} no longer exists on the platform",
        connection_id=record.connection_id,
        cause=Cause.GONE,
    )


def _held_by_the_root(record: Record, conn: Connection, facts: RootFacts) -> Blocked | None:
    """The root-unreadable and unhealthy-root guards, in that order."""
    if not facts.root_ok or not facts.has_manifests:
        return Blocked(
            _REMOVAL[record.deletion_policy],
            record.name,
            "the manifests root is empty or unreadable; nothing is deleted",
            connection_id=conn.id,
            rule=Guard.ROOT_UNREADABLE,
        )
    if facts.failed and record.source_file and facts.gone(record.source_file):
        return Blocked(
            _REMOVAL[record.deletion_policy],
            record.name,
            f"{record.source_file} is gone while {len(facts.failed)} other manifest file(s) "
            "fail to load; the connection is kept until the root loads cleanly",
            connection_id=conn.id,
            rule=Guard.UNHEALTHY_ROOT,
        )
    return None


def _by_policy(record: Record, conn: Connection) -> Removal:
    policy = record.deletion_policy
    if policy == "Orphan":
        return Action(
            ActionKind.ORPHAN,
            record.name,
            record.driver,
            "manifest removed; deletionPolicy Orphan: forget it, leave it as it is",
            connection_id=conn.id,
            deletion_policy=policy,
            cause=Cause.REMOVED,
        )
    if policy == "Disable":
        if conn.status != "active":
            return None
        return Action(
            ActionKind.DISABLE,
            record.name,
            record.driver,
            "manifest removed; deletionPolicy Disable keeps it disabled",
            connection_id=conn.id,
            deletion_policy=policy,
            cause=Cause.REMOVED,
        )
    if conn.status == "deleting":
        return None  # the delete job is running; the next reconcile sees it gone
    return Action(
        ActionKind.DELETE,
        record.name,
        record.driver,
        "manifest removed; deletionPolicy Delete"
        + (" (disable first)" if conn.status == "active" else ""),
        connection_id=conn.id,
        if_match=conn.version,
        deletion_policy=policy,
        disable_first=conn.status == "active",
        cause=Cause.REMOVED,
    )


def blocked_condition(blocked: Blocked) -> ConditionType | None:
    """The condition a held removal puts its connection in."""
    return FROZEN if blocked.rule in (Guard.FROZEN, Guard.UNHEALTHY_ROOT) else None


def mass_delete(
    actions: Sequence[Action], *, managed: int, limit: int, elsewhere: int = 0
) -> tuple[list[Action], list[Blocked]]:
    """`actions` without its deletes, and those deletes blocked, when too many would go.

    `elsewhere` counts deletes a full plan would make outside this (partial) plan: the
    guard is about the root, so a root that lost half its files is never deleted a
    batch at a time. A recreate counts as a delete; the disable that followed a blocked
    recreate goes with it.
    """
    deleting = [a for a in actions if a.kind in DELETING]
    total = len(deleting) + elsewhere
    if not deleting or total <= limit:
        return list(actions), []
    reason = (
        f"mass-delete guard: this plan would delete {total} of {managed} "
        f"managed connections, more than --max-delete {limit}; no connection is deleted"
    )
    names = {a.name for a in deleting}
    kept: list[Action] = []
    blocked: list[Blocked] = []
    for action in actions:
        if action.kind in DELETING:
            blocked.append(
                Blocked(action.kind, action.name, reason, action.connection_id, Guard.MASS_DELETE)
            )
        elif (
            action.kind == ActionKind.DISABLE
            and action.name in names
            and action.connection_id is None
        ):
            continue  # the disable that followed a blocked recreate
        else:
            kept.append(action)
    return kept, blocked


__all__ = [
    "RootFacts",
    "blocked_condition",
    "default_max_delete",
    "mass_delete",
    "removal",
]
