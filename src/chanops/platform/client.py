"""The platform client: the only module that knows httpx and sends to the platform.

`open_client(url, token)` returns a `PlatformClient` implementing `PlatformAPI`:

- typed results (`chanops.platform.models`), one exception per error code
  (`chanops.errors`), translated by `chanops.platform.answers` and nowhere else;
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
- `open_in_process(server)`: a platform served in this process through httpx's ASGI
  transport (the command line serves `local:PATH` with the bundled emulator so);
- every answer checked against the contract before anything else sees it: redirects
  are never followed (a 1xx/3xx is a non-retryable APIError), a 2xx body that is not
  JSON or not the shape the contract gives (`chanops.platform._shapes`) is a ServerError
  `invalid_response` (retried like a 5xx), and an error answer that is not the
  contract's `{error, message}` JSON still maps by status but says so. The message
  names method, path and status and holds at most a short, one-line, token-free
  snippet of the body (docs/platform.md).

The token is sent as a bearer header and never logged or echoed. With an OAuth session
(`chanops.platform.auth.OAuthSession`) each attempt asks the session for the current
access token instead; a 401 makes the session refresh once and the call is retried
once, so an access token that lapsed in flight never surfaces as an error.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from chanops import errors
from chanops.events import EventSink, Level
from chanops.platform._shapes import (
    connection_from,
    create_result_from,
    driver_from,
    items_from,
    job_from,
    page_from,
)
from chanops.platform.answers import (
    InvalidAnswer,
    Redirected,
    answer_json,
    error_from_response,
    is_success,
    phrase,
    redirect_error,
    refuse_redirects,
)
from chanops.platform.api import PlatformAPI, page_turned
from chanops.platform.auth import OAuthSession
from chanops.platform.models import Connection, CreateResult, Driver, Job
from chanops.rpcprofile import Profile

PAGE_SIZE = 500
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 10.0
MAX_PAGES = 10_000  # a platform that never ends a listing must not loop forever
BREAKER_THRESHOLD = 5  # attempts in a row without any answer: the platform is down

OnRequest = Callable[[str, int, float], None]
T = TypeVar("T")


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


@dataclass(frozen=True, slots=True)
class _Failed:
    """An attempt that may be retried: its error, and the server's Retry-After if any."""

    error: errors.PlatformError
    retry_after: float | None = None


class _TokenRejected(Exception):
    """A 401 to an attempt that carried the session's `bearer` (internal to `request`)."""

    def __init__(self, bearer: str, error: errors.APIError) -> None:
        super().__init__(error)
        self.bearer = bearer
        self.error = error


def _listing_error(path: str, what: str) -> errors.ServerError:
    return errors.ServerError(
        f"GET {path}: the platform answered 200 with {what}: the listing cannot be trusted",
        status=200,
        code="invalid_response",
    )


class PlatformClient:
    """PlatformAPI over HTTP. Use as `async with open_client(...) as client:`."""

    def __init__(  # noqa: PLR0913 (each is a separate setting of the client)
        self,
        http: httpx.AsyncClient,
        *,
        concurrency: int = 16,
        rate_limit: float | None = None,
        max_retries: int = 6,
        on_request: OnRequest | None = None,
        on_close: Callable[[], None] | None = None,
        rng: random.Random | None = None,
        events: EventSink | None = None,
        auth: OAuthSession | None = None,
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
        self.events = events or EventSink.logging()
        self.page_size = PAGE_SIZE
        # Removed from any snippet of an answer: a hostile server may echo the header.
        bearer = http.headers.get("Authorization", "")
        self.static_secrets: tuple[str, ...] = (bearer.removeprefix("Bearer ").strip(),)
        self.auth = auth
        # Failure-streak state shared by all calls of this client.
        self.unanswered = 0  # attempts in a row that got no HTTP answer
        self.retry_logged = False  # the current failure streak has logged its warning

    @property
    def secrets(self) -> tuple[str, ...]:
        """The token(s) to remove from any snippet: the static one, the session's current."""
        if self.auth is None:
            return self.static_secrets
        return self.static_secrets + self.auth.secrets()

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
        if self.auth is not None:
            await self.auth.aclose()
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
        attempt = 0
        reauthorized = False
        while True:
            try:
                outcome = await self._attempt(method, path, parse, kwargs)
            except _TokenRejected as rejected:
                if self.auth is None or reauthorized:
                    raise rejected.error from None
                # The access token lapsed or was revoked in flight: one refresh, one retry.
                reauthorized = True
                await self.auth.rejected(rejected.bearer)
                continue
            if not isinstance(outcome, _Failed):
                self.retry_logged = False
                return outcome
            error = outcome.error
            delay = outcome.retry_after
            if delay is None:
                delay = self._backoff(attempt)
            if self.breaker_open:
                raise errors.PlatformUnavailable(
                    f"the platform did not answer {self.unanswered} attempts in a row "
                    f"(last: {error})"
                ) from None
            if attempt >= self.max_retries:
                raise error
            attempt += 1
            self._log_retry(method, path, attempt, delay, error)
            await asyncio.sleep(delay)

    async def _attempt(
        self, method: str, path: str, parse: Callable[[Any], T], kwargs: Mapping[str, Any]
    ) -> T | _Failed:
        """One attempt: the parsed answer, or what to retry; raises what is never retried."""
        where = f"{method} {path}"
        bearer = None
        if self.auth is not None:
            try:
                bearer = await self.auth.bearer()
            except errors.PlatformUnavailable:
                raise  # reauthorization required: no retry cures it
            except (errors.TransportError, errors.ServerError) as exc:
                self.unanswered += isinstance(exc, errors.TransportError)
                return _Failed(exc)  # the token endpoint: retried like the platform
            headers = {**kwargs["headers"], "Authorization": f"Bearer {bearer}"}
            kwargs = {**kwargs, "headers": headers}
        try:
            response = await self._send_once(method, path, kwargs)
        except Redirected as exc:
            self.unanswered = 0  # an answer, however unwelcome: the platform is there
            raise redirect_error(where, exc.status, exc.location, self.secrets) from None
        except httpx.TimeoutException as exc:
            self.unanswered += 1
            return _Failed(errors.TransportError(f"{where}: timed out ({type(exc).__name__})"))
        except httpx.TransportError as exc:
            self.unanswered += 1
            return _Failed(errors.TransportError(f"{where}: {type(exc).__name__}: {exc}"))
        except httpx.HTTPError as exc:  # e.g. a body that fails to decode: not transient
            raise errors.PlatformError(f"{where}: {type(exc).__name__}: {exc}") from None
        self.unanswered = 0
        return self._answer(response, where, parse, bearer)

    def _answer(
        self,
        response: httpx.Response,
        where: str,
        parse: Callable[[Any], T],
        bearer: str | None = None,
    ) -> T | _Failed:
        status = response.status_code
        if is_success(status):
            try:
                return parse(answer_json(response, self.secrets))
            except InvalidAnswer as exc:
                return _Failed(
                    errors.ServerError(
                        f"{where}: the platform answered {phrase(status)} with {exc}",
                        status=status,
                        code="invalid_response",
                    )
                )
        if status < HTTPStatus.BAD_REQUEST:  # a client built without `refuse_redirects`
            raise redirect_error(where, status, response.headers.get("location"), self.secrets)
        api_error = error_from_response(response, where, self.secrets)
        if isinstance(api_error, errors.Unauthorized) and bearer is not None:
            raise _TokenRejected(bearer, api_error)
        if not api_error.retryable:
            raise api_error
        if not isinstance(api_error, errors.RateLimited) or api_error.retry_after is None:
            return _Failed(api_error)
        if self.limiter is not None:
            self.limiter.push_back(api_error.retry_after)
        return _Failed(api_error, api_error.retry_after)

    def _log_retry(
        self, method: str, path: str, attempt: int, delay: float, error: errors.PlatformError
    ) -> None:
        # One warning per failure streak; the retries after it are debug, so an outage
        # does not flood the log. Every one reaches the sink: metrics count them all.
        level: Level = "debug" if self.retry_logged else "warning"
        self.retry_logged = True
        self.events.emit(
            "platform.retry",
            level,
            method=method,
            path=path,
            attempt=attempt,
            delay_s=round(delay, 3),
            error=str(error),
        )

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
            await page_turned()
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


@dataclass(frozen=True, slots=True)
class InProcess:
    """A platform served inside this process (`local:PATH`): its transport, token, closer.

    Built by the command line (`chanops.commands.platform`), which knows the bundled
    emulator; the platform layer only talks to whatever the transport reaches.
    """

    transport: httpx.AsyncBaseTransport
    token: str
    close: Callable[[], None]
    base_url: str = "http://emulator.local"


def open_in_process(
    server: InProcess,
    *,
    concurrency: int = 16,
    rate_limit: float | None = None,
    timeout: float = 30.0,
    max_retries: int = 6,
    on_request: OnRequest | None = None,
    events: EventSink | None = None,
) -> PlatformClient:
    """A client for a platform served in this process; closing it closes `server`."""
    http = _http(server.token, timeout, transport=server.transport, base_url=server.base_url)
    return PlatformClient(
        http,
        concurrency=concurrency,
        rate_limit=rate_limit,
        max_retries=max_retries,
        on_request=on_request,
        on_close=server.close,
        events=events,
    )


def _http(token: str | None, timeout: float, **connection: Any) -> httpx.AsyncClient:
    """The HTTP client under every PlatformClient, remote or in process.

    Redirects are refused explicitly (httpx's default, made visible): a redirect would
    carry the bearer token and a write to a host the operator never configured.
    `request` raises on a 3xx. Without a token (an OAuth session) each attempt sets
    the header itself.
    """
    headers = {"User-Agent": "chanops"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(
        headers=headers,
        timeout=timeout,
        follow_redirects=False,
        event_hooks={"response": [refuse_redirects]},
        **connection,
    )


def open_client(  # noqa: PLR0913 (one keyword per setting of the client)
    url: str,
    token: str | None,
    *,
    concurrency: int = 16,
    rate_limit: float | None = None,
    timeout: float = 30.0,
    max_retries: int = 6,
    on_request: OnRequest | None = None,
    events: EventSink | None = None,
    auth: OAuthSession | None = None,
    profile: Profile | None = None,
) -> PlatformClient:
    """A client for a remote platform (`https://...`); `auth`: OAuth instead of `token`;
    `profile`: Core1's RPC convention (`chanops.platform._rpc`) instead of REST.

    `local:PATH` belongs to the command line: `chanops.commands.platform.open_platform`
    serves the bundled emulator in process and hands it to `open_in_process`.
    """
    if url.startswith("local:"):
        raise errors.ConfigError(
            f"platform URL {url!r}: the embedded emulator is the command line's to open "
            "(chanops.commands.platform.open_platform)"
        )
    if not url.startswith(("http://", "https://")):
        raise errors.ConfigError(
            f"platform URL {url!r} must start with https://, http:// or local:"
        )
    if not token and auth is None:
        raise errors.ConfigError(
            f"no platform token for {url}: pass --token-file (or --token), set "
            "CHANOPS_PLATFORM_TOKEN_FILE or CHANOPS_PLATFORM_TOKEN, or use OAuth "
            "(--client-id and --client-secret-file, after chanops login)"
        )
    http = _http(
        None if auth is not None else token,
        timeout,
        base_url=url.rstrip("/"),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )
    settings: dict[str, Any] = {
        "concurrency": concurrency,
        "rate_limit": rate_limit,
        "max_retries": max_retries,
        "on_request": on_request,
        "events": events,
        "auth": auth,
    }
    if profile is not None:
        from chanops.platform._rpc import RpcPlatformClient

        return RpcPlatformClient(http, profile=profile, **settings)
    return PlatformClient(http, **settings)


def _implements_protocol(client: PlatformClient) -> PlatformAPI:
    """Never called: mypy checks here that PlatformClient satisfies PlatformAPI."""
    return client
