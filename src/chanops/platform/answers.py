"""What an answer of the platform means, read as untrusted input.

The platform client sends; this module says what came back: an error answer becomes
one exception of `chanops.errors` (by the contract's code, else by status), a redirect
is refused before httpx reads its Location, and any text taken from an answer is one
short, printable, token-free line (`snippet`), so a hostile or broken server cannot
flood the log, break a terminal or echo the token back into an error message.
"""

from __future__ import annotations

import json as jsonlib
import math
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import httpx

from chanops import errors
from chanops.sensitive import SENSITIVE_VALUE

MAX_ERROR_TEXT = 500  # a huge error body must not flood the log
MAX_SNIPPET = 80  # of a body that is not the contract's: enough to recognise, no more
SNIFF_BYTES = 4096  # of such a body decoded for the snippet (never the whole of it)
RETRY_AFTER_CAP_S = 60.0  # a Retry-After of "inf" or a year must not park the daemon

_BY_CODE: dict[str, type[errors.APIError]] = {
    cls.code: cls
    for cls in (
        errors.DriverNotInstalled,
        errors.InvalidCredentials,
        errors.SettingsAfterCreate,
        errors.NotCreatable,
        errors.ImmutableField,
        errors.LockedSetting,
        errors.UnknownValue,
    )
}
_BY_STATUS: dict[int, type[errors.APIError]] = {
    HTTPStatus.UNAUTHORIZED: errors.Unauthorized,
    HTTPStatus.FORBIDDEN: errors.Forbidden,
    HTTPStatus.NOT_FOUND: errors.NotFound,
    HTTPStatus.CONFLICT: errors.Conflict,
    HTTPStatus.PRECONDITION_FAILED: errors.PreconditionFailed,
    HTTPStatus.UNPROCESSABLE_ENTITY: errors.UnprocessableEntity,
    HTTPStatus.TOO_MANY_REQUESTS: errors.RateLimited,
}


def is_success(status: int) -> bool:
    return HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES


def is_redirect(status: int) -> bool:
    return HTTPStatus.MULTIPLE_CHOICES <= status < HTTPStatus.BAD_REQUEST


class InvalidAnswer(Exception):
    """A 2xx body that is not what the contract says.

    Raised by the parsers of `chanops.platform._shapes`, never outside the platform
    package: `PlatformClient.request` turns it into a ServerError naming method, path
    and status (and retries it).
    """


class Redirected(Exception):
    """A 1xx/3xx final answer, stopped by `refuse_redirects` before httpx reads Location.

    Internal like InvalidAnswer: `PlatformClient.request` raises an APIError instead.
    """

    def __init__(self, status: int, location: str | None) -> None:
        super().__init__(status)
        self.status = status
        self.location = location


async def refuse_redirects(response: httpx.Response) -> None:
    """httpx response hook: no 1xx/3xx answer goes further than this.

    Even with follow_redirects=False httpx builds the next request from a 3xx's
    Location header, and a malformed one (control characters) raises a protocol error
    that would pass for a transport failure: retried, and counted as "no answer" by the
    breaker. Stopping here keeps a redirect what it is: an answer, not retried.
    """
    status = response.status_code
    if status < HTTPStatus.OK or is_redirect(status):
        raise Redirected(status, response.headers.get("location"))


def redirect_error(
    where: str, status: int, location: str | None, secrets: Sequence[str]
) -> errors.APIError:
    # Never followed (follow_redirects=False, and `refuse_redirects`), so neither the
    # token nor a write goes anywhere the operator did not configure. Not retried: the
    # same request would get the same redirect.
    to = f" to {snippet(location, secrets)!r}" if location else ""
    return errors.APIError(
        f"{where}: the platform answered {phrase(status)}{to}; redirects are not "
        "followed (is the platform URL right?)",
        status=status,
        code="unexpected_redirect" if is_redirect(status) else "unexpected_status",
    )


def retry_after(response: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds (capped), or None to use our own backoff."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # e.g. an HTTP date: the client's own backoff applies
    if not math.isfinite(seconds):
        return None  # "inf" would sleep (and push the limiter back) forever
    return min(max(0.0, seconds), RETRY_AFTER_CAP_S)


def phrase(status: int) -> str:
    """The standard reason phrase: the server's own is untrusted text."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def snippet(text: str, secrets: Sequence[str], limit: int = MAX_SNIPPET) -> str:
    """One short printable line of untrusted text, with the token (if echoed) removed.

    Control characters (newlines, ANSI escapes) become spaces so one error stays one
    line in a terminal and in the JSON log; the token is removed before truncating so
    that no prefix of it survives the cut.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, SENSITIVE_VALUE)
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _body_text(response: httpx.Response) -> str:
    head = response.content[:SNIFF_BYTES]
    try:
        return head.decode(response.encoding or "utf-8", "replace")
    except LookupError:  # a charset naming a codec that is not a text encoding (base64)
        return head.decode("utf-8", "replace")


def describe_body(response: httpx.Response, secrets: Sequence[str]) -> str:
    """`a text/html body: '<html>...'`: what an unexpected body was, briefly."""
    if not response.content:
        return "an empty body"
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    what = f"a {snippet(kind, secrets, 40)} body" if kind else "a body"
    return f"{what}: {snippet(_body_text(response), secrets)!r}"


def _json(content: bytes) -> Any:
    """Decoded JSON; ValueError for anything else (deep nesting too, not a RecursionError)."""
    try:
        return jsonlib.loads(content)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def answer_json(response: httpx.Response, secrets: Sequence[str]) -> Any:
    """A 2xx answer's JSON, or InvalidAnswer saying briefly what the body was instead."""
    try:
        return _json(response.content)  # empty too: every 2xx of the contract has JSON
    except ValueError:
        raise InvalidAnswer(f"{describe_body(response, secrets)}, not JSON") from None


def error_from_response(
    response: httpx.Response, where: str = "", secrets: Sequence[str] = ()
) -> errors.APIError:
    """Translate an error answer (4xx, 5xx) into the exception tree.

    The contract's `{error, message, field?}` keeps its code and message (one line,
    shortened). Any other body (a proxy's HTML page, `{"detail": ...}`) still maps by
    status, so retries work as for the contract's own 5xx and 429, but with code
    `http_<status>` and a message naming the call and what the body was instead.
    """
    status = response.status_code
    try:
        body = _json(response.content)
    except ValueError:
        body = None
    field: str | None = None
    if (
        isinstance(body, dict)
        and isinstance(body.get("error"), str)
        and isinstance(body.get("message"), str)
        and body["error"]
    ):
        code = snippet(body["error"], secrets, 64)
        message = snippet(body["message"], secrets, MAX_ERROR_TEXT)
        raw_field = body.get("field")
        field = snippet(raw_field, secrets, 200) if isinstance(raw_field, str) else None
    else:
        code = f"http_{status}"
        prefix = f"{where}: " if where else ""
        message = (
            f"{prefix}the platform answered {phrase(status)} with "
            f"{describe_body(response, secrets)}, not a JSON error"
        )
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return errors.RateLimited(
            message, retry_after=retry_after(response), code=code, field=field
        )
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return errors.ServerError(message, status=status, code=code, field=field)
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or errors.APIError
    return cls(message, status=status, code=code, field=field)
