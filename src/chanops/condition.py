"""The `Condition` type: one Flux-style condition of a connection, as plain data.

A condition says one thing about a connection (`type`), whether it holds (`status`:
"True", "False" or "Unknown"), why in one CamelCase word for code (`reason`), why in a
sentence for people (`message`, never a secret) and since when its status has been what
it is (`last_transition_time`, RFC 3339 UTC).

This module is a foundation: the state store keeps conditions, the engine decides them,
the daemon and the command line show them, so the type sits below all of them. The
rules (which conditions hold, when the transition time moves) live in
`chanops.engine.conditions`.

Stores written before conditions were typed hold bare strings (`"Suspended"`);
`Condition.from_json` reads those as a condition that holds, its reason the type, its
transition time the time the row was written.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class ConditionType(enum.StrEnum):
    """What a condition is about.

    READY, RECONCILING and STALLED are the summary every tool reading Kubernetes-style
    status understands (kstatus); the others are chanops's domain conditions, present
    while they hold.
    """

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    AWAITING_AUTHORIZATION = "AwaitingAuthorization"
    AWAITING_MARKETPLACE_SETUP = "AwaitingMarketplaceSetup"
    AWAITING_INITIAL_SYNC = "AwaitingInitialSync"
    SECRET_UNRESOLVED = "SecretUnresolved"  # noqa: S105 (a condition name, not a secret)
    SUSPENDED = "Suspended"
    FROZEN = "Frozen"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition of one connection; `last_transition_time` is "" until stamped.

    A plan's conditions are what would hold, not yet observed over time, so they carry
    no time; the store stamps them when it records them.
    """

    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str = ""

    @property
    def holds(self) -> bool:
        return self.status == ConditionStatus.TRUE

    def to_json(self) -> dict[str, str]:
        """The Kubernetes/Flux field names: type, status, reason, message, lastTransitionTime."""
        return {
            "type": self.type.value,
            "status": self.status.value,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str, *, legacy_time: str = "") -> Condition:
        """A condition from its JSON object, or from an older store's bare type string.

        A bare string held (older stores kept only conditions that held), so it reads as
        status True with the type as reason; `legacy_time` (the row's update time) is
        the best known transition time.
        """
        if isinstance(data, str):
            kind = ConditionType(data)
            return cls(kind, ConditionStatus.TRUE, kind.value, "", legacy_time)
        return cls(
            type=ConditionType(data["type"]),
            status=ConditionStatus(data["status"]),
            reason=str(data.get("reason", "")),
            message=str(data.get("message", "")),
            last_transition_time=str(data.get("lastTransitionTime", "")),
        )


def encode_conditions(conditions: Iterable[Condition]) -> str:
    """Conditions as the JSON list a store keeps."""
    return json.dumps([c.to_json() for c in conditions])


def decode_conditions(text: str, *, legacy_time: str = "") -> tuple[Condition, ...]:
    """A stored JSON list of conditions, or of an older store's bare type strings.

    Raises ValueError for anything else (a type no member matches is a store written
    by a newer chanops). `legacy_time` is the transition time of a bare string.
    """
    if text == "[]":
        return ()
    if text.startswith("[{"):
        return _decode_objects(text)
    # An old row: its time as RFC 3339 with "Z", like the times chanops writes.
    since = (
        legacy_time.removesuffix("+00:00") + "Z" if legacy_time.endswith("+00:00") else legacy_time
    )
    try:
        return tuple(Condition.from_json(c, legacy_time=since) for c in json.loads(text))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a condition: {exc}") from exc


# Reading 10,000 rows decodes 10,000 lists, most alike (Ready since the same reconcile):
# the conditions are immutable, so equal texts share one decoded tuple.
@functools.lru_cache(maxsize=4096)
def _decode_objects(text: str) -> tuple[Condition, ...]:
    try:
        return tuple(Condition.from_json(c) for c in json.loads(text))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a condition: {exc}") from exc


__all__ = [
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "decode_conditions",
    "encode_conditions",
]
