"""Fault injection for the emulator: parse `--faults` and decide each request's fate.

`parse_faults` is pure. `FaultInjector` holds a seeded random generator and a token
bucket; it decides, per request, whether the request is delayed, rate limited, answered
with a 5xx or has its connection dropped, and whether that happens BEFORE the request
is applied (nothing happened) or AFTER (it happened fully, only the answer is lost).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)?$")
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(?:/s)?$")
# A failed or reset request: as often before it is applied (nothing happened) as after
# (it happened, only the answer is lost), so clients meet both.
_BEFORE_ODDS = 0.5


@dataclass(frozen=True, slots=True)
class FaultSpec:
    latency_s: float = 0.0
    jitter_s: float = 0.0
    error_rate: float = 0.0
    rate_limit: float | None = None  # requests per second
    reset_rate: float = 0.0
    seed: int | None = None

    @property
    def any(self) -> bool:
        return bool(
            self.latency_s or self.jitter_s or self.error_rate or self.rate_limit or self.reset_rate
        )


def _duration(key: str, text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"{key}={text}: expected a duration like 50ms or 0.2s")
    value = float(m.group(1))
    return value / 1000 if m.group(2) in (None, "ms") else value


def _fraction(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key}={text}: expected a number between 0 and 1") from None
    if not 0 <= value <= 1:
        raise ValueError(f"{key}={text}: expected a number between 0 and 1")
    return value


def _rate(key: str, text: str) -> float:
    m = _RATE.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{key}={text}: expected a rate like 20/s")
    return float(m.group(1))


def _seed(key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{key}={text}: expected an integer") from None


# `--faults` key -> (FaultSpec field, parser of its value)
_KEYS: dict[str, tuple[str, Callable[[str, str], float | int]]] = {
    "latency": ("latency_s", _duration),
    "jitter": ("jitter_s", _duration),
    "error_rate": ("error_rate", _fraction),
    "rate_limit": ("rate_limit", _rate),
    "reset_rate": ("reset_rate", _fraction),
    "seed": ("seed", _seed),
}


def parse_faults(spec: str | None) -> FaultSpec:
    """`latency=50ms,jitter=20ms,error_rate=0.1,rate_limit=20/s,reset_rate=0.01,seed=7`."""
    if not spec:
        return FaultSpec()
    values: dict[str, float | int] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, text = part.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"fault {part!r}: expected key=value")
        if key not in _KEYS:
            raise ValueError(
                f"unknown fault {key!r}; known: latency, jitter, error_rate, rate_limit, "
                "reset_rate, seed"
            )
        field, parse = _KEYS[key]
        values[field] = parse(key, text)
    return FaultSpec(**values)  # type: ignore[arg-type]


Outcome = Literal["ok", "rate_limited", "error", "reset"]
When = Literal["before", "after"]


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    when: When = "before"
    delay_s: float = 0.0
    status: int = 0  # 5xx for "error"
    retry_after_s: float = 0.0  # for "rate_limited"


class FaultInjector:
    def __init__(self, spec: FaultSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.clock = clock
        # token bucket holding one second's worth of requests
        self.capacity = max(1.0, spec.rate_limit or 0.0)
        self.tokens = self.capacity
        self.refilled = clock()

    def _take_token(self) -> float:
        """0 if a token was taken, else seconds until the next one."""
        rate = self.spec.rate_limit
        if rate is None:
            return 0.0
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate

    def decide(self) -> Decision:
        s = self.spec
        delay = s.latency_s + (self.rng.uniform(0, s.jitter_s) if s.jitter_s else 0.0)
        wait = self._take_token()
        if wait > 0:
            return Decision("rate_limited", delay_s=delay, retry_after_s=wait)
        roll = self.rng.random()
        when: When = "before" if self.rng.random() < _BEFORE_ODDS else "after"
        if roll < s.reset_rate:
            return Decision("reset", when=when, delay_s=delay)
        if roll < s.reset_rate + s.error_rate:
            status = self.rng.choice((500, 502, 503))
            return Decision("error", when=when, delay_s=delay, status=status)
        return Decision("ok", delay_s=delay)
