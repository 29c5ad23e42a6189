"""The executor's `sync` action: start the sync a changed field needs, and follow its job.

Part of the executor (imperative shell), in a module of its own. The planner plans a
`sync` after the write that changed a sync-after-change field (`engine.procedures`);
here it is started and, like any sync chanops follows, watched to its end:
`sync.triggered` (with the job id and the reason), then `sync.completed` or `sync.failed`.
A failed job fails the action, so the reconcile reports it; the job id and its outcome
are remembered (`status` shows them).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chanops import errors
from chanops.engine._outcome import Outcome
from chanops.engine.plan import Action

if TYPE_CHECKING:
    from chanops.engine._executor import Executor
    from chanops.platform.models import Job

__all__ = ["run_sync"]


async def run_sync(ex: Executor, a: Action, cid: int | None, start: float) -> Outcome:
    """Trigger the sync of connection `cid` for action `a`, follow it, record it."""
    if cid is None:
        raise errors.PlanError(f"connection {a.name}: no connection to sync")
    fields = {"connection": a.name, "driver": a.driver, "connection_id": cid}
    job: Job = await ex._limited(ex.client.trigger_sync(cid))
    ex.events.emit("sync.triggered", "info", **fields, job_id=job.id, reason=a.reason)
    if ex.follow_jobs:
        if await _started_before_the_change(ex, job, cid):
            # The platform answered with a sync already under way (the initial sync of a
            # connection created just now, or one started before the update): it read
            # the settings as they were, so the change needs a sync of its own after it.
            await ex._follow(job)
            job = await ex._limited(ex.client.trigger_sync(cid))
            ex.events.emit("sync.triggered", "info", **fields, job_id=job.id, reason=a.reason)
        job = await ex._follow(job)
    ex.store.update(a.name, lambda r: replace(r, last_sync_job=job.id, last_sync_outcome=job.state))
    ms = (ex.clock() - start) * 1000
    if job.state == "failed":
        error = job.error or "job failed"
        ex.events.emit(
            "sync.failed", "warning", **fields, job_id=job.id, duration_ms=round(ms), error=error
        )
        raise errors.PlanError(f"sync job {job.id} of connection {cid} failed: {error}")
    if job.done:
        ex.events.emit("sync.completed", "info", **fields, job_id=job.id, duration_ms=round(ms))
    return Outcome(a.name, a.kind.value, True, None, cid, ms)


def _instant(stamp: str) -> datetime | None:
    """A platform timestamp (RFC 3339; without an offset: UTC), or None."""
    try:
        when = datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


async def _started_before_the_change(ex: Executor, job: Job, cid: int) -> bool:
    """Whether `job`, the answer to a trigger, is a sync that began before the write.

    The platform answers a trigger with the sync already running, if any. An initial
    sync that has not ended began before the settings went in; a `sync` did when it
    was created before the connection's last change (platform timestamps; when either
    is unknown the job is taken as the new one).
    """
    if job.done:
        return False
    if job.kind != "sync":
        return True
    conn = await ex._limited(ex.client.get_connection(cid))
    created, changed = _instant(job.created_at), _instant(conn.updated_at)
    return created is not None and changed is not None and created < changed
