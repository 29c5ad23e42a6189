"""The event sink: every consumer sees every event, whatever the log level."""

from __future__ import annotations

import structlog

from chanops.events import Event, EventSink


def test_every_consumer_sees_every_event_and_a_failing_one_stops_nothing() -> None:
    seen_a: list[Event] = []
    seen_b: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("a consumer bug")

    sink = EventSink(seen_a.append, broken, seen_b.append)
    sink.emit("platform.retry", "debug", attempt=1)
    sink.emit("connection.created", connection="x")
    assert [(e.name, e.level) for e in seen_a] == [
        ("platform.retry", "debug"),
        ("connection.created", "info"),
    ]
    assert seen_b == seen_a


def test_bound_context_travels_with_each_event() -> None:
    sink = EventSink()
    with sink.collecting() as seen, structlog.contextvars.bound_contextvars(reconcile_id="r1"):
        sink.emit("reconcile.started", kind="full")
    assert seen == [Event("reconcile.started", "info", {"reconcile_id": "r1", "kind": "full"})]


def test_the_default_sink_logs_through_structlog() -> None:
    with structlog.testing.capture_logs() as logs:
        EventSink.logging().emit("guard.blocked", "warning", connection="a", rule="frozen")
    assert logs == [
        {"event": "guard.blocked", "log_level": "warning", "connection": "a", "rule": "frozen"}
    ]
