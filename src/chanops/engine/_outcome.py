"""What executing one action came to: `Outcome`, and `ErrorInfo` for a failure.

Pure data and the one place failures are classified (`error_info`): a refusal (a 4xx
the platform will repeat until the manifest changes) versus a transient failure. Also
how field changes are shown in events (`describe_changes`): secrets as the sensitive
marker, never a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from chanops import errors
from chanops.engine.plan import Action, ActionKind, FieldChange
from chanops.sensitive import SENSITIVE_VALUE


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    action: str
    ok: bool
    error: str | None = None  # one line for people: `info.message`
    connection_id: int | None = None
    duration_ms: float = 0.0
    waiting: str | None = None  # a condition the action now waits on (not a failure)
    info: ErrorInfo | None = None  # what a failure was, for code to decide by


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A failed action, classified once where the exception is caught.

    `refusal`: the platform said no to this request as it stands (a 4xx other than
    409/412/429); asking again before the manifest changes cannot succeed, so the daemon
    parks the connection instead of retrying. `retryable`: a transient failure (5xx,
    429, transport) that backoff may cure.
    """

    code: str
    retryable: bool
    refusal: bool
    message: str


# 409 (conflict), 412 (someone wrote first) and 429 (slow down) are the 4xx answers
# that a later attempt can get past without a change to the manifest.
_TRANSIENT_4XX = frozenset(
    {HTTPStatus.CONFLICT, HTTPStatus.PRECONDITION_FAILED, HTTPStatus.TOO_MANY_REQUESTS}
)


def _is_client_error(status: int) -> bool:
    return HTTPStatus.BAD_REQUEST <= status < HTTPStatus.INTERNAL_SERVER_ERROR


def error_info(exc: BaseException) -> ErrorInfo:
    """Classify a failure caught while executing an action."""
    message = error_text(exc)
    if isinstance(exc, errors.APIError):
        refusal = _is_client_error(exc.status) and exc.status not in _TRANSIENT_4XX
        return ErrorInfo(exc.code, exc.retryable, refusal, message)
    if isinstance(exc, errors.PlatformError):
        return ErrorInfo("platform", True, False, message)
    return ErrorInfo(type(exc).__name__, False, False, message)


def failed_outcome(
    a: Action, exc: BaseException, cid: int | None, ms: float, kind: ActionKind | None = None
) -> Outcome:
    info = error_info(exc)
    return Outcome(a.name, (kind or a.kind).value, False, info.message, cid, ms, info=info)


def describe_changes(changes: Sequence[FieldChange]) -> list[dict[str, Any]]:
    """The field-level diff for an event, secrets replaced by "(sensitive value)"."""
    return [
        {
            "path": c.path,
            "op": c.op,
            "before": SENSITIVE_VALUE if c.sensitive and c.op != "add" else c.before,
            "after": SENSITIVE_VALUE if c.sensitive and c.op != "remove" else c.after,
        }
        for c in changes
    ]


def error_text(exc: BaseException) -> str:
    """One line for a failure; the client's errors never carry secret values."""
    if isinstance(exc, errors.ChanopsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


__all__ = ["ErrorInfo", "Outcome", "describe_changes", "error_info", "error_text", "failed_outcome"]
