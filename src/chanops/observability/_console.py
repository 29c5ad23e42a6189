"""The console renderer: one short line per event for a person watching a terminal.

JSON lines are for machines; on a terminal the same events read as

    10:54:24 INFO  connection.created   amazon-de  create id=1 AwaitingAuthorization 84 ms
    10:54:31 INFO  reconcile.completed  8 actions (7 created, 1 disabled), converged in 7.3 s

- time in local time to the second, the level, the event, the connection, the action
  or condition, then only the fields that matter for that event;
- the manifests' revision is shown on a `revision` line of its own when it changes,
  never on every event; the reconcile id only at debug level (it is in the JSON);
- a reconcile's completion becomes a summary of what it did, counted from the
  actions it logged;
- a line longer than the terminal is cut (with `…`) rather than wrapped;
- colours by level, none when NO_COLOR is set or the output is not a terminal.

The renderer is a structlog processor (the last one) and keeps a little state: the
revision last shown and the action counts of the reconciles in progress.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

from structlog.typing import EventDict, WrappedLogger

_RESET = "\x1b[0m"
# Five columns for every level, so the events line up.
_LEVEL_LABEL = {"warning": "WARN", "critical": "CRIT"}
_LEVEL_STYLE = {
    "debug": "\x1b[2m",
    "info": "\x1b[32m",
    "warning": "\x1b[33m",
    "error": "\x1b[31m",
    "critical": "\x1b[1;31m",
}
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_EVENT_WIDTH = 20
_CONNECTION_WIDTH = 15
_SHORT_REVISION = 7
_MIN_WIDTH = 40

# Never worth a column: rendered elsewhere (time, level, event, revision) or noise.
_ALWAYS_HIDDEN = frozenset(
    {"timestamp", "level", "event", "connection", "revision", "subject", "logger"}
)
# Shown in a place of their own, never as `key=value`.
_SHOWN_APART = frozenset({"action", "condition", "message"})
# Shown at debug level only: present in the JSON for correlation, noise for a reader.
_DEBUG_ONLY = frozenset({"reconcile_id", "driver", "connection_id", "job_id"})

# Past tense of each action for the reconcile summary, in the order they are listed.
_ACTION_WORDS = {
    "create": "created",
    "adopt": "adopted",
    "update": "updated",
    "enable": "enabled",
    "disable": "disabled",
    "delete": "deleted",
    "sync": "synced",
}
_ACTION_EVENTS = {f"connection.{word}": action for action, word in _ACTION_WORDS.items()} | {
    "sync.triggered": "sync"
}

# Per event: the fields worth showing, in order (others are hidden at info). An event
# not listed shows every field it has, so nothing new is ever silently lost.
_FIELDS: Mapping[str, tuple[str, ...]] = {
    "connection.created": ("connection_id", "condition", "duration_ms"),
    "connection.adopted": ("connection_id", "duration_ms", "reason"),
    "connection.updated": ("changed", "fields", "duration_ms", "reason"),
    "connection.enabled": ("duration_ms", "reason"),
    "connection.disabled": ("duration_ms", "reason"),
    "connection.deleted": ("duration_ms", "reason"),
    "connection.condition": ("reason", "message"),
    "connection.failed": ("code", "error", "attempt", "retry_in", "message"),
    "sync.scheduled": ("schedule",),
    "sync.triggered": ("job_id", "reason"),
    "sync.completed": ("job_id", "duration_ms"),
    "reconcile.started": ("kind", "reason", "connections"),
}


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(_value(v) for v in value)
    text = str(value)
    return f'"{text}"' if " " in text and not text.startswith('"') else text


def _duration(ms: Any) -> str:
    try:
        value = float(ms)
    except (TypeError, ValueError):
        return str(ms)
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"  # noqa: PLR2004


def _fields(event: str, event_dict: Mapping[str, Any], debug: bool) -> list[str]:
    """The `key=value` fields shown for an event (the message is added last, apart)."""
    wanted = _FIELDS.get(event)
    if wanted is not None and not debug:
        keys = [k for k in wanted if k in event_dict]
    else:
        keys = [
            k
            for k in event_dict
            if k not in _ALWAYS_HIDDEN and k not in _SHOWN_APART and (debug or k not in _DEBUG_ONLY)
        ]
    return [
        _field(k, event_dict[k])
        for k in keys
        if event_dict[k] is not None and not _is_sentence(k, event_dict[k])
    ]


def _is_sentence(key: str, value: Any) -> bool:
    return key in ("message", "reason") and isinstance(value, str) and " " in value


def _sentences(event_dict: Mapping[str, Any], wanted: tuple[str, ...] | None) -> list[str]:
    return [
        str(event_dict[k])
        for k in ("reason", "message")
        if _is_sentence(k, event_dict.get(k)) and (wanted is None or k in wanted)
    ]


def _field(key: str, value: Any) -> str:
    if key == "duration_ms":
        return _duration(value)
    if key == "connection_id":
        return f"id={value}"
    if key == "condition":
        return str(value)  # connection.created: the condition the new connection waits on
    return f"{key}={_value(value)}"


def summary(counts: Counter[str], done: Mapping[str, Any]) -> str:
    """`7 actions (6 created, 1 disabled), 3 waiting, converged in 3.7 s`."""
    total = sum(counts.values())
    parts: list[str] = []
    if total:
        kinds = ", ".join(
            f"{counts[action]} {word}" for action, word in _ACTION_WORDS.items() if counts[action]
        )
        parts.append(f"{total} action{'s' if total != 1 else ''} ({kinds})")
    else:
        parts.append("no changes")
    for key in ("failed", "blocked", "waiting", "drift"):
        if done.get(key):
            parts.append(f"{done[key]} {key}")
    outcome = "converged" if done.get("converged") else "not converged"
    took = f" in {_duration(done['duration_ms'])}" if "duration_ms" in done else ""
    return ", ".join(parts) + f", {outcome}{took}"


class ConsoleRenderer:
    """structlog's last processor on a terminal: event dict -> one line."""

    def __init__(
        self,
        *,
        width: int = 160,
        colors: bool = False,
        tz: tzinfo | None = None,
        debug: bool = False,
    ) -> None:
        self._width = max(width, _MIN_WIDTH)
        self._colors = colors
        self._tz = tz
        self._debug = debug
        self._revision: str | None = None
        self._counts: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        with self._lock:
            lines = self._revision_line(event_dict)
            lines.append(self._line(event_dict))
        return "\n".join(lines)

    # -- pieces ----------------------------------------------------------------

    def _time(self, event_dict: Mapping[str, Any]) -> str:
        stamp = event_dict.get("timestamp")
        try:
            when = datetime.fromisoformat(str(stamp)) if stamp else datetime.now(UTC)
        except ValueError:
            when = datetime.now(UTC)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone(self._tz).strftime("%H:%M:%S")

    def _revision_line(self, event_dict: Mapping[str, Any]) -> list[str]:
        revision = event_dict.get("revision")
        if not isinstance(revision, str) or revision == self._revision:
            return []
        self._revision = revision
        subject = event_dict.get("subject")
        text = f"{self._time(event_dict)} {'':5} revision {revision[:_SHORT_REVISION]}"
        if subject:
            text += f" {subject}"
        return [self._fit(self._paint(text, _BOLD))]

    def _line(self, event_dict: EventDict) -> str:
        event = str(event_dict.get("event", ""))
        level = str(event_dict.get("level", "info")).lower()
        label = _LEVEL_LABEL.get(level, level.upper())
        head = f"{self._time(event_dict)} {self._paint(f'{label:5}', _LEVEL_STYLE.get(level))}"
        rest = self._body(event, event_dict)
        body = " ".join(p for p in rest if p)
        return self._fit(f"{head} {event:{_EVENT_WIDTH}} {body}".rstrip())

    def _body(self, event: str, event_dict: EventDict) -> list[str]:
        reconcile = event_dict.get("reconcile_id")
        action = _ACTION_EVENTS.get(event)
        if action is not None and isinstance(reconcile, str):
            self._counts.setdefault(reconcile, Counter())[action] += 1
        if event == "reconcile.completed":
            counts = self._counts.pop(str(reconcile), Counter())
            return [summary(counts, event_dict)]
        connection = event_dict.get("connection")
        parts = [f"{connection:{_CONNECTION_WIDTH}}" if connection else ""]
        if event == "connection.condition":
            status = event_dict.get("status", "True")
            condition = str(event_dict.get("condition", ""))
            parts.append(condition if status == "True" else f"{condition}={status}")
        elif event.startswith("connection.") and event_dict.get("action"):
            parts.append(str(event_dict["action"]))
        shown = dict(event_dict)
        if event == "connection.condition" and shown.get("reason") == shown.get("condition"):
            del shown["reason"]  # the domain conditions' reason repeats their type
        parts.extend(_fields(event, shown, self._debug))
        # Sentences go last, where cutting the line to fit loses the least.
        wanted = _FIELDS.get(event)
        parts.extend(_sentences(shown, wanted if not self._debug else None))
        return parts

    def _paint(self, text: str, style: str | None) -> str:
        if not self._colors or style is None:
            return text
        return f"{style}{text}{_RESET}"

    def _fit(self, line: str) -> str:
        # Escape codes take no room on screen: measure the visible text only.
        visible = len(line) - (line.count("\x1b[") and _escape_length(line))
        if visible <= self._width:
            return line
        cut = self._width - 1 + (len(line) - visible)
        return line[:cut] + ("…" + _RESET if self._colors else "…")


def _escape_length(line: str) -> int:
    total = 0
    start = line.find("\x1b[")
    while start != -1:
        end = line.find("m", start)
        if end == -1:
            break
        total += end - start + 1
        start = line.find("\x1b[", end)
    return total
