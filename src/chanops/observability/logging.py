"""structlog configuration for every chanops process, and the processors it uses.

Configured once, at the edge (`configure_logging`, called by the CLI); library code only
does `log = structlog.get_logger(__name__)`. The processors are plain callables over the
event dict (as structlog intends), each testable on its own:

- `Redactor` replaces the value of every field whose key names a secret (`token`,
  `password`, `apiKey`...) and every registered secret value (8 characters or more)
  wherever it occurs, recursively; it runs last before rendering so nothing rendered
  (messages, tracebacks) can leak one.
- `ErrorRenderer` turns `exc_info` into one `error` string ("Type: message") unless the
  level is debug, where the full traceback is kept.
- `RevisionStamp` adds the manifests' git commit to every event.

Logging is one consumer of the event sink (`chanops.events`): metrics and `/status`
subscribe to the sink, not to log output, so they see events the log level drops.

Output: one JSON object per line on stdout, or the console renderer
(`chanops.observability._console`: one short line per event) when stdout is a TTY
(`--log-format` overrides). Every event has `event`, `timestamp` (UTC ISO 8601) and
`level`. Standard-library loggers (uvicorn, APScheduler) are routed through the same
chain so every line on stdout is JSON.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterable
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from chanops.observability._console import ConsoleRenderer
from chanops.sensitive import SENSITIVE_VALUE as REDACTED

LogFormat = Literal["json", "console"]
LEVELS = ("debug", "info", "warning", "error", "critical")
# Registered values shorter than this are not matched as substrings: a "secret" `1`
# (secretRef: {env: PYTHONUNBUFFERED}) would otherwise turn every 1 in every event
# and in /status into the marker, hiding audit events and, by the holes, revealing the
# value. Equal to chanops.manifests.secrets.MIN_SECRET_CHARS (the engine refuses
# shorter secrets; tests/security checks the two agree), not imported from it so
# logging does not load the manifests package.
MIN_REDACTED_CHARS = 8
# Keys whose value is a secret whatever it looks like, compared lower-cased without
# `_`, `-` and `.`, on the last segment of a JSON pointer or dotted path. Suffixes:
# `clientSecret`, `webhook_secret`, `refreshToken`, `sftpPassword` all end in one.
_SECRET_KEY_SUFFIXES = ("password", "passwd", "secret", "token", "apikey", "accesskey")
_SECRET_KEYS = frozenset({"authorization", "cookie", "credentials", "privatekey", "sshkey"})

# `exc_info` as a tuple: (type, value, traceback), as sys.exc_info() returns it.
_EXC_INFO_FIELDS = 3


def is_secret_key(key: object) -> bool:
    """Whether a field named `key` (an event key, a JSON pointer, a dotted path) holds a
    secret by its name alone."""
    if not isinstance(key, str):
        return False
    last = re.split(r"[/.]", key)[-1]
    name = last.lower().replace("_", "").replace("-", "")
    return name in _SECRET_KEYS or name.endswith(_SECRET_KEY_SUFFIXES)


class Redactor:
    """Hide secrets in events: by field, and by registered value.

    By field: the value under a key that names a secret (`is_secret_key`) is replaced
    whole, whatever its length. By value: secrets are registered as they are resolved
    (`add`) and matched as substrings, so a secret quoted inside an error message or a
    traceback is caught too; longest first, so a secret that contains another is
    removed whole. Values shorter than MIN_REDACTED_CHARS are not registered (see there).
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        new = {v for v in values if isinstance(v, str) and len(v) >= MIN_REDACTED_CHARS}
        with self._lock:
            if new <= self._values:
                return
            self._values |= new
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def __len__(self) -> int:
        return len(self._values)

    def scrub(self, value: Any) -> Any:
        return _scrub(value, self._pattern)

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        pattern = self._pattern
        for key, value in list(event_dict.items()):
            event_dict[key] = _field(key, value, pattern)
        return event_dict


def _field(key: object, value: Any, pattern: re.Pattern[str] | None) -> Any:
    # None and booleans say whether a secret is set, not what it is (`has_token`).
    if is_secret_key(key) and value is not None and not isinstance(value, bool):
        return REDACTED
    return _scrub(value, pattern)


def _scrub(value: Any, pattern: re.Pattern[str] | None) -> Any:
    if isinstance(value, str):
        return value if pattern is None else pattern.sub(REDACTED, value)
    if isinstance(value, dict):
        return {_scrub(k, pattern): _field(k, v, pattern) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, pattern) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    if pattern is None:
        return value
    # Anything else (exceptions, paths, dataclasses) is rendered as text by the
    # renderer anyway: render it here so the secret check sees the final text.
    return pattern.sub(REDACTED, str(value))


class ErrorRenderer:
    """`exc_info` -> one `error` string at default levels; a traceback only when debugging."""

    def __init__(self, debug: bool) -> None:
        self._debug = debug
        self._traceback = structlog.processors.format_exc_info

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        exc_info = event_dict.get("exc_info")
        if not exc_info:
            event_dict.pop("exc_info", None)
            return event_dict
        if self._debug:
            return self._traceback(logger, method, event_dict)
        event_dict.pop("exc_info")
        exc = _exception(exc_info)
        if exc is not None and "error" not in event_dict:
            event_dict["error"] = describe_error(exc)
        return event_dict


def _exception(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == _EXC_INFO_FIELDS:
        return exc_info[1]  # type: ignore[no-any-return]
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def describe_error(exc: BaseException) -> str:
    """`Type: message`, the one-line form of an error used in every event's `error`."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


class RevisionStamp:
    """Add `revision` (the manifests' git commit) to every event that lacks one.

    `subject` (the commit's subject line) is added too when known: with the git source
    the daemon sets both from the checkout in use.
    """

    def __init__(self) -> None:
        self.value: str | None = None
        self.subject: str | None = None

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        if self.value is not None:
            event_dict.setdefault("revision", self.value)
        if self.subject is not None:
            event_dict.setdefault("subject", self.subject)
        return event_dict


def _drop_stdlib_noise(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    # ProcessorFormatter hands these through for foreign (stdlib) records.
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    return event_dict


class LogConfig:
    """The handles a running process keeps on its logging: redaction and revision."""

    def __init__(self) -> None:
        self.redactor = Redactor()
        self.revision = RevisionStamp()


def resolve_format(fmt: str | None, stream: TextIO) -> LogFormat:
    if fmt in ("json", "console"):
        return fmt  # type: ignore[return-value]
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure_logging(
    *,
    fmt: str | None = None,
    level: str = "info",
    stream: TextIO | None = None,
    config: LogConfig | None = None,
) -> LogConfig:
    """Configure structlog (and route stdlib logging through it). Call once, at the edge."""
    out = stream if stream is not None else sys.stdout
    cfg = config if config is not None else LogConfig()
    level_name = level.lower()
    if level_name not in LEVELS:
        raise ValueError(f"invalid log level {level!r}: expected one of {', '.join(LEVELS)}")
    numeric = getattr(logging, level_name.upper())
    chosen = resolve_format(fmt, out)
    debug = level_name == "debug"

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        cfg.revision,
        ErrorRenderer(debug),
        structlog.processors.UnicodeDecoder(),
        cfg.redactor,  # last before rendering: scrubs messages and tracebacks alike
    ]
    renderer: Processor
    if chosen == "json":
        renderer = structlog.processors.JSONRenderer(default=str, sort_keys=False)
    else:
        renderer = ConsoleRenderer(width=_width(), colors=_colors(out), debug=debug)

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )

    # stdlib loggers (uvicorn, APScheduler, asyncio) render through the same chain.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared[:-2]],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _drop_stdlib_noise,
                cfg.redactor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # APScheduler and httpx narrate every job run and request at INFO; chanops logs its
    # own sync.* events and counts requests in /metrics.
    for noisy in ("apscheduler", "uvicorn.access", "watchfiles", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    return cfg


def _colors(stream: TextIO) -> bool:
    # https://no-color.org: any non-empty NO_COLOR turns colour off.
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def _width() -> int:
    # COLUMNS, then the terminal's size; 160 when neither is known (output to a pipe).
    return shutil.get_terminal_size((160, 24)).columns
