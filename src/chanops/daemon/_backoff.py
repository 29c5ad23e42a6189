"""Per-connection retry backoff across reconciles: 1 s, 2 s, 4 s ... capped at 5 min.

Pure: no I/O and no clock of its own (callers pass `now`, monotonic seconds), so the
schedule is testable without sleeping. A failed connection is requeued when its delay
has passed; a success or a manifest change resets it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

BASE_SECONDS = 1.0
CAP_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Retry:
    failures: int
    delay: float  # seconds between the failure and the retry
    due: float  # monotonic time of the retry (inf: not before the manifest changes)
    error: str
    terminal: bool = False  # the platform refused (4xx): retrying cannot help


def delay_for(failures: int, *, base: float = BASE_SECONDS, cap: float = CAP_SECONDS) -> float:
    """Delay after the `failures`-th consecutive failure (1 -> base, doubling, capped)."""
    if failures <= 0:
        return 0.0
    # min() before the power keeps the exponent small for long outages.
    return min(cap, base * 2.0 ** min(failures - 1, 30))


class Backoff:
    def __init__(self, *, base: float = BASE_SECONDS, cap: float = CAP_SECONDS) -> None:
        self._base = base
        self._cap = cap
        self._retries: dict[str, Retry] = {}

    def fail(self, name: str, now: float, error: str = "", *, cap: float | None = None) -> Retry:
        """Record a failure; `cap` overrides the ceiling for this retry (outage probes)."""
        failures = self._retries[name].failures + 1 if name in self._retries else 1
        delay = delay_for(failures, base=self._base, cap=self._cap if cap is None else cap)
        retry = Retry(failures=failures, delay=delay, due=now + delay, error=error)
        self._retries[name] = retry
        return retry

    def park(self, name: str, error: str = "") -> Retry:
        """A refusal (4xx other than 409/412/429): no retry until the manifest changes."""
        failures = self._retries[name].failures + 1 if name in self._retries else 1
        retry = Retry(failures=failures, delay=0.0, due=float("inf"), error=error, terminal=True)
        self._retries[name] = retry
        return retry

    def reset(self, names: Iterable[str]) -> None:
        for name in names:
            self._retries.pop(name, None)

    def get(self, name: str) -> Retry | None:
        return self._retries.get(name)

    def due(self, now: float) -> set[str]:
        return {name for name, r in self._retries.items() if r.due <= now}

    def next_due(self) -> float | None:
        return min((r.due for r in self._retries.values()), default=None)

    def postpone_due(self, names: Iterable[str]) -> None:
        """Mark retries as taken: they stay counted but are not due again until re-failed."""
        for name in names:
            r = self._retries.get(name)
            if r is not None:
                self._retries[name] = Retry(r.failures, r.delay, float("inf"), r.error, r.terminal)

    def names(self) -> list[str]:
        return list(self._retries)

    def __len__(self) -> int:
        return len(self._retries)

    def __contains__(self, name: object) -> bool:
        return name in self._retries
