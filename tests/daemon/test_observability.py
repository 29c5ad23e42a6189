"""Logging processors and metrics, in process (pure functions and one stream)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from chanops.events import Event
from chanops.observability.logging import (
    REDACTED,
    ErrorRenderer,
    Redactor,
    configure_logging,
)
from chanops.observability.metrics import Metrics


def test_redactor_scrubs_every_field_recursively() -> None:
    r = Redactor(["hunter2-secret", "tok-secret-2"])
    event = {
        "event": "x",
        "error": "login failed for key hunter2-secret at host",
        "nested": {"list": ["a", "tok-secret-2", ("hunter2-secret",)], "hunter2-secret": 1},
        "count": 3,
        "flag": True,
        "none": None,
    }
    out = r(None, "info", dict(event))
    dumped = json.dumps(out)
    assert "hunter2-secret" not in dumped and "tok-secret-2" not in dumped
    assert out["error"] == f"login failed for key {REDACTED} at host"
    assert out["count"] == 3 and out["flag"] is True and out["none"] is None


def test_redactor_prefers_the_longest_secret() -> None:
    r = Redactor(["abcdefgh", "abcdefghijkl"])
    assert r.scrub("xabcdefghijklx") == f"x{REDACTED}x"


def test_redactor_without_secrets_is_identity() -> None:
    r = Redactor()
    event = {"event": "x", "a": "b"}
    assert r(None, "info", dict(event)) == event
    r.add(["", None])  # type: ignore[list-item]
    assert len(r) == 0


def test_error_renderer_one_line_unless_debug() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        err = exc
    quiet = ErrorRenderer(debug=False)(None, "error", {"event": "x", "exc_info": err})
    assert quiet == {"event": "x", "error": "ValueError: boom"}
    loud = ErrorRenderer(debug=True)(None, "error", {"event": "x", "exc_info": err})
    assert "Traceback" in loud["exception"]


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    """configure_logging is process-global: put structlog and the root logger back."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configured_json_lines_carry_required_fields_and_no_secret(
    restore_structlog: None,
) -> None:
    stream = io.StringIO()
    cfg = configure_logging(fmt="json", level="info", stream=stream)
    cfg.redactor.add(["p4ssw0rd-value"])
    cfg.revision.value = "abc123"
    log = structlog.get_logger("t")
    with structlog.contextvars.bound_contextvars(reconcile_id="r1"):
        log.info("connection.updated", connection="c", detail="p4ssw0rd-value")
    log.debug("hidden.at.info")
    try:
        raise RuntimeError("with p4ssw0rd-value inside")
    except RuntimeError:
        log.exception("reconcile.failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["connection.updated", "reconcile.failed"]
    for e in lines:
        assert e["timestamp"].endswith("Z") and e["level"] and e["revision"] == "abc123"
    assert lines[0]["reconcile_id"] == "r1"
    assert lines[1]["error"] == f"RuntimeError: with {REDACTED} inside"
    assert "exception" not in lines[1]  # no traceback at info
    assert "p4ssw0rd-value" not in stream.getvalue()


def test_stdlib_records_render_as_json(restore_structlog: None) -> None:
    import logging

    stream = io.StringIO()
    cfg = configure_logging(fmt="json", level="info", stream=stream)
    cfg.redactor.add(["zz-secret-zz"])
    logging.getLogger("uvicorn.error").warning("bad zz-secret-zz")
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert event["level"] == "warning" and event["event"] == f"bad {REDACTED}"


def test_uvicorn_start_and_stop_lines_are_not_the_daemons_events(
    restore_structlog: None,
) -> None:
    import logging
    import socket

    from starlette.applications import Starlette

    from chanops.daemon.http import HttpServer

    stream = io.StringIO()
    configure_logging(fmt="console", level="info", stream=stream)
    uvicorn_log = logging.getLogger("uvicorn.error")
    kept = list(uvicorn_log.filters)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        HttpServer(Starlette(), sock)  # the daemon's listener quiets them
        try:
            uvicorn_log.info("Started server process [%d]", 1)
            uvicorn_log.info("Finished server process [%d]", 1)
            assert stream.getvalue() == ""
            uvicorn_log.warning("Invalid HTTP request received.")
            assert "Invalid HTTP request received." in stream.getvalue()
        finally:
            uvicorn_log.filters[:] = kept


def test_metrics_render_every_series() -> None:
    m = Metrics()
    m.on_request("get", 200, 0.01)
    m.on_request("post", None, 0.5)
    m.on_event(Event("platform.retry", "debug", {}))
    m.set_connections({"active": 2})
    text = m.render().decode()
    assert 'chanops_api_requests_total{code="200",method="GET"} 1.0' in text
    assert 'chanops_api_requests_total{code="0",method="POST"} 1.0' in text
    assert 'chanops_retries_total{kind="api"} 1.0' in text
    assert 'chanops_connections{status="active"} 2.0' in text
    for name in (
        "chanops_reconciles_total",
        "chanops_reconcile_duration_seconds_bucket",
        "chanops_sync_jobs_total",
        "chanops_sync_job_duration_seconds_bucket",
        "chanops_manifest_errors",
        "chanops_last_successful_reconcile_timestamp_seconds",
    ):
        assert name in text
