"""Prometheus metrics for the daemon, in their own CollectorRegistry.

A registry per `Metrics` (not the process-global default) keeps tests independent and
`/metrics` limited to chanops's own series. Names follow Prometheus conventions:
`_total` counters, `_seconds` durations, base units.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from chanops.events import Event
from chanops.observability._eventmetrics import EventMetrics

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SYNC_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 2700, 3600, 7200)


def _lane(depth: Callable[[], Mapping[str, int]], lane: str) -> float:
    return float(depth().get(lane, 0))


_QUEUE_HELP = (
    "Connection names waiting in the daemon's work queue, by lane (urgent: edits and due "
    "retries; resync; delayed: retries not yet due)."
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconciles = Counter(
            "chanops_reconciles",
            "Reconciles by outcome (success: converged; failed: an action failed or was "
            "blocked, or the platform was unreachable) and kind (full, partial).",
            ["outcome", "kind"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "chanops_reconcile_duration_seconds",
            "Wall time of one reconcile.",
            ["kind"],
            buckets=_RECONCILE_BUCKETS,
            registry=r,
        )
        self.connections = Gauge(
            "chanops_connections",
            "Managed connections by observed status (active, inactive, missing, frozen).",
            ["status"],
            registry=r,
        )
        self.api_requests = Counter(
            "chanops_api_requests",
            "Platform API requests by method and status code (0 = no response).",
            ["method", "code"],
            registry=r,
        )
        self.api_duration = Histogram(
            "chanops_api_request_duration_seconds",
            "Platform API request latency.",
            ["method"],
            buckets=_API_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "chanops_retries",
            "Retries: 'api' = a platform call retried by the client, "
            "'reconcile' = a failed connection requeued with backoff.",
            ["kind"],
            registry=r,
        )
        self.sync_jobs = Counter(
            "chanops_sync_jobs",
            "Scheduled sync jobs by outcome (completed, failed, stuck, skipped, error).",
            ["outcome"],
            registry=r,
        )
        self.sync_duration = Histogram(
            "chanops_sync_job_duration_seconds",
            "Duration of finished sync jobs.",
            buckets=_SYNC_BUCKETS,
            registry=r,
        )
        self.manifest_errors = Gauge(
            "chanops_manifest_errors",
            "Manifest errors in the last load of the manifests root.",
            registry=r,
        )
        self.last_success = Gauge(
            "chanops_last_successful_reconcile_timestamp_seconds",
            "Unix time of the last reconcile in which every action succeeded.",
            registry=r,
        )
        self.backoff = Gauge(
            "chanops_connections_in_backoff",
            "Connections waiting for a retry after a failed reconcile.",
            registry=r,
        )
        self.ready = Gauge("chanops_ready", "1 when /readyz answers 200.", registry=r)
        self.queue_depth = Gauge("chanops_queue_depth", _QUEUE_HELP, ["lane"], registry=r)
        self.from_events = EventMetrics(r)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total
        self._zero_series()

    def _zero_series(self) -> None:
        """Create the labelled series up front, so /metrics shows them at 0 from the start."""
        for outcome in ("success", "failed"):
            for kind in ("full", "partial"):
                self.reconciles.labels(outcome=outcome, kind=kind)
        for kind in ("full", "partial"):
            self.reconcile_duration.labels(kind=kind)
        for kind in ("api", "reconcile"):
            self.retries.labels(kind=kind)
        for outcome in ("completed", "failed", "stuck", "skipped"):
            self.sync_jobs.labels(outcome=outcome)

    # -- hooks ---------------------------------------------------------------------

    def on_request(self, method: str, status: int | None, seconds: float) -> None:
        """The platform client's `on_request` callback."""
        self.api_requests.labels(method=method.upper(), code=str(status or 0)).inc()
        self.api_duration.labels(method=method.upper()).observe(seconds)

    def on_event(self, event: Event) -> None:
        """Count events emitted by modules that do not know about metrics (the client).

        Subscribed to the event sink, not to log output: every event arrives here
        whatever the log level.
        """
        if event.name == "platform.retry":
            self.retries.labels(kind="api").inc()
        self.from_events.on_event(event)

    def watch_queue(self, depth: Callable[[], Mapping[str, int]]) -> None:
        """Read the work queue's depth at scrape time (`depth()`: lane -> names)."""
        for lane in ("urgent", "resync", "delayed"):
            self.queue_depth.labels(lane=lane).set_function(functools.partial(_lane, depth, lane))

    def set_connections(self, by_status: Mapping[str, int]) -> None:
        for status in ("active", "inactive", "missing", "frozen", "deleting"):
            self.connections.labels(status=status).set(by_status.get(status, 0))
        for status, count in by_status.items():
            self.connections.labels(status=status).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
