"""The daemon's side of the git source (`chanops run --git`): metrics and /status.

The daemon follows `GitSource.updates()` (chanops.sources.git): each new checkout is a
full reconcile against that checkout's directory. Checkouts are immutable (a new commit
is a new directory), so there is nothing to watch inside one; the file watcher is not
started for a git source. This module only adapts the source's counters for /metrics
and /status.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from chanops.sources.git import GitSource, Revision


class GitSourceCollector(Collector):
    """`chanops_git_fetch_failures_total` and the failure streak, read from the source.

    Read at scrape time rather than mirrored into a Counter: the source is the one
    place that counts failures (its `updates()` loop swallows them), so there is no
    second count to drift from it.
    """

    def __init__(self, source: GitSource) -> None:
        self._source = source

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield CounterMetricFamily(
            "chanops_git_fetch_failures",
            "Failed git fetches or checkouts (network, auth, vanished ref, missing path).",
            value=self._source.failures_total,
        )
        yield GaugeMetricFamily(
            "chanops_git_fetch_failure_streak",
            "Failed git fetches in a row (/readyz reports not ready from 3 on).",
            value=self._source.failure_streak,
        )


def git_status(source: GitSource, revision: Revision | None) -> dict[str, Any]:
    """The `git` block of /status: the checkout in use and the fetch health."""
    return {
        "url": source.display_url,
        "ref": source.ref,
        "revision": revision.sha if revision else None,
        "subject": revision.subject if revision else None,
        "healthy": source.healthy,
        "failureStreak": source.failure_streak,
        "failuresTotal": source.failures_total,
        "lastError": source.last_error,
    }


def readiness_reasons(source: GitSource, revision: Revision | None) -> list[str]:
    reasons: list[str] = []
    if revision is None:
        reasons.append("no git checkout yet")
    if not source.healthy:
        reasons.append(
            f"git fetch failed {source.failure_streak} times in a row: {source.last_error}"
        )
    return reasons
