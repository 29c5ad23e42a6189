"""Domain events: what chanops did or saw, told once to every consumer alike.

The code that acts (the platform client, the executor, the reconciler, the daemon)
emits each event to an `EventSink`; consumers subscribe to it at the composition root:

- logging renders events at or above the log level (`log_events`, the default);
- metrics count them whatever the log level (a retry logged at debug is still a retry);
- the daemon's `/status` keeps the recent ones.

Before the sink, metrics and `/status` were fed from log output, and structlog drops an
event below the log level before any processor runs: at the default level six retries
counted as one. Fields bound with `structlog.contextvars` (the reconcile id, the git
revision) are added to every event, so each consumer sees what the log line shows.

Pure plumbing: no I/O of its own beyond what a consumer does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

Level = Literal["debug", "info", "warning", "error", "critical"]


@dataclass(frozen=True, slots=True)
class Event:
    """One event: a dotted name (`platform.retry`), its level, and its fields."""

    name: str
    level: Level
    fields: Mapping[str, Any]


Consumer = Callable[[Event], None]


def log_events(logger: str = "chanops") -> Consumer:
    """A consumer that hands each event to structlog, which filters it by level."""
    log = structlog.get_logger(logger)

    def consume(event: Event) -> None:
        getattr(log, event.level)(event.name, **event.fields)

    return consume


class EventSink:
    """Fans each emitted event out to its consumers, in the order they subscribed.

    A consumer that raises does not stop the others or the code that emitted: an event
    is a report, and reporting must never change what chanops does.
    """

    def __init__(self, *consumers: Consumer) -> None:
        self._consumers: list[Consumer] = list(consumers)

    @classmethod
    def logging(cls) -> EventSink:
        """The sink of a library user who wired nothing: events become log lines."""
        return cls(log_events())

    def subscribe(self, consumer: Consumer) -> None:
        self._consumers.append(consumer)

    def unsubscribe(self, consumer: Consumer) -> None:
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)

    def emit(self, name: str, level: Level = "info", /, **fields: Any) -> None:
        bound = structlog.contextvars.get_contextvars()
        event = Event(name, level, {**bound, **fields} if bound else fields)
        for consumer in tuple(self._consumers):
            with contextlib.suppress(Exception):
                consumer(event)

    @contextlib.contextmanager
    def collecting(self) -> Iterator[list[Event]]:
        """Collect the events emitted inside the block (for tests and one-shot commands)."""
        seen: list[Event] = []
        self.subscribe(seen.append)
        try:
            yield seen
        finally:
            self.unsubscribe(seen.append)


__all__ = ["Consumer", "Event", "EventSink", "Level", "log_events"]
