"""A plan is data: what the planner decided, for the executor and the renderers.

Pure: frozen dataclasses and their JSON form, no I/O. A `Plan` holds an ordered list
of `Action`s (a closed enum of kinds, each with its reason and, for updates, a
field-level diff), the actions a safety rule blocked (with why), the unmanaged
connections, the differences `ignoreDifferences` kept, per-connection conditions and
errors. Secrets never appear: a sensitive change carries no values, only the flag.
`Plan.to_json()` / `Plan.from_json()` round-trip exactly.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from chanops.condition import Condition, ConditionType


class ActionKind(enum.StrEnum):
    CREATE = "create"
    ADOPT = "adopt"
    UPDATE = "update"
    ENABLE = "enable"
    DISABLE = "disable"
    SYNC = "sync"
    DELETE = "delete"
    ORPHAN = "orphan"
    RECREATE = "recreate"


class Cause(enum.StrEnum):
    """Why an action is planned, for code to decide by; `Action.reason` is for people.

    DRIFT (someone changed the connection on the platform since chanops's last apply)
    is what drift events and metrics count; the others say where the difference came
    from.
    """

    MANIFEST = "manifest"  # the manifest asks for something the platform does not have
    DRIFT = "drift"  # changed on the platform since the last apply
    NEW = "new"  # no connection exists yet: create it
    ADOPTION = "adoption"  # an existing unmanaged connection becomes managed
    IMMUTABLE = "immutable"  # an immutable field changed: delete and create (recreate)
    REMOVED = "removed"  # the manifest is gone: its deletionPolicy applies
    GONE = "gone"  # the connection no longer exists on the platform: forget it
    PROCEDURE = "procedure"  # the vendor's procedure requires a sync after the change


class Guard(enum.StrEnum):
    """The safety rules that can block an action, in the order the planner applies them.

    1. IMMUTABLE: an immutable field (the driver, Amazon's marketplace) would change and
       `--allow-recreate` was not given.
    2. FROZEN: the file that defined the connection last time fails to load (bad YAML, a
       schema error, a directory or FIFO where the file was): no update, no delete.
    3. ROOT_UNREADABLE: the manifests root is missing, unreadable or holds no manifest:
       nothing is deleted.
    4. UNHEALTHY_ROOT: a connection whose file is gone is deleted only while every other
       file of the root loads; while one fails, the deletion waits (the gone file may be
       half of a move whose other half is the broken file).
    5. MASS_DELETE: a plan that would delete more than `max_delete` connections deletes
       none.

    `plan`, `apply` and the daemon all get their decisions from the planner, so a plan
    shown on a pull request is exactly what the daemon will do with the same inputs.
    """

    IMMUTABLE = "immutable"
    FROZEN = "frozen"
    ROOT_UNREADABLE = "root-unreadable"
    UNHEALTHY_ROOT = "unhealthy-root"
    MASS_DELETE = "mass-delete"


# The domain conditions the planner and executor decide (`chanops.engine.conditions`
# holds the rules and the summary conditions Ready, Reconciling and Stalled).
AWAITING_MARKETPLACE_SETUP = ConditionType.AWAITING_MARKETPLACE_SETUP
AWAITING_AUTHORIZATION = ConditionType.AWAITING_AUTHORIZATION
AWAITING_INITIAL_SYNC = ConditionType.AWAITING_INITIAL_SYNC
SUSPENDED = ConditionType.SUSPENDED
FROZEN = ConditionType.FROZEN
SECRET_UNRESOLVED = ConditionType.SECRET_UNRESOLVED


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One leaf of the field-level diff; `path` is a JSON pointer relative to spec."""

    path: str  # e.g. "/settings/taxClasses/standard", "/name", "/credentials/apiKey"
    op: str  # "add" | "change" | "remove"
    before: Any = None  # None for a sensitive change
    after: Any = None  # None for a sensitive change or a removal
    sensitive: bool = False


@dataclass(frozen=True, slots=True)
class NewState:
    """What the store remembers about a connection once its action succeeded.

    Decided by the planner, written by the executor as is: the applied spec (no secret:
    sensitive fields are left out, their HMACs travel with the desired state), the
    fingerprint of the manifest, and the file it came from (`source_key`).
    """

    applied_spec: Mapping[str, Any]
    fingerprint: str
    source_key: str


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    name: str  # manifest name (identity in git)
    driver: str
    reason: str
    connection_id: int | None = None
    changes: tuple[FieldChange, ...] = ()
    # create/recreate: the non-secret body; secrets are resolved by the executor.
    display_name: str = ""
    if_match: int | None = None  # the observed version an update is based on
    idempotency_key: str | None = None
    deletion_policy: str = "Delete"
    disable_first: bool = False  # delete: the connection is active, disable it before
    cause: Cause = Cause.MANIFEST
    new_state: NewState | None = None  # adopt, create, recreate, update


@dataclass(frozen=True, slots=True)
class Blocked:
    """An action a safety rule refused this reconcile, and why."""

    kind: ActionKind
    name: str
    reason: str
    connection_id: int | None = None
    rule: Guard = Guard.FROZEN


@dataclass(frozen=True, slots=True)
class Unmanaged:
    connection_id: int
    name: str
    driver: str
    status: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A difference `spec.ignoreDifferences` keeps from being healed."""

    name: str
    path: str
    before: Any = None
    after: Any = None


@dataclass(frozen=True, slots=True)
class PlanProblem:
    """A connection the planner cannot decide for (ambiguous adoption, missing id, ...)."""

    name: str
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...] = ()
    blocked: tuple[Blocked, ...] = ()
    unmanaged: tuple[Unmanaged, ...] = ()
    ignored: tuple[Ignored, ...] = ()
    errors: tuple[PlanProblem, ...] = ()
    # The domain conditions that hold per name, unstamped (the store stamps them).
    conditions: Mapping[str, tuple[Condition, ...]] = field(default_factory=dict)
    managed: int = 0  # connections in memory when planned (the guard's base)
    max_delete: int = 1

    @property
    def empty(self) -> bool:
        """No write would happen (blocked actions and conditions are not writes)."""
        return not self.actions

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for action in self.actions:
            out[action.kind.value] = out.get(action.kind.value, 0) + 1
        return out

    def for_name(self, name: str) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.name == name)

    # -- JSON ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["conditions"] = {
            k: [c.to_json() for c in v] for k, v in sorted(self.conditions.items())
        }
        data["summary"] = self.counts()
        return _plain(data)  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            actions=tuple(
                Action(
                    **{
                        **a,
                        "kind": ActionKind(a["kind"]),
                        "cause": Cause(a.get("cause", Cause.MANIFEST)),
                        "new_state": NewState(**a["new_state"]) if a.get("new_state") else None,
                        "changes": tuple(FieldChange(**c) for c in a.get("changes", ())),
                    }
                )
                for a in data.get("actions", ())
            ),
            blocked=tuple(
                Blocked(**{**b, "kind": ActionKind(b["kind"]), "rule": Guard(b["rule"])})
                for b in data.get("blocked", ())
            ),
            unmanaged=tuple(Unmanaged(**u) for u in data.get("unmanaged", ())),
            ignored=tuple(Ignored(**i) for i in data.get("ignored", ())),
            errors=tuple(PlanProblem(**e) for e in data.get("errors", ())),
            # A plan saved before conditions were typed holds bare type strings.
            conditions={
                k: tuple(Condition.from_json(c) for c in v)
                for k, v in data.get("conditions", {}).items()
            },
            managed=int(data.get("managed", 0)),
            max_delete=int(data.get("max_delete", 1)),
        )


def _plain(value: Any) -> Any:
    """Tuples to lists and enums to strings, so json.dumps and equality agree."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
