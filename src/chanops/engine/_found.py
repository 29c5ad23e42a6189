"""What the planner found for one manifest on the platform: a small union for `match`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chanops.platform.models import Connection


@dataclass(frozen=True, slots=True)
class Managed:
    """The connection chanops manages for this manifest."""

    conn: Connection


@dataclass(frozen=True, slots=True)
class Adopt:
    """An unmanaged connection this manifest takes over, and why."""

    conn: Connection
    reason: str


@dataclass(frozen=True, slots=True)
class Create:
    """No connection exists for this manifest: create one, and why."""

    reason: str


class _Undecided(enum.Enum):
    UNKNOWN = "unknown"  # a partial read did not cover it: decide next time
    SETTLED = "settled"  # an error or a person's step was recorded: nothing to plan


UNKNOWN = _Undecided.UNKNOWN
SETTLED = _Undecided.SETTLED
Found = Managed | Adopt | Create | _Undecided
