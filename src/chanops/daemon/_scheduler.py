"""Scheduled syncs: APScheduler 3.x runs each connection's `spec.sync`, and follows jobs.

- One APScheduler job per manifest name (`interval` or `cron`, optional `jitter`),
  `coalesce=True` (missed runs collapse into one) and `max_instances=1`.
- `update()` is called after every reconcile with the current manifests: jobs are
  added, rescheduled when the spec changed, and removed with their manifest, without
  restarting anything.
- `keep_cadence()` is called once the store's records are read: an interval schedule
  continues from the connection's last sync (kept in the store) rather than a whole
  interval from now, so a new leader (or a restarted daemon) syncs when the previous
  one would have. A sync already overdue keeps the fresh interval: a takeover never
  fires a burst of syncs.
- A firing is skipped (`sync.skipped`, with the reason) while the connection is not
  known on the platform, inactive, suspended, or a sync chanops started is still
  running. Otherwise chanops triggers the sync and follows the platform job to its end:
  `sync.completed` with `duration_ms`, `sync.failed` with the platform's error, and
  `sync.stuck` once the job runs longer than `spec.sync.timeout` (followed further, so
  a late end is still reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from chanops.errors import PlatformError, ReauthorizationRequired
from chanops.events import EventSink
from chanops.manifests.model import Manifest, SyncSpec
from chanops.observability.logging import describe_error
from chanops.platform.api import PlatformAPI
from chanops.platform.models import Job

FOLLOW_MIN_SECONDS = 0.2
FOLLOW_MAX_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Target:
    """What the scheduler needs to know about a connection when its sync fires."""

    connection_id: int | None
    driver: str
    active: bool
    suspended: bool = False


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    name: str
    job_id: int
    outcome: str  # completed | failed | stuck
    seconds: float
    error: str | None = None


def trigger_for(spec: SyncSpec) -> IntervalTrigger | CronTrigger | None:
    jitter = int(spec.jitter_seconds) if spec.jitter_seconds else None
    if spec.interval_seconds:
        return IntervalTrigger(seconds=spec.interval_seconds, jitter=jitter, timezone=UTC)
    if spec.cron:
        return _cron(spec.cron, jitter)
    return None


def _cron(expr: str, jitter: int | None) -> CronTrigger:
    # CronTrigger.from_crontab takes no jitter: build the same trigger field by field.
    minute, hour, day, month, dow = expr.split()
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=dow,
        jitter=jitter,
        timezone=UTC,
    )


class SyncScheduler:
    def __init__(
        self,
        client: PlatformAPI,
        *,
        lookup: Callable[[str], Target | None],
        on_outcome: Callable[[SyncOutcome], None] | None = None,
        events: EventSink | None = None,
    ) -> None:
        self._events = events or EventSink.logging()
        self._client = client
        self._lookup = lookup
        self._on_outcome = on_outcome
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._specs: dict[str, SyncSpec] = {}
        self._following: dict[str, asyncio.Task[None]] = {}
        self._started = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if not self._started:
            self._scheduler.start()
            self._started = True

    async def shutdown(self, grace: float) -> None:
        """Stop firing; give followed jobs `timeout` seconds, then stop following them."""
        if self._started:
            self._scheduler.shutdown(wait=False)
            self._started = False
        tasks = list(self._following.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, grace))
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- schedules -------------------------------------------------------------------

    def update(self, manifests: Iterable[Manifest], *, frozen: Iterable[str] = ()) -> None:
        """Make the jobs match `manifests`; names in `frozen` keep their current job."""
        keep = set(frozen)
        wanted = {m.name: m.sync for m in manifests if m.sync is not None}
        for name in list(self._specs):
            if name not in wanted and name not in keep:
                self._remove(name)
        for name, spec in wanted.items():
            if spec is None or self._specs.get(name) == spec:
                continue
            try:
                trigger = trigger_for(spec)
            except ValueError as exc:
                # Validation refuses such a schedule; should one slip past it, it costs
                # that connection its schedule, never the daemon its reconcile loop.
                self._events.emit(
                    "sync.invalid_schedule",
                    "error",
                    connection=name,
                    schedule=describe(spec),
                    error=str(exc),
                )
                self._remove(name)
                continue
            if trigger is None:
                self._remove(name)
                continue
            if name in self._specs:
                self._scheduler.reschedule_job(name, trigger=trigger)
                self._events.emit(
                    "sync.rescheduled", "info", connection=name, schedule=describe(spec)
                )
            else:
                self._scheduler.add_job(
                    self._fire,
                    trigger=trigger,
                    args=[name],
                    id=name,
                    name=f"sync {name}",
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=max(1, int(spec.interval_seconds or 60)),
                    replace_existing=True,
                )
                self._events.emit(
                    "sync.scheduled", "info", connection=name, schedule=describe(spec)
                )
            self._specs[name] = spec

    def keep_cadence(self, last_synced: Mapping[str, str | None]) -> None:
        """Interval schedules due before their next run by their last sync (an ISO time
        by name) are moved there; see the module docstring."""
        if not self._started:
            return
        now = datetime.now(UTC)
        for name, spec in self._specs.items():
            last = _parse_time(last_synced.get(name))
            if last is None or not spec.interval_seconds:
                continue
            due = last + timedelta(seconds=spec.interval_seconds)
            current = self.next_run(name)
            if due <= now or (current is not None and due >= current):
                continue
            jitter = int(spec.jitter_seconds) if spec.jitter_seconds else None
            trigger = IntervalTrigger(
                seconds=spec.interval_seconds, start_date=due, jitter=jitter, timezone=UTC
            )
            self._scheduler.reschedule_job(name, trigger=trigger)

    def _remove(self, name: str) -> None:
        self._specs.pop(name, None)
        with contextlib.suppress(Exception):
            self._scheduler.remove_job(name)
        self._events.emit("sync.unscheduled", "info", connection=name)

    def next_run(self, name: str) -> datetime | None:
        job = self._scheduler.get_job(name) if self._started else None
        return job.next_run_time if job is not None else None

    def scheduled(self) -> list[str]:
        return sorted(self._specs)

    def syncing(self, name: str) -> bool:
        return name in self._following

    # -- firing ------------------------------------------------------------------------

    async def _fire(self, name: str) -> None:
        # APScheduler's task copied the context of whoever scheduled the wakeup (maybe a
        # reconcile): a sync is not part of that reconcile, so drop its reconcile_id.
        structlog.contextvars.clear_contextvars()
        await self.sync_now(name, reason="schedule")

    async def sync_now(self, name: str, *, reason: str = "schedule") -> None:
        target = self._lookup(name)
        skip = _skip_reason(target, self.syncing(name))
        if skip is not None or target is None or target.connection_id is None:
            self._events.emit("sync.skipped", "info", connection=name, reason=skip)
            return
        start = time.monotonic()
        try:
            job = await self._client.trigger_sync(target.connection_id)
        except ReauthorizationRequired:
            # Told once by auth.reauthorization_required: a sync per connection failing
            # the same way is not news (the next schedule after the login runs it).
            self._events.emit("sync.skipped", "debug", connection=name, reason="awaiting login")
            return
        except PlatformError as exc:
            self._events.emit(
                "sync.failed",
                "warning",
                connection=name,
                driver=target.driver,
                connection_id=target.connection_id,
                error=describe_error(exc),
                stage="trigger",
            )
            self._emit(SyncOutcome(name, 0, "failed", 0.0, describe_error(exc)))
            return
        self._events.emit(
            "sync.triggered",
            "info",
            connection=name,
            driver=target.driver,
            connection_id=target.connection_id,
            job_id=job.id,
            reason=reason,
        )
        timeout = self._specs[name].timeout_seconds if name in self._specs else 45 * 60.0
        task = asyncio.create_task(self._follow(name, target, job, start, timeout))
        self._following[name] = task
        task.add_done_callback(self._followed)

    def _followed(self, task: asyncio.Task[None]) -> None:
        for name, t in list(self._following.items()):
            if t is task:
                del self._following[name]

    async def _follow(
        self, name: str, target: Target, job: Job, start: float, limit: float
    ) -> None:
        fields: dict[str, Any] = {
            "connection": name,
            "driver": target.driver,
            "connection_id": target.connection_id,
            "job_id": job.id,
        }
        delay = FOLLOW_MIN_SECONDS
        stuck = False
        errors = 0
        while not job.done:
            await asyncio.sleep(delay)
            delay = min(FOLLOW_MAX_SECONDS, delay * 1.5)
            elapsed = time.monotonic() - start
            if not stuck and elapsed > limit:
                stuck = True
                self._events.emit(
                    "sync.stuck", "warning", **fields, duration_ms=round(elapsed * 1000)
                )
                self._emit(SyncOutcome(name, job.id, "stuck", elapsed))
            try:
                job = await self._client.get_job(job.id)
                errors = 0
            except PlatformError as exc:
                # An outage must not lose the job: keep following, quietly, with backoff.
                errors += 1
                if errors == 1 and not isinstance(exc, ReauthorizationRequired):
                    self._events.emit(
                        "sync.follow_error", "warning", **fields, error=describe_error(exc)
                    )
        elapsed = time.monotonic() - start
        duration_ms = round(elapsed * 1000)
        if job.state == "succeeded":
            self._events.emit("sync.completed", "info", **fields, duration_ms=duration_ms)
            self._emit(SyncOutcome(name, job.id, "completed", elapsed))
        else:
            self._events.emit(
                "sync.failed",
                "warning",
                **fields,
                duration_ms=duration_ms,
                error=job.error or "job failed",
            )
            self._emit(SyncOutcome(name, job.id, "failed", elapsed, job.error or "job failed"))

    def _emit(self, outcome: SyncOutcome) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)


def _skip_reason(target: Target | None, syncing: bool) -> str | None:
    if target is None or target.connection_id is None:
        return "connection not on the platform yet"
    if target.suspended:
        return "suspended"
    if not target.active:
        return "connection inactive"
    if syncing:
        return "a sync is already running"
    return None


def describe(spec: SyncSpec) -> str:
    what = f"every {spec.interval_seconds:g}s" if spec.interval_seconds else f"cron {spec.cron}"
    return what + (f" jitter {spec.jitter_seconds:g}s" if spec.jitter_seconds else "")


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def utc_iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat() if dt is not None else None
