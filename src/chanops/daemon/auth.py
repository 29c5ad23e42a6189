"""The daemon's side of OAuth: what a refused grant means for readiness and /status,
and resuming once someone has run `chanops login`.

The platform client's session (`chanops.platform.auth.OAuthSession`) announces the
refusal (`auth.reauthorization_required`, once per streak) and from then on fails every
call at once (`ReauthorizationRequired`, an outage of the platform to the daemon: no
reconcile goes on trying). This module adds, while the session awaits a login:

- `/readyz` 503 with the reason;
- an `AwaitingAuthorization` condition on every connection of `/status`;
- a watch that looks at the state store every `POLL_S` (a local read, no platform
  call; the session itself tries the token endpoint at most every `--auth-recheck`)
  and asks for a full resync as soon as the session has a token set again, so the
  daemon resumes without a restart (`auth.restored`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from chanops.condition import Condition, ConditionStatus, ConditionType
from chanops.daemon._outcomes import UNREACHABLE
from chanops.platform.auth import OAuthSession

POLL_S = 2.0  # how often a waiting daemon reads the store for a new login
REASON = "ReauthorizationRequired"


class AuthGate:
    """The OAuth session of the daemon's platform client, as the daemon sees it."""

    def __init__(self, session: OAuthSession, *, poll_s: float = POLL_S) -> None:
        self.session = session
        self.poll_s = poll_s

    @property
    def awaiting(self) -> bool:
        return self.session.awaiting_authorization

    def condition(self) -> Condition:
        since = self.session.awaiting_since or 0.0
        stamp = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
        return Condition(
            ConditionType.AWAITING_AUTHORIZATION,
            ConditionStatus.TRUE,
            REASON,
            f"chanops is not authorised on the platform: {self.session.awaiting_reason}",
            stamp.replace("+00:00", "Z"),
        )

    async def watch(self, stopping: asyncio.Event, on_restored: Callable[[str], None]) -> None:
        """Until `stopping`: while awaiting a login, re-check; on success, `on_restored`
        (the daemon's full-resync request) with the reason."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.poll_s)
            if self.awaiting and not stopping.is_set() and await self.session.recheck():
                on_restored("authorization restored")


def auth_readiness(gate: AuthGate | None, ready: tuple[bool, list[str]]) -> tuple[bool, list[str]]:
    """Readiness with the authorisation's reason added while a login is awaited. The
    platform's reachability is then unknown (no call goes out), so that reason goes:
    the authorisation is the one story."""
    if gate is None or not gate.awaiting:
        return ready
    reason = f"awaiting authorization: {gate.session.awaiting_reason}"
    kept = [r for r in ready[1] if r not in (UNREACHABLE, reason)]
    return False, [*kept, reason]


def with_auth(gate: AuthGate | None, document: dict[str, Any]) -> dict[str, Any]:
    """The /status document with AwaitingAuthorization on every connection while a
    login is awaited (it replaces a connection's own condition of that type)."""
    if gate is None or not gate.awaiting:
        return document
    condition = gate.condition().to_json()
    document["ready"] = False
    document["reasons"] = auth_readiness(gate, (False, list(document.get("reasons", ()))))[1]
    for connection in document.get("connections", ()):
        connection["conditions"] = _awaiting(connection.get("conditions", ()), condition)
    document["authorization"] = {"awaiting": True, "reason": condition["message"]}
    return document


def awaiting_conditions(gate: AuthGate | None, conditions: list[Any]) -> list[Any]:
    """One connection's conditions as /status shows them (`with_auth`): the status
    page's rows take them from here, so both tell the refused grant alike."""
    if gate is None or not gate.awaiting:
        return conditions
    return _awaiting(conditions, gate.condition().to_json())


def _awaiting(conditions: Iterable[Any], condition: dict[str, str]) -> list[Any]:
    """AwaitingAuthorization added (it replaces the connection's own of that type) and
    Ready false; a bare condition name (an older store's) is kept as it is."""
    kept = [
        _not_ready(c, condition)
        if isinstance(c, Mapping) and c.get("type") == ConditionType.READY.value
        else c
        for c in conditions
        if (c.get("type") if isinstance(c, Mapping) else c) != condition["type"]
    ]
    return [*kept, condition]


def _not_ready(ready: Mapping[str, Any], awaiting: dict[str, str]) -> Mapping[str, Any]:
    """A connection is not Ready while chanops cannot reach it on the platform's behalf."""
    if ready.get("status") == ConditionStatus.FALSE.value:
        return ready
    changed = {key: awaiting[key] for key in ("reason", "message", "lastTransitionTime")}
    return {**ready, **changed, "status": ConditionStatus.FALSE.value}


def watch_auth(
    gate: AuthGate | None, stopping: asyncio.Event, on_restored: Callable[[str], None]
) -> asyncio.Task[None] | None:
    """Start the gate's watch (a task that ends with `stopping`), if there is a gate."""
    if gate is None:
        return None
    return asyncio.create_task(gate.watch(stopping, on_restored), name="auth watch")
