"""What reconciles came to: backoff, the reconcile events, metrics, platform health.

A reconcile is what an operator sees as one: `reconcile.started`, the connection events,
then one `reconcile.completed` or `reconcile.failed`, all under one `reconcile_id`.
A full resync is one reconcile (kind `full`) however many batches its names take; each
urgent batch (a file edit, retries) is one reconcile of kind `partial`. `Tally` adds a
reconcile's batches up.

Platform health: the first reconcile that cannot reach the platform opens an outage:
one `platform.unreachable` event, /readyz 503, and from then on every retry and failure
is logged at debug (one event per failure streak) but counted in /metrics. The first
full resync whose listing succeeds closes it (`platform.reachable`, with `outage_ms`).
While the platform is unreachable the resync is retried with backoff capped at
`OUTAGE_RETRY_CAP_S`, so the daemon converges soon after the platform returns however
long it was gone.

A refused OAuth grant (`awaiting_auth`: the session already said so, once, in
`auth.reauthorization_required`) fails every call the same way, but it is not an
outage of the platform: the same quiet retries, and no `platform.unreachable` or
`platform.reachable` (one story per streak, told by the `auth.*` events).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from chanops.daemon._backoff import Backoff, Retry
from chanops.daemon._parts import Parts
from chanops.daemon._queue import Batch, Failure
from chanops.daemon._scheduler import utc_iso
from chanops.engine.plan import Guard
from chanops.engine.reconciler import ReconcileResult
from chanops.events import Level

Kind = Literal["full", "partial"]
OUTAGE_RETRY_CAP_S = 30.0  # platform unreachable: retry the resync at least this often
PLATFORM = "platform"  # the key of the resync retry in `Outcomes.platform_retry`
UNREACHABLE = "platform not reachable in the last resync"  # the readiness reason


@dataclass(slots=True)
class Tally:
    """One reconcile's results, added up over its batches."""

    kind: Kind
    reason: str
    reconcile_id: str
    started: float = field(default_factory=time.monotonic)
    actions: int = 0
    failed: set[str] = field(default_factory=set)
    blocked: list[str] = field(default_factory=list)
    waiting: dict[str, tuple[str, ...]] = field(default_factory=dict)
    drift: int = 0
    problems: int = 0  # plan problems (ambiguous adoption, missing id ...)
    error: str | None = None  # what ended it early (the platform went away)

    def add(self, result: ReconcileResult) -> None:
        self.actions += len(result.outcomes)
        self.failed.update(result.failed)
        self.blocked.extend(b.name for b in result.blocked)
        self.waiting.update(result.waiting)
        self.drift += len(result.drift)
        self.problems += len(result.plan.errors)

    @property
    def converged(self) -> bool:
        return self.error is None and not self.failed and not self.blocked and not self.problems

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def failures(batch: Batch, result: ReconcileResult) -> dict[str, Failure]:
    """The batch's failed names, each with its error and whether it was a refusal."""
    found = {p.name: Failure(p.message) for p in result.plan.errors}
    for o in result.outcomes:
        if not o.ok:
            refusal = o.info is not None and o.info.refusal
            found[o.name] = Failure(o.error or "failed", refusal)
    return {n: found.get(n, Failure("failed")) for n in result.failed if n in batch.names}


class Outcomes:
    def __init__(
        self,
        parts: Parts,
        *,
        ready: Callable[[], bool],
        awaiting_auth: Callable[[], bool] = lambda: False,
    ) -> None:
        self.events = parts.events
        self.queue = parts.queue
        self.metrics = parts.metrics
        self.index = parts.index
        self.records = parts.records
        self.observed = parts.observed
        self._ready = ready
        self._awaiting_auth = awaiting_auth
        self.platform_retry = Backoff()
        self.failing: set[str] = set()  # names whose last batch failed (connection.recovered)
        self.metrics.watch_queue(self.queue.depth)
        self.outage_since: float | None = None
        self.platform_ok = False
        self.first_done = False
        self.last_reconcile: dict[str, Any] = {}
        # Removals the planner held back while the root was unhealthy (Guard.UNHEALTHY_ROOT):
        # enqueued again by the first load that is clean.
        self.held: set[str] = set()

    @property
    def in_outage(self) -> bool:
        """The platform is away, or a login is awaited: failures are one known streak."""
        return self.outage_since is not None or self._awaiting_auth()

    # -- batches ---------------------------------------------------------------------------

    def batch_done(self, batch: Batch, result: ReconcileResult, tally: Tally) -> None:
        """Book a batch's result: backoff, held removals, the reconcile's tally."""
        tally.add(result)
        self.held |= {b.name for b in result.blocked if b.rule == Guard.UNHEALTHY_ROOT}
        failed = failures(batch, result)
        settled = [n for n in batch.names if n not in failed]
        self._requeued(self.queue.done(batch, settled=settled, failed=failed))
        # A name that failed (retrying, or parked after a refusal) and now settles, with a
        # write or with nothing left to do, ends its failure streak (notifications).
        self.failing.update(failed)
        for name in self.failing.intersection(settled):
            self.failing.discard(name)
            self.events.emit("connection.recovered", "info", connection=name)

    def batch_failed(self, batch: Batch, error: str, tally: Tally) -> None:
        """A batch that failed as a whole (the store, a bug in a plan): every name retries."""
        tally.failed.update(batch.names)
        failed = dict.fromkeys(batch.names, Failure(error))
        self._requeued(self.queue.done(batch, failed=failed))

    def _requeued(self, retries: Iterable[tuple[str, Retry]]) -> None:
        for name, retry in retries:
            if retry.terminal:
                self.events.emit(
                    "connection.parked",
                    "info",
                    connection=name,
                    reason="until the manifest changes",
                )
                continue
            self.events.emit(
                "connection.requeued",
                "debug" if self.in_outage else "info",
                connection=name,
                retry_in_s=retry.delay,
                failures=retry.failures,
            )
        self.metrics.backoff.set(self.in_backoff())

    def in_backoff(self) -> int:
        """Connections waiting for a retry or parked (names that still exist)."""
        manifests = self.index.manifests()
        names = self.queue.backoff.names()
        return sum(1 for n in names if n in manifests or n in self.records)

    # -- reconciles ------------------------------------------------------------------------

    def started(self, tally: Tally, connections: int) -> None:
        self.events.emit(
            "reconcile.started",
            "debug" if self.in_outage else "info",
            kind=tally.kind,
            reason=tally.reason,
            connections=connections,
        )

    def completed(self, tally: Tally) -> None:
        elapsed = tally.elapsed()
        converged = tally.converged
        outcome = "success" if converged else "failed"
        self.metrics.reconciles.labels(outcome=outcome, kind=tally.kind).inc()
        self.metrics.reconcile_duration.labels(kind=tally.kind).observe(elapsed)
        if converged:
            self.metrics.last_success.set(time.time())
        self.first_done = True
        self.last_reconcile = {
            "kind": tally.kind,
            "finished_at": utc_iso(datetime.now(UTC)),
            "duration_ms": round(elapsed * 1000),
            "converged": converged,
            "actions": tally.actions,
            "failed": sorted(tally.failed),
            "blocked": tally.blocked,
            "waiting": {k: list(v) for k, v in tally.waiting.items()},
        }
        level: Level = "info" if converged else "warning"
        if self.in_outage and not converged:
            level = "debug"  # still the same failure streak
        self.events.emit(
            "reconcile.completed",
            level,
            kind=tally.kind,
            duration_ms=round(elapsed * 1000),
            actions=tally.actions,
            failed=len(tally.failed),
            blocked=len(tally.blocked),
            waiting=len(tally.waiting),
            drift=tally.drift,
            converged=converged,
        )
        self.update_gauges()

    def failed(self, tally: Tally, error: str) -> None:
        """A reconcile that could not finish (the resync is retried: `unreachable`,
        `retry_resync`; a partial reconcile's names are retried one by one)."""
        elapsed = tally.elapsed()
        self.metrics.reconciles.labels(outcome="failed", kind=tally.kind).inc()
        self.metrics.reconcile_duration.labels(kind=tally.kind).observe(elapsed)
        self.events.emit(
            "reconcile.failed",
            "debug" if self.in_outage else "error",
            kind=tally.kind,
            duration_ms=round(elapsed * 1000),
            error=error,
        )
        self.update_gauges()

    def unreachable(self, error: str) -> None:
        """The platform did not answer: one full resync is retried, not each name, with
        backoff capped lower than a connection's (one failed list call per 30 s costs
        nothing). The first time opens the outage: the one loud event of the streak."""
        retry = self.platform_retry.fail(PLATFORM, time.monotonic(), error, cap=OUTAGE_RETRY_CAP_S)
        self.platform_ok = False
        if self.outage_since is None and not self._awaiting_auth():
            self.outage_since = time.monotonic()
            self.events.emit("platform.unreachable", "error", error=error, retry_in_s=retry.delay)
        else:
            self.events.emit("reconcile.requeued", "debug", kind="full", retry_in_s=retry.delay)
        self.update_gauges()

    def retry_resync(self, error: str) -> None:
        """A resync failed for a reason other than the platform (the store, say)."""
        retry = self.platform_retry.fail(PLATFORM, time.monotonic(), error)
        self.events.emit(
            "reconcile.requeued",
            "debug" if self.in_outage else "info",
            kind="full",
            retry_in_s=retry.delay,
        )

    def reachable(self) -> None:
        """A full resync listed the platform: it answers."""
        self.platform_retry.reset([PLATFORM])
        if self.outage_since is not None:
            self.events.emit(
                "platform.reachable",
                "info",
                outage_ms=round((time.monotonic() - self.outage_since) * 1000),
            )
            self.outage_since = None
        self.platform_ok = True

    def retry_due(self) -> float | None:
        """When the failed resync is to be retried (monotonic), if it is."""
        retry = self.platform_retry.get(PLATFORM)
        return retry.due if retry is not None else None

    # -- gauges ----------------------------------------------------------------------------

    def update_gauges(self) -> None:
        self.metrics.ready.set(1 if self._ready() else 0)
        self.metrics.backoff.set(self.in_backoff())
        self.count_connections()

    def count_connections(self) -> None:
        load_frozen = self.index.frozen_names
        counts: dict[str, int] = {}
        for record in self.records.values():
            if record.name in load_frozen:
                status = "frozen"
            elif record.connection_id is None or record.connection_id not in self.observed:
                status = "missing"
            else:
                conn = self.observed.get(record.connection_id)
                status = conn.status if conn is not None else "missing"
            counts[status] = counts.get(status, 0) + 1
        self.metrics.set_connections(counts)
