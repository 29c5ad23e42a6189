"""The notifier: an event-sink consumer that never makes a reconcile wait.

`Notifier.on_event` runs in whatever thread emitted the event (the daemon's event loop):
it only classifies the event, checks the streak, routes it and puts the notice on the
provider's bounded queue (`put_nowait`). Each provider has its own thread that drains
its queue and delivers with retries and exponential backoff. A full queue, a rate limit
or a message that failed every attempt is *dropped* and counted in
`chanops_notifications_dropped_total{provider,reason}`; a receiver that hangs holds up
only its own thread (and only for its `timeout`).
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from chanops.events import Event, EventSink
from chanops.notify._notices import Classified, Notice, Streaks, classify, word
from chanops.notify._transport import DeliveryError, Transport
from chanops.notify.config import (
    SEVERITIES,
    Credentials,
    LoadedNotifications,
    NotificationsConfig,
    ProviderConfig,
)
from chanops.observability.logging import LogConfig
from chanops.observability.metrics import Metrics

__all__ = ["ConnectionInfo", "Notifier", "NotifierMetrics", "start_notifier"]

QUEUE_SIZE = 100  # notices waiting per provider; more are dropped (reason queue_full)
ATTEMPTS = 4  # deliveries tried per notice (the first and three retries)
BACKOFF_S = (1.0, 4.0, 15.0)  # waits between attempts

# (manifest file, labels) of a connection, from the daemon's index
ConnectionInfo = Callable[[str], tuple[str | None, Mapping[str, str]]]
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_STOP = object()


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "chanops_notifications_sent",
            "Notifications delivered, by provider.",
            ["provider"],
            registry=registry,
        )
        self.failed = Counter(
            "chanops_notifications_failed",
            "Notification delivery attempts that failed (each retry counts), by provider.",
            ["provider"],
            registry=registry,
        )
        self.dropped = Counter(
            "chanops_notifications_dropped",
            "Notifications never delivered, by provider and reason (queue_full, "
            "rate_limited, failed: every attempt failed).",
            ["provider", "reason"],
            registry=registry,
        )
        self.queued = Gauge(
            "chanops_notifications_queue_depth",
            "Notifications waiting in a provider's queue.",
            ["provider"],
            registry=registry,
        )


class _Outbox:
    """One provider's queue, rate limit and delivery thread."""

    def __init__(
        self,
        provider: ProviderConfig,
        transport: Transport,
        metrics: NotifierMetrics,
        backoff: tuple[float, ...],
    ) -> None:
        self.provider = provider
        self.transport = transport
        self.metrics = metrics
        self.backoff = backoff
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_SIZE)
        self.sent_at: deque[float] = deque()
        self.stopping = threading.Event()
        self.last_error = ""  # the last failed attempt, one line (never a credential)
        self.thread = threading.Thread(
            target=self._drain, name=f"notify {provider.name}", daemon=True
        )
        name = provider.name
        for reason in ("queue_full", "rate_limited", "failed"):
            metrics.dropped.labels(provider=name, reason=reason)
        metrics.sent.labels(provider=name)
        metrics.failed.labels(provider=name)
        metrics.queued.labels(provider=name).set_function(lambda: float(self.queue.qsize()))

    def offer(self, notice: Notice, now: float) -> None:
        """Queue a notice unless the rate limit or the queue says no (never blocks)."""
        name = self.provider.name
        limit = self.provider.rate_limit
        while self.sent_at and now - self.sent_at[0] >= limit.per_seconds:
            self.sent_at.popleft()
        if len(self.sent_at) >= limit.messages and not notice.recovery:
            self.metrics.dropped.labels(provider=name, reason="rate_limited").inc()
            return
        try:
            self.queue.put_nowait(notice)
        except queue.Full:
            self.metrics.dropped.labels(provider=name, reason="queue_full").inc()
            return
        self.sent_at.append(now)

    def _drain(self) -> None:
        while (item := self.queue.get()) is not _STOP:
            self.deliver(item)
        self.transport.close()

    def deliver(self, notice: Notice) -> bool:
        """Try a notice up to ATTEMPTS times; False when it was dropped."""
        name = self.provider.name
        for attempt in range(ATTEMPTS):
            try:
                self.transport.send(notice)
            except DeliveryError as exc:
                self.metrics.failed.labels(provider=name).inc()
                self.last_error = str(exc)
                last = attempt == ATTEMPTS - 1 or not exc.retryable
                if last or self.stopping.wait(self.backoff[min(attempt, len(self.backoff) - 1)]):
                    break
                continue
            self.metrics.sent.labels(provider=name).inc()
            return True
        self.metrics.dropped.labels(provider=name, reason="failed").inc()
        return False


class Notifier:
    """Subscribe `on_event` to the event sink; `start()` the threads; `close()` at exit."""

    def __init__(
        self,
        config: NotificationsConfig,
        credentials: Mapping[str, Credentials],
        *,
        registry: CollectorRegistry | None = None,
        describe: ConnectionInfo | None = None,
        revision: Callable[[], str | None] | None = None,
        scrub: Callable[[Any], Any] | None = None,
        backoff: tuple[float, ...] = BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.metrics = NotifierMetrics(registry or CollectorRegistry(auto_describe=True))
        self.outboxes = {
            p.name: _Outbox(p, Transport(p, credentials[p.name]), self.metrics, backoff)
            for p in config.providers
        }
        self.streaks = Streaks()
        self._describe = describe or (lambda _name: (None, {}))
        self._revision = revision or (lambda: None)
        self._scrub = scrub or (lambda value: value)
        self._clock = clock
        self._lock = threading.Lock()  # events may come from more than one thread
        self._closed = False
        self._last_revision = ""  # the git revision last told (git.revision)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        for outbox in self.outboxes.values():
            if not outbox.thread.is_alive():
                outbox.thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to `timeout` seconds, then stop retrying."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        for outbox in self.outboxes.values():
            with contextlib.suppress(queue.Full):
                outbox.queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        for outbox in self.outboxes.values():
            if outbox.thread.is_alive():
                outbox.thread.join(max(0.0, deadline - time.monotonic()))
            outbox.stopping.set()

    # -- the consumer ------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        kind = classify(event.name, event.fields)
        if kind is None:
            return
        with self._lock:
            for providers, notice in self._decide(kind, event):
                now = self._clock()
                for name in sorted(providers):
                    self.outboxes[name].offer(notice, now)

    def _decide(self, kind: Classified, event: Event) -> list[tuple[frozenset[str], Notice]]:
        if kind.role == "close_guards":
            return [
                (providers, self._notice(kind, event, recovery=True))
                for _key, providers in self.streaks.close_prefix("guard:")
                if providers
            ]
        if kind.role == "close":
            told = self.streaks.close(kind.key)
            return [(told, self._notice(kind, event, recovery=True))] if told else []
        if self._suppressed(kind):
            return []
        notice = self._notice(kind, event, recovery=False)
        providers = self.route(notice)
        if kind.role == "open":
            self.streaks.open(kind.key, providers)
        return [(providers, notice)] if providers else []

    def _suppressed(self, kind: Classified) -> bool:
        """Whether a failure (or a revision) was told already."""
        if kind.type == "git.revision":
            told, self._last_revision = kind.key == self._last_revision, kind.key
            return told
        if kind.role == "open" and self.streaks.is_open(kind.key):
            return True  # the same streak: its first event was the message
        # The outage's message (or the refused authorisation's) covers every write and
        # every sync trigger it fails.
        covered = kind.type in ("connection.failed", "sync.failed")
        return covered and (self.streaks.is_open("platform") or self.streaks.is_open("auth"))

    def route(self, notice: Notice) -> frozenset[str]:
        """The providers whose routes take this notice."""
        chosen: set[str] = set()
        for route in self.config.routes:
            if _RANK[notice.severity] < _RANK[route.severity]:
                continue
            if not any(fnmatch.fnmatchcase(notice.type, p) for p in route.events):
                continue
            if route.selector is not None and (
                notice.connection is None or not route.selector.matches(notice.labels)
            ):
                continue
            chosen.update(route.providers)
        return frozenset(chosen)

    def _notice(self, kind: Classified, event: Event, *, recovery: bool) -> Notice:
        fields: Mapping[str, Any] = self._scrub(dict(event.fields))
        wording = word(kind, event.name, fields)
        connection = str(fields["connection"]) if fields.get("connection") else None
        file, labels = self._describe(connection) if connection else (None, {})
        revision = fields.get("revision") or self._revision()
        details = {
            k: v
            for k, v in fields.items()
            if k in ("action", "driver", "connection_id", "rule", "error", "job_id", "code")
        }
        return Notice(
            type=kind.type,
            severity=wording.severity,
            title=wording.title,
            text=wording.text,
            action=wording.action,
            connection=connection,
            file=file,
            revision=str(revision) if revision else None,
            labels=dict(labels),
            details=details,
            recovery=recovery,
            at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )

    # -- `chanops notify test` -----------------------------------------------------------

    def send_test(self, name: str, *, where: Path | None = None) -> str | None:
        """Deliver a test message to one provider now: None when sent, else the error."""
        outbox = self.outboxes[name]
        notice = Notice(
            type="notify.test",
            severity="info",
            title="chanops test notification",
            text=f"A test message to the provider {name!r}"
            + (f" configured in {where}" if where else "")
            + ": notifications reach this channel.",
            action="Nothing: this message was sent by `chanops notify test`.",
            revision=self._revision(),
            at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )
        try:
            outbox.transport.send(notice)
        except DeliveryError as exc:
            return str(exc)
        finally:
            outbox.transport.close()
        return None


class _Index(Protocol):
    def last_known(self, name: str) -> Any: ...

    def record_file(self, name: str) -> str | None: ...

    def key(self, path: str) -> str: ...


class DaemonParts(Protocol):
    """What the notifier takes from the daemon (chanops.daemon.service.Daemon)."""

    @property
    def sink(self) -> EventSink: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def logging(self) -> LogConfig: ...
    @property
    def index(self) -> _Index: ...


def start_notifier(loaded: LoadedNotifications | None, daemon: DaemonParts) -> Notifier | None:
    """The daemon's notifier, subscribed to its sink and started (None: none configured).

    Messages are redacted like log lines; the providers' own URLs, HMAC keys and
    passwords are added to the redactor, so no log line shows them either.
    """
    if loaded is None or not loaded.config.providers:
        return None
    daemon.logging.redactor.add(loaded.secret_values())
    index = daemon.index

    def describe(name: str) -> tuple[str | None, Mapping[str, str]]:
        # A frozen connection's file no longer loads and a deleted one's is gone: the
        # index remembers their manifest as it last loaded (else the store's file).
        manifest = index.last_known(name)
        if manifest is None:
            return index.record_file(name), {}
        return index.key(manifest.source.file), dict(manifest.labels)

    notifier = Notifier(
        loaded.config,
        loaded.credentials,
        registry=daemon.metrics.registry,
        describe=describe,
        revision=lambda: daemon.logging.revision.value,
        scrub=daemon.logging.redactor.scrub,
    )
    daemon.sink.subscribe(notifier.on_event)
    notifier.start()
    # `run` closes it on its way out; this covers `--once` and every other exit, so a
    # queued message (a crash's) is delivered rather than lost with the daemon threads.
    atexit.register(notifier.close, 5.0)
    return notifier
