"""The platform client: the only module that knows the wire format, httpx and status codes.

`open_client(url, token)` returns a `PlatformClient` implementing `PlatformAPI`:

- typed results (`chanops.platform.models`), one exception per error code
  (`chanops.errors`), translated here and nowhere else;
- pagination handled (`list_connections`, `list_jobs` follow `next_cursor`);
- connection pooling, timeouts, a concurrency limit and a client-side rate limiter that
  paces requests so a configured limit is met without provoking 429s;
- retries with capped exponential backoff and full jitter for timeouts, connection
  errors, 5xx and 429 (honouring Retry-After), never for other 4xx; `platform.retry` is
  a warning once per failure streak and debug after that;
- a circuit breaker: after BREAKER_THRESHOLD attempts in a row got no answer at all,
  every call makes one attempt and raises PlatformUnavailable instead of retrying,
  until an answer arrives (so an outage is not multiplied by every pending call);
- an Idempotency-Key on every write (POST, PATCH, DELETE), reused across the retries of
  one call, so a retried write whose first answer was lost is not applied twice;
- `url="local:PATH"`: the emulator app in-process through httpx's ASGI transport over
  SQLite at PATH, with a warning that no remote platform is configured;
- every answer checked against the contract before anything else sees it: redirects
  are never followed (a 1xx/3xx is a non-retryable APIError), a 2xx body that is not
  JSON or not the shape the contract gives is a ServerError `invalid_response` (retried
  like a 5xx), and an error answer that is not the contract's `{error, message}` JSON
  still maps by status but says so. The message names method, path and status and
  holds at most a short, one-line, token-free snippet of the body (docs/platform.md).

The token is sent as a bearer header and never logged or echoed.
"""

from __future__ import annotations

import asyncio
import http
import json as jsonlib
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import httpx
import structlog

from chanops import errors
from chanops.platform.api import PlatformAPI
from chanops.platform.models import Connection, CreateResult, Driver, Job

log = structlog.get_logger("chanops.platform")

LOCAL_TOKEN = "local-emulator"  # noqa: S105 (in-process emulator, not a secret)
PAGE_SIZE = 500
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 10.0
MAX_ERROR_TEXT = 500  # a huge error body must not flood the log
MAX_SNIPPET = 80  # of a body that is not the contract's: enough to recognise, no more
SNIFF_BYTES = 4096  # of such a body decoded for the snippet (never the whole of it)
RETRY_AFTER_CAP_S = 60.0  # a Retry-After of "inf" or a year must not park the daemon
MAX_PAGES = 10_000  # a platform that never ends a listing must not loop forever
BREAKER_THRESHOLD = 5  # attempts in a row without any answer: the platform is down

OnRequest = Callable[[str, int, float], None]
T = TypeVar("T")

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
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    412: errors.PreconditionFailed,
    422: errors.UnprocessableEntity,
    429: errors.RateLimited,
}


class RateLimiter:
    """Paces calls to at most `rate` per second (evenly spaced; no bursts)."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise errors.ConfigError("rate limit must be positive")
        self.interval = 1.0 / rate
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)

    def push_back(self, seconds: float) -> None:
        """The server asked us to wait (429): nobody sends before then."""
        self.next_at = max(self.next_at, time.monotonic() + seconds)


def _retry_after(response: httpx.Response) -> float | None:
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


class InvalidAnswer(Exception):
    """A 2xx body that is not what the contract says.

    Raised by the parsers below, never outside this module: `PlatformClient.request`
    turns it into a ServerError naming method, path and status (and retries it).
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
    if status < 200 or 300 <= status < 400:
        raise Redirected(status, response.headers.get("location"))


def _redirect_error(
    where: str, status: int, location: str | None, secrets: Sequence[str]
) -> errors.APIError:
    # Never followed (follow_redirects=False, and `refuse_redirects`), so neither the
    # token nor a write goes anywhere the operator did not configure. Not retried: the
    # same request would get the same redirect.
    to = f" to {_snippet(location, secrets)!r}" if location else ""
    return errors.APIError(
        f"{where}: the platform answered {_phrase(status)}{to}; redirects are not "
        "followed (is the platform URL right?)",
        status=status,
        code="unexpected_redirect" if 300 <= status < 400 else "unexpected_status",
    )


_REDACTED = "(sensitive value)"


def _phrase(status: int) -> str:
    """The standard reason phrase: the server's own is untrusted text."""
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _snippet(text: str, secrets: Sequence[str], limit: int = MAX_SNIPPET) -> str:
    """One short printable line of untrusted text, with the token (if echoed) removed.

    Control characters (newlines, ANSI escapes) become spaces so one error stays one
    line in a terminal and in the JSON log; the token is removed before truncating so
    that no prefix of it survives the cut.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _body_text(response: httpx.Response) -> str:
    head = response.content[:SNIFF_BYTES]
    try:
        return head.decode(response.encoding or "utf-8", "replace")
    except LookupError:  # a charset naming a codec that is not a text encoding (base64)
        return head.decode("utf-8", "replace")


def _describe_body(response: httpx.Response, secrets: Sequence[str]) -> str:
    """`a text/html body: '<html>...'`: what an unexpected body was, briefly."""
    if not response.content:
        return "an empty body"
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    what = f"a {_snippet(kind, secrets, 40)} body" if kind else "a body"
    return f"{what}: {_snippet(_body_text(response), secrets)!r}"


def _json(content: bytes) -> Any:
    """Decoded JSON; ValueError for anything else (deep nesting too, not a RecursionError)."""
    try:
        return jsonlib.loads(content)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _answer_json(response: httpx.Response, secrets: Sequence[str]) -> Any:
    """A 2xx answer's JSON, or InvalidAnswer saying briefly what the body was instead."""
    try:
        return _json(response.content)  # empty too: every 2xx of the contract has JSON
    except ValueError:
        raise InvalidAnswer(f"{_describe_body(response, secrets)}, not JSON") from None


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
        code = _snippet(body["error"], secrets, 64)
        message = _snippet(body["message"], secrets, MAX_ERROR_TEXT)
        raw_field = body.get("field")
        field = _snippet(raw_field, secrets, 200) if isinstance(raw_field, str) else None
    else:
        code = f"http_{status}"
        prefix = f"{where}: " if where else ""
        message = (
            f"{prefix}the platform answered {_phrase(status)} with "
            f"{_describe_body(response, secrets)}, not a JSON error"
        )
    if status == 429:
        return errors.RateLimited(
            message, retry_after=_retry_after(response), code=code, field=field
        )
    if status >= 500:
        return errors.ServerError(message, status=status, code=code, field=field)
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or errors.APIError
    return cls(message, status=status, code=code, field=field)


# -- the shapes the contract gives (schemas/platform-api.yaml) ------------------------
#
# Only what the client reads is checked, and only as strictly as the models need: a
# field the contract requires but a model defaults (created_at, credentials, ...) may be
# absent, but when present it must have the right type. Unknown keys are ignored. These
# run once per connection of every listing (10,000 on a large account), so they are
# plain isinstance checks, not a schema validator.

_CONNECTION_STATUS: Final = frozenset({"active", "inactive", "deleting"})
_JOB_KIND: Final = frozenset({"initial_sync", "sync", "delete"})
_JOB_STATE: Final = frozenset({"queued", "running", "succeeded", "failed"})
_MISSING: Final = object()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _wrong(where: str, expected: str, value: Any) -> InvalidAnswer:
    got = "nothing (missing)" if value is _MISSING else _json_type(value)
    return _shape(f"{where}: expected {expected}, got {got}")


def _shape(problem: str) -> InvalidAnswer:
    return InvalidAnswer(f"JSON that is not the contract's ({problem})")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(where, "an object", value)
    return value


def _array(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _wrong(where, "an array", value)
    return value


def _id(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key, _MISSING)
    # bool is an int in Python, not in JSON; ids are positive (the contract's minimum 1)
    if type(value) is not int or value < 1:
        raise _wrong(f"{where}.{key}", "a positive integer", value)
    return value


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key, _MISSING)
    if not isinstance(value, str):
        raise _wrong(f"{where}.{key}", "a string", value)
    return value


def _one_of(data: Mapping[str, Any], key: str, where: str, allowed: frozenset[str]) -> str:
    value = data.get(key, _MISSING)
    if isinstance(value, str) and value in allowed:  # str first: a list is unhashable
        return value
    if isinstance(value, str):
        shown = repr(_snippet(value, (), 40))
    else:
        shown = "nothing (missing)" if value is _MISSING else _json_type(value)
    raise _shape(f"{where}.{key}: expected one of {', '.join(sorted(allowed))}, got {shown}")


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _wrong(f"{where}.{key}", "a string or null", value)
    return value


def _opt_object(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong(f"{where}.{key}", "an object", value)
    return dict(value)


def connection_from(value: Any, where: str = "connection") -> Connection:
    data = _object(value, where)
    has_order_errors = data.get("has_order_errors", False)
    if not isinstance(has_order_errors, bool):
        raise _wrong(f"{where}.has_order_errors", "a boolean", has_order_errors)
    automation = _opt_object(data, "automation", where)
    for key, interval in automation.items():
        if not isinstance(interval, str):
            raise _wrong(f"{where}.automation.{_snippet(key, (), 40)}", "a string", interval)
    return Connection(
        id=_id(data, "id", where),
        name=_str(data, "name", where),
        driver=_str(data, "driver", where),
        status=_one_of(data, "status", where, _CONNECTION_STATUS),  # type: ignore[arg-type]
        version=_id(data, "version", where),  # sent back as If-Match: >= 1
        has_order_errors=has_order_errors,
        created_at=_opt_str(data, "created_at", where) or "",
        updated_at=_opt_str(data, "updated_at", where) or "",
        credentials=_opt_object(data, "credentials", where),
        settings=_opt_object(data, "settings", where),
        automation=automation,
        authorization=_opt_str(data, "authorization", where),
    )


def job_from(value: Any, where: str = "job") -> Job:
    data = _object(value, where)
    progress = data.get("progress")
    if progress is None:
        progress = 0
    elif type(progress) is not int:
        raise _wrong(f"{where}.progress", "an integer", progress)
    return Job(
        id=_id(data, "id", where),
        kind=_one_of(data, "kind", where, _JOB_KIND),  # type: ignore[arg-type]
        connection_id=_id(data, "connection_id", where),
        state=_one_of(data, "state", where, _JOB_STATE),  # type: ignore[arg-type]
        progress=progress,
        created_at=_opt_str(data, "created_at", where) or "",
        started_at=_opt_str(data, "started_at", where),
        finished_at=_opt_str(data, "finished_at", where),
        error=_opt_str(data, "error", where),
    )


def driver_from(value: Any, where: str = "driver") -> Driver:
    data = _object(value, where)
    creatable = data.get("creatable", _MISSING)
    if not isinstance(creatable, bool):
        raise _wrong(f"{where}.creatable", "a boolean", creatable)
    return Driver(
        name=_str(data, "name", where), title=_str(data, "title", where), creatable=creatable
    )


def items_from(value: Any, parse: Callable[[Any, str], T]) -> list[T]:
    """`{items: [...]}` (drivers, enable/disable)."""
    items = _array(_object(value, "body").get("items", _MISSING), "items")
    try:
        return [parse(item, "item") for item in items]
    except InvalidAnswer:
        # Parsing is pure: find the bad item again to name it (`items[3].id`), rather
        # than format a label for each of 10,000 good ones.
        for i, item in enumerate(items):
            parse(item, f"items[{i}]")
        raise


def page_from(value: Any, parse: Callable[[Any, str], T]) -> tuple[list[T], str | None]:
    """One page `{items: [...], next_cursor: str | null}`: the items and the next cursor."""
    data = _object(value, "body")
    cursor = _opt_str(data, "next_cursor", "body")
    return items_from(data, parse), cursor or None


def create_result_from(value: Any) -> CreateResult:
    data = _object(value, "body")
    job = data.get("job")
    return CreateResult(
        connection=connection_from(data.get("connection", _MISSING), "connection"),
        initial_job=job_from(job, "job") if job is not None else None,
    )


def _listing_error(path: str, what: str) -> errors.ServerError:
    return errors.ServerError(
        f"GET {path}: the platform answered 200 with {what}: the listing cannot be trusted",
        status=200,
        code="invalid_response",
    )


class PlatformClient:
    """PlatformAPI over HTTP. Use as `async with open_client(...) as client:`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        concurrency: int = 16,
        rate_limit: float | None = None,
        max_retries: int = 6,
        on_request: OnRequest | None = None,
        on_close: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1:
            raise errors.ConfigError("concurrency must be at least 1")
        self.http = http
        self.semaphore = asyncio.Semaphore(concurrency)
        self.limiter = RateLimiter(rate_limit) if rate_limit else None
        self.max_retries = max_retries
        self.on_request = on_request
        self.on_close = on_close
        self.rng = rng or random.Random()
        self.page_size = PAGE_SIZE
        # Removed from any snippet of an answer: a hostile server may echo the header.
        bearer = http.headers.get("Authorization", "")
        self.secrets: tuple[str, ...] = (bearer.removeprefix("Bearer ").strip(),)
        # Failure-streak state shared by all calls of this client.
        self.unanswered = 0  # attempts in a row that got no HTTP answer
        self.retry_logged = False  # the current failure streak has logged its warning

    @property
    def breaker_open(self) -> bool:
        return self.unanswered >= BREAKER_THRESHOLD

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.on_close is not None:
            self.on_close()
            self.on_close = None

    # -- the one place requests are sent ------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**attempt))."""
        return self.rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))

    async def _send_once(self, method: str, path: str, kwargs: Mapping[str, Any]) -> httpx.Response:
        if self.limiter is not None:
            await self.limiter.acquire()
        async with self.semaphore:
            started = time.perf_counter()
            try:
                response = await self.http.request(method, path, **kwargs)
            except Redirected as exc:
                if self.on_request is not None:
                    self.on_request(method, exc.status, time.perf_counter() - started)
                raise
            except httpx.HTTPError:
                if self.on_request is not None:
                    self.on_request(method, 0, time.perf_counter() - started)
                raise
        if self.on_request is not None:
            self.on_request(method, response.status_code, time.perf_counter() - started)
        return response

    async def request(
        self,
        method: str,
        path: str,
        parse: Callable[[Any], T],
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """Send with retries; return `parse(body)` or raise a PlatformError.

        `parse` checks the decoded JSON against the contract's shape (raising
        InvalidAnswer), inside the retry loop: a garbled 2xx is retried like a 5xx,
        which is safe for writes too because every attempt carries the same
        Idempotency-Key.
        """
        hdrs = dict(headers or {})
        if method in ("POST", "PATCH", "DELETE"):
            # one key for all attempts of this call: a retry after a lost answer replays
            hdrs.setdefault("Idempotency-Key", str(uuid.uuid4()))
        kwargs: dict[str, Any] = {"headers": hdrs}
        if json is not None:
            kwargs["json"] = json
        if params:
            kwargs["params"] = {k: v for k, v in params.items() if v is not None}
        where = f"{method} {path}"
        attempt = 0
        while True:
            error: errors.PlatformError
            delay: float
            try:
                response = await self._send_once(method, path, kwargs)
            except Redirected as exc:
                self.unanswered = 0  # an answer, however unwelcome: the platform is there
                raise _redirect_error(where, exc.status, exc.location, self.secrets) from None
            except httpx.TimeoutException as exc:
                error = errors.TransportError(f"{where}: timed out ({type(exc).__name__})")
                delay = self._backoff(attempt)
                self.unanswered += 1
            except httpx.TransportError as exc:
                error = errors.TransportError(f"{where}: {type(exc).__name__}: {exc}")
                delay = self._backoff(attempt)
                self.unanswered += 1
            except httpx.HTTPError as exc:  # e.g. a body that fails to decode: not transient
                raise errors.PlatformError(f"{where}: {type(exc).__name__}: {exc}") from None
            else:
                self.unanswered = 0
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        result = parse(_answer_json(response, self.secrets))
                    except InvalidAnswer as exc:
                        error = errors.ServerError(
                            f"{where}: the platform answered {_phrase(status)} with {exc}",
                            status=status,
                            code="invalid_response",
                        )
                        delay = self._backoff(attempt)
                    else:
                        self.retry_logged = False
                        return result
                elif status < 400:  # a client built without `refuse_redirects`
                    raise _redirect_error(
                        where, status, response.headers.get("location"), self.secrets
                    )
                else:
                    api_error = error_from_response(response, where, self.secrets)
                    if not api_error.retryable:
                        raise api_error
                    error = api_error
                    retry_after = (
                        api_error.retry_after if isinstance(api_error, errors.RateLimited) else None
                    )
                    if retry_after is not None:
                        delay = retry_after
                        if self.limiter is not None:
                            self.limiter.push_back(retry_after)
                    else:
                        delay = self._backoff(attempt)
            if self.breaker_open:
                raise errors.PlatformUnavailable(
                    f"the platform did not answer {self.unanswered} attempts in a row "
                    f"(last: {error})"
                ) from None
            if attempt >= self.max_retries:
                raise error
            attempt += 1
            # One warning per failure streak; the retries after it are debug (and counted
            # through on_request), so an outage does not flood the log.
            retry_log = log.debug if self.retry_logged else log.warning
            self.retry_logged = True
            retry_log(
                "platform.retry",
                method=method,
                path=path,
                attempt=attempt,
                delay_s=round(delay, 3),
                error=str(error),
            )
            await asyncio.sleep(delay)

    async def _pages(
        self, path: str, params: Mapping[str, Any], parse: Callable[[Any, str], T]
    ) -> list[T]:
        items: list[T] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page, cursor = await self.request(
                "GET",
                path,
                lambda body: page_from(body, parse),
                params={**params, "limit": self.page_size, "cursor": cursor},
            )
            items.extend(page)
            if cursor is None:
                return items
            if cursor in seen:
                # A cursor sent twice would page in a circle for ever.
                raise _listing_error(path, "a next_cursor it had already sent")
            seen.add(cursor)
        raise _listing_error(path, f"more than {MAX_PAGES} pages")

    # -- PlatformAPI ----------------------------------------------------------------------

    async def list_drivers(self) -> list[Driver]:
        return await self.request(
            "GET", "/api/v1/drivers", lambda body: items_from(body, driver_from)
        )

    async def list_connections(self) -> list[Connection]:
        path = "/api/v1/connections"
        connections = await self._pages(path, {}, connection_from)
        if len({c.id for c in connections}) != len(connections):
            # The planner keys everything by id: two answers for one id is no listing.
            raise _listing_error(path, "the same connection id twice")
        return connections

    async def get_connection(self, connection_id: int) -> Connection:
        return await self.request("GET", f"/api/v1/connections/{connection_id}", connection_from)

    async def create_connection(
        self,
        *,
        name: str,
        driver: str,
        credentials: Mapping[str, Any],
        automation: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> CreateResult:
        body: dict[str, Any] = {"name": name, "driver": driver, "credentials": dict(credentials)}
        if automation:
            body["automation"] = dict(automation)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.request(
            "POST", "/api/v1/connections", create_result_from, json=body, headers=headers
        )

    async def update_connection(
        self,
        connection_id: int,
        patch: Mapping[str, Any],
        *,
        if_match: int | None = None,
    ) -> Connection:
        headers = {"Content-Type": "application/merge-patch+json"}
        if if_match is not None:
            headers["If-Match"] = str(if_match)
        return await self.request(
            "PATCH",
            f"/api/v1/connections/{connection_id}",
            connection_from,
            json=dict(patch),
            headers=headers,
        )

    async def delete_connection(self, connection_id: int) -> Job:
        return await self.request("DELETE", f"/api/v1/connections/{connection_id}", job_from)

    async def _bulk(self, action: str, ids: Sequence[int]) -> list[Connection]:
        out: list[Connection] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), self.page_size):
            chunk = unique[start : start + self.page_size]
            out.extend(
                await self.request(
                    "POST",
                    f"/api/v1/connections/{action}",
                    lambda body: items_from(body, connection_from),
                    json={"ids": chunk},
                )
            )
        return out

    async def enable(self, ids: Sequence[int]) -> list[Connection]:
        return await self._bulk("enable", ids) if ids else []

    async def disable(self, ids: Sequence[int]) -> list[Connection]:
        return await self._bulk("disable", ids) if ids else []

    async def trigger_sync(self, connection_id: int) -> Job:
        return await self.request("POST", f"/api/v1/connections/{connection_id}/sync", job_from)

    async def get_job(self, job_id: int) -> Job:
        return await self.request("GET", f"/api/v1/jobs/{job_id}", job_from)

    async def list_jobs(
        self, *, connection_id: int | None = None, state: str | None = None
    ) -> list[Job]:
        params = {"connection_id": connection_id, "state": state}
        return await self._pages("/api/v1/jobs", params, job_from)


def open_client(
    url: str,
    token: str | None,
    *,
    concurrency: int = 16,
    rate_limit: float | None = None,
    timeout: float = 30.0,
    max_retries: int = 6,
    on_request: OnRequest | None = None,
) -> PlatformClient:
    """A client for a remote platform (`https://...`) or the in-process emulator (`local:PATH`)."""
    on_close: Callable[[], None] | None = None
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if url.startswith("local:"):
        path = url[len("local:") :]
        if not path:
            raise errors.ConfigError(
                "platform URL local: needs a path, e.g. local:.chanops/platform.db"
            )
        # imported here so remote use never loads the emulator
        from chanops.emulator.app import create_app

        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        local_token = token or LOCAL_TOKEN
        app = create_app(db=path, token=local_token, request_log_level="debug")
        log.warning(
            "platform.local",
            message="no remote platform is configured: using the embedded emulator "
            "(nothing reaches a real platform)",
            db=path,
        )
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://emulator.local",
            headers={"Authorization": f"Bearer {local_token}"},
            timeout=timeout,
            follow_redirects=False,
            event_hooks={"response": [refuse_redirects]},
        )
        on_close = app.state.platform.close
    else:
        if not url.startswith(("http://", "https://")):
            raise errors.ConfigError(
                f"platform URL {url!r} must start with https://, http:// or local:"
            )
        if not token:
            raise errors.ConfigError(
                f"no platform token for {url}: pass --token-file (or --token), or set "
                "CHANOPS_PLATFORM_TOKEN_FILE or CHANOPS_PLATFORM_TOKEN"
            )
        http = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": "chanops"},
            timeout=timeout,
            limits=limits,
            # Explicit (httpx's default): a redirect would carry the bearer token and a
            # write to a host the operator never configured. `request` raises on a 3xx.
            follow_redirects=False,
            event_hooks={"response": [refuse_redirects]},
        )
    return PlatformClient(
        http,
        concurrency=concurrency,
        rate_limit=rate_limit,
        max_retries=max_retries,
        on_request=on_request,
        on_close=on_close,
    )


def _implements_protocol(client: PlatformClient) -> PlatformAPI:
    """Never called: mypy checks here that PlatformClient satisfies PlatformAPI."""
    return client
