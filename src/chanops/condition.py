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
from collections.abc import Mapping
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


__all__ = ["Condition", "ConditionStatus", "ConditionType"]
