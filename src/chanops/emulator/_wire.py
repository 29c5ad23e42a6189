"""The wire forms of the emulator's rows: connections and jobs as the API returns them.

Pure functions of a row's values (and, for a job, of the time it is read at), so the
store can cache a connection's encoded form for as long as its row is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chanops.emulator import rules

# Seconds at --time-scale 1.0: (queued, running).
DURATIONS: dict[str, tuple[float, float]] = {
    "initial_sync": (0.5, 3.0),
    "sync": (0.5, 2.0),
    "delete": (1.0, 6.0),  # deleting takes longer than syncing
}


# json.dumps(value, ensure_ascii=False, allow_nan=False, indent=None,
# separators=(",", ":")) builds this encoder on every call; building it once saves
# a few microseconds per connection
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def encode_json(value: Any) -> bytes:
    """JSON exactly as starlette's JSONResponse renders it."""
    return _ENCODER.encode(value).encode("utf-8")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def connection_wire(row: Sequence[Any]) -> dict[str, Any]:
    """A connection as the API returns it, from the values of `store.LIST_SQL`'s columns."""
    (
        cid,
        name,
        driver,
        status,
        has_order_errors,
        created_at,
        updated_at,
        version,
        credentials,
        settings,
        automation,
        authorized,
    ) = row
    driver = str(driver)
    return {
        "id": int(cid),
        "name": name,
        "driver": driver,
        "status": status,
        "has_order_errors": bool(has_order_errors),
        "created_at": iso(float(created_at)),
        "updated_at": iso(float(updated_at)),
        "version": int(version),
        "credentials": rules.redact(driver, json.loads(credentials)),
        "settings": json.loads(settings),
        "automation": json.loads(automation),
        "authorization": None
        if authorized is None
        else ("authorized" if authorized else "pending"),
    }


@dataclass(frozen=True, slots=True)
class JobView:
    """A job row plus its state derived at `now`."""

    id: int
    kind: str
    connection_id: int
    created_at: float
    started_at: float
    finished_at: float
    fails: bool
    snapshot: Mapping[str, Any]
    now: float

    @property
    def state(self) -> str:
        if self.now < self.started_at:
            return "queued"
        if self.now < self.finished_at:
            return "running"
        return "failed" if self.fails else "succeeded"

    @property
    def done(self) -> bool:
        return self.now >= self.finished_at

    @property
    def succeeded(self) -> bool:
        return self.done and not self.fails

    def wire(self) -> dict[str, Any]:
        state = self.state
        if state == "queued":
            progress = 0
        elif state == "running":
            span = max(self.finished_at - self.started_at, 1e-9)
            progress = min(99, int(100 * (self.now - self.started_at) / span))
        else:
            progress = 100
        error = None
        if state == "failed":
            error = "the marketplace rejected the sync: authentication with the shop failed"
        return {
            "id": self.id,
            "kind": self.kind,
            "connection_id": self.connection_id,
            "state": state,
            "progress": progress,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at) if state != "queued" else None,
            "finished_at": iso(self.finished_at) if self.done else None,
            "error": error,
        }
