"""The console log: one line per event for a person at a terminal (issue 18)."""

from __future__ import annotations

import io
import json
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import structlog

from chanops.observability._console import ConsoleRenderer
from chanops.observability.logging import configure_logging

HERE = Path(__file__).parent
EVENTS = [json.loads(line) for line in (HERE / "first_run.jsonl").read_text().splitlines()]
WIDTH = 120


def _render(events: list[dict[str, Any]], **kw: Any) -> list[str]:
    renderer = ConsoleRenderer(width=WIDTH, tz=UTC, **kw)
    return "\n".join(renderer(None, "info", dict(e)) for e in events).splitlines()


def test_first_run_renders_as_the_stored_text() -> None:
    expected = (HERE / "first_run.console.txt").read_text().splitlines()
    assert _render(EVENTS) == expected


def test_every_line_fits_the_terminal() -> None:
    assert all(len(line) <= WIDTH for line in _render(EVENTS))


def test_revision_only_when_it_changes_and_never_the_reconcile_id_at_info() -> None:
    lines = _render(EVENTS)
    revisions = [line for line in lines if " revision " in line]
    assert [line.split()[2] for line in revisions] == ["3f2a9c1", "8c1d2e3"]
    full = {e["revision"] for e in EVENTS if "revision" in e}
    ids = {e["reconcile_id"] for e in EVENTS if "reconcile_id" in e}
    text = "\n".join(lines)
    assert not any(rev in text for rev in full)  # never the 40-character form
    assert not any(rid in text for rid in ids)


def test_debug_shows_the_reconcile_id() -> None:
    lines = _render(EVENTS[8:9], debug=True)
    assert EVENTS[8]["reconcile_id"] in lines[-1]


def test_summary_counts_the_actions_of_its_own_reconcile() -> None:
    lines = _render(EVENTS)
    summaries = [
        line.split("reconcile.completed", 1)[1].strip()
        for line in lines
        if "reconcile.completed" in line
    ]
    assert summaries == [
        "11 actions (7 created, 1 disabled, 3 synced), 3 waiting, converged in 7.3 s",
        "1 action (1 updated), 1 failed, not converged in 118 ms",
        "no changes, 3 waiting, converged in 212 ms",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("no_color", "coloured"), [("", True), ("1", False)])
def test_colours_on_a_terminal_unless_no_color(
    monkeypatch: pytest.MonkeyPatch, no_color: str, coloured: bool
) -> None:
    monkeypatch.setenv("NO_COLOR", no_color)
    out = _Terminal()
    configure_logging(stream=out)
    structlog.get_logger("t").error("connection.failed", connection="shop", code="x")
    assert ("\x1b[" in out.getvalue()) is coloured
    assert "connection.failed" in out.getvalue()


def test_no_colour_and_json_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    configure_logging(stream=out)
    structlog.get_logger("t").info("reconcile.started", reconcile_id="abc", kind="full")
    (line,) = out.getvalue().splitlines()
    assert "\x1b[" not in line
    assert json.loads(line)["reconcile_id"] == "abc"


def test_json_format_is_unchanged_field_for_field() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    event = {k: v for k, v in EVENTS[9].items() if k not in ("event", "level", "timestamp")}
    structlog.get_logger("t").info(EVENTS[9]["event"], **event)
    rendered = json.loads(out.getvalue())
    assert list(rendered) == [*event, "event", "level", "timestamp"]
    assert {k: rendered[k] for k in event} == event
