"""What the endpoints say: readiness, the /status document, liveness after a crash.

Nothing here contains a secret: /status shows each connection's desired state without
credentials, what the platform returned (id, name, status, version, authorization) and
the last events, which the log redactor has already scrubbed.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from chanops.daemon._gitsource import git_status, readiness_reasons
from chanops.daemon._outcomes import PLATFORM, UNREACHABLE
from chanops.daemon._scheduler import utc_iso
from chanops.daemon.auth import AuthGate, auth_readiness
from chanops.state import HISTORY_SIZE

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from chanops.daemon._backoff import Retry
    from chanops.daemon._outcomes import Outcomes
    from chanops.daemon._parts import Parts
    from chanops.manifests.model import LoadResult, Manifest
    from chanops.platform.models import Connection
    from chanops.state.store import Record

EVENTS_PER_CONNECTION = 20
RECENT_EVENTS = HISTORY_SIZE  # the ring shows what the stored history keeps
_EVENT_FIELDS = (
    "event",
    "timestamp",
    "level",
    "action",
    "error",
    "duration_ms",
    "reconcile_id",
    "revision",
    "job_id",
    "condition",
    "status",
    "reason",
    "message",
    "changes",
    # reconcile.completed's figures: the status page's last reconciles, on any replica
    "kind",
    "actions",
    "failed",
    "blocked",
    "waiting",
    "drift",
    "converged",
)


class EventLog:
    """The last events, overall and per connection (subscribed to the log tap).

    This replica's own events also wait in `unsaved` until the writer appends them to
    the store's history (`chanops.daemon._history`); `replace` shows the store's history
    (a standby's refresh, a new term, a restart) with this replica's unsaved events.
    """

    def __init__(self) -> None:
        self.by_connection: dict[str, deque[dict[str, Any]]] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.unsaved: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.replaced = 0  # counts `replace`: the status page's views of the history

    def __call__(self, event: MutableMapping[str, Any]) -> None:
        name = event.get("connection")
        compact = {k: event[k] for k in _EVENT_FIELDS if k in event}
        if isinstance(name, str):
            compact = {"connection": name, **compact}
        self._add(compact)
        self.unsaved.append(compact)

    def _add(self, compact: dict[str, Any]) -> None:
        name = compact.get("connection")
        if isinstance(name, str):
            queue = self.by_connection.setdefault(name, deque(maxlen=EVENTS_PER_CONNECTION))
            queue.append({k: v for k, v in compact.items() if k != "connection"})
        self.recent.append(compact)

    def take(self) -> list[dict[str, Any]]:
        """The unsaved events, oldest first, removed (events may arrive from threads)."""
        batch: list[dict[str, Any]] = []
        with contextlib.suppress(IndexError):
            while True:
                batch.append(self.unsaved.popleft())
        return batch

    def give_back(self, batch: list[dict[str, Any]]) -> None:
        """A batch the store did not take: unsaved again, before the newer ones."""
        newer = self.take()
        self.unsaved.extend([*batch, *newer])

    def replace(self, stored: list[dict[str, Any]]) -> None:
        """Show the store's history and this replica's unsaved events, by time."""
        shown = sorted([*stored, *self.unsaved], key=lambda e: str(e.get("timestamp", "")))
        self.by_connection = {}
        self.recent = deque(maxlen=RECENT_EVENTS)
        for compact in shown:
            self._add(compact)
        self.replaced += 1


class Status:
    def __init__(
        self,
        parts: Parts,
        outcomes: Outcomes,
        *,
        events: EventLog,
        load: Callable[[], LoadResult | None],
        crashed: Callable[[], str | None],
        auth: AuthGate | None = None,
    ) -> None:
        self.auth = auth  # an OAuth client: a refused grant is the readiness reason
        self.store = parts.store
        self.index = parts.index
        self.observed = parts.observed
        self.queue = parts.queue
        self.scheduler = parts.scheduler
        self.logging = parts.logging
        self.sources = parts.sources
        self.outcomes = outcomes
        self.events = events
        self.load = load
        self.crashed = crashed

    def readiness(self) -> tuple[bool, list[str]]:
        reasons: list[str] = []
        if not self.outcomes.first_done:
            reasons.append("first reconcile not finished")
        crashed = self.crashed()
        if crashed is not None:
            reasons.append(f"crashed ({crashed}); stopping")
        if not self.outcomes.platform_ok:
            reasons.append(UNREACHABLE)
        src = self.sources
        if src.source is not None:
            reasons += readiness_reasons(src.source, src.revision or src.next_revision)
        # /readyz, /status, the status page and chanops_ready all tell the same story.
        return auth_readiness(self.auth, (not reasons, reasons))

    def ready(self) -> bool:
        return self.readiness()[0]

    def document(self) -> dict[str, Any]:
        load = self.load()
        return {
            **self.header(load),
            "connections": self._connections(load),
            "events": list(self.events.recent),
        }

    def header(self, load: LoadResult | None) -> dict[str, Any]:
        """The /status document but its connections and events (the status page's too)."""
        ready, reasons = self.readiness()
        errors = [
            {
                "file": d.file,
                "line": d.line,
                "column": d.column,
                "field": d.path,
                "error": d.message,
            }
            for d in (load.errors if load else ())
        ]
        retry = self.outcomes.platform_retry.get(PLATFORM)
        src = self.sources
        return {
            "ready": ready,
            "reasons": reasons,
            "revision": self.logging.revision.value,
            "manifests": src.root,
            "git": git_status(src.source, src.revision) if src.source else None,
            "lastReconcile": self.outcomes.last_reconcile,
            "platformRetry": (
                {"failures": retry.failures, "delaySeconds": retry.delay, "error": retry.error}
                if retry
                else None
            ),
            "manifestErrors": self.logging.redactor.scrub(errors),
        }

    def _connections(self, load: LoadResult | None) -> list[dict[str, Any]]:
        records = self.store.records()
        manifests = self.index.manifests() if load is not None else {}
        frozen_files = {self.index.key(f) for f in load.failed_files} if load else set()
        now = time.monotonic()
        out = []
        for name in sorted(set(manifests) | set(records)):
            m = manifests.get(name)
            r = records.get(name)
            cid = r.connection_id if r is not None else (m.connection_id if m else None)
            file = m.source.file if m else (r.source_file if r else None)
            out.append(
                {
                    "name": name,
                    "file": file,
                    "frozen": bool(file and self.index.key(file) in frozen_files),
                    "desired": _desired(m),
                    "observed": _observed(self.observed.get(cid) if cid is not None else None),
                    "conditions": [c.to_json() for c in r.conditions] if r else [],
                    "lastSync": _last_sync(r),
                    "nextSync": utc_iso(self.scheduler.next_run(name)),
                    "syncing": self.scheduler.syncing(name),
                    "backoff": _backoff(self.queue.backoff.get(name), now),
                    "events": list(self.events.by_connection.get(name, ())),
                }
            )
        return out


class LivenessGate:
    """ASGI middleware: /healthz answers 503 once the daemon has crashed (`_supervise`).

    Between the crash and the exit the process still serves: a liveness probe must not
    read that as alive. The error itself stays in the log (it may quote anything).
    """

    def __init__(self, app: ASGIApp, *, crashed: Callable[[], str | None]) -> None:
        self.app = app
        self.crashed = crashed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz" and self.crashed():
            response = JSONResponse(
                {"status": "crashed", "reason": "see the daemon.crashed event; exiting"},
                status_code=503,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _last_sync(r: Record | None) -> dict[str, Any] | None:
    if r is None or not r.last_sync_outcome:
        return None
    return {"job": r.last_sync_job, "outcome": r.last_sync_outcome, "at": r.last_sync_at}


def _backoff(retry: Retry | None, now: float) -> dict[str, Any] | None:
    if retry is None:
        return None
    return {
        "failures": retry.failures,
        "retryInSeconds": max(0.0, round(retry.due - now, 1)) if retry.due != float("inf") else 0.0,
        "delaySeconds": retry.delay,
        "untilManifestChanges": retry.terminal,
        "error": retry.error,
    }


def _desired(m: Manifest | None) -> dict[str, Any] | None:
    if m is None:
        return None  # removed from git: the engine applies its deletionPolicy
    return {
        "driver": m.driver,
        "displayName": m.display_name,
        "enabled": m.enabled,
        "suspend": m.suspend,
        "deletionPolicy": m.deletion_policy,
        "connectionId": m.connection_id,
        "labels": dict(m.labels),
        "sync": (
            {
                "interval_s": m.sync.interval_seconds,
                "cron": m.sync.cron,
                "jitter_s": m.sync.jitter_seconds,
                "timeout_s": m.sync.timeout_seconds,
            }
            if m.sync
            else None
        ),
    }


def _observed(c: Connection | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "id": c.id,
        "name": c.name,
        "driver": c.driver,
        "status": c.status,
        "version": c.version,
        "hasOrderErrors": c.has_order_errors,
        "authorization": c.authorization,
        "updatedAt": c.updated_at,
    }
