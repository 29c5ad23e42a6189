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
  SQLite at PATH, with a warning that no remote platform is configured.

The token is sent as a bearer header and never logged.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

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
BREAKER_THRESHOLD = 5  # attempts in a row without any answer: the platform is down

OnRequest = Callable[[str, int, float], None]

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
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> errors.APIError:
    """Translate an error answer into the exception tree."""
    status = response.status_code
    code = f"http_{status}"
    message = response.reason_phrase or "error"
    field: str | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("error") or code)
        message = str(body.get("message") or message)
        field = body.get("field") if isinstance(body.get("field"), str) else None
    else:
        text = response.text.strip()
        if text:
            message = text
    message = message[:MAX_ERROR_TEXT]
    if status == 429:
        return errors.RateLimited(
            message, retry_after=_retry_after(response), code=code, field=field
        )
    if status >= 500:
        return errors.ServerError(message, status=status, code=code, field=field)
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or errors.APIError
    return cls(message, status=status, code=code, field=field)


def connection_from(data: Mapping[str, Any]) -> Connection:
    return Connection(
        id=int(data["id"]),
        name=str(data["name"]),
        driver=str(data["driver"]),
        status=data["status"],
        version=int(data["version"]),
        has_order_errors=bool(data.get("has_order_errors", False)),
        created_at=str(data.get("created_at") or ""),
        updated_at=str(data.get("updated_at") or ""),
        credentials=dict(data.get("credentials") or {}),
        settings=dict(data.get("settings") or {}),
        automation=dict(data.get("automation") or {}),
        authorization=data.get("authorization"),
    )


def job_from(data: Mapping[str, Any]) -> Job:
    return Job(
        id=int(data["id"]),
        kind=data["kind"],
        connection_id=int(data["connection_id"]),
        state=data["state"],
        progress=int(data.get("progress") or 0),
        created_at=str(data.get("created_at") or ""),
        started_at=data.get("started_at"),
        finished_at=data.get("finished_at"),
        error=data.get("error"),
    )


def driver_from(data: Mapping[str, Any]) -> Driver:
    return Driver(
        name=str(data["name"]), title=str(data["title"]), creatable=bool(data["creatable"])
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
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send with retries; return the decoded JSON body or raise a PlatformError."""
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
        while True:
            error: errors.PlatformError
            delay: float
            try:
                response = await self._send_once(method, path, kwargs)
            except httpx.TimeoutException as exc:
                error = errors.TransportError(f"{method} {path}: timed out ({type(exc).__name__})")
                delay = self._backoff(attempt)
                self.unanswered += 1
            except httpx.TransportError as exc:
                error = errors.TransportError(f"{method} {path}: {type(exc).__name__}: {exc}")
                delay = self._backoff(attempt)
                self.unanswered += 1
            except httpx.HTTPError as exc:  # e.g. a body that fails to decode: not transient
                raise errors.PlatformError(
                    f"{method} {path}: {type(exc).__name__}: {exc}"
                ) from None
            else:
                self.unanswered = 0
                if response.status_code < 400:
                    self.retry_logged = False
                    if not response.content:
                        return None
                    try:
                        return response.json()
                    except ValueError:
                        raise errors.PlatformError(
                            f"{method} {path}: the platform answered {response.status_code} "
                            "with a body that is not JSON"
                        ) from None
                api_error = error_from_response(response)
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

    async def _pages(self, path: str, params: Mapping[str, Any]) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        while True:
            page = await self.request(
                "GET", path, params={**params, "limit": self.page_size, "cursor": cursor}
            )
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    # -- PlatformAPI ----------------------------------------------------------------------

    async def list_drivers(self) -> list[Driver]:
        body = await self.request("GET", "/api/v1/drivers")
        return [driver_from(d) for d in body["items"]]

    async def list_connections(self) -> list[Connection]:
        return [connection_from(c) for c in await self._pages("/api/v1/connections", {})]

    async def get_connection(self, connection_id: int) -> Connection:
        return connection_from(await self.request("GET", f"/api/v1/connections/{connection_id}"))

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
        out = await self.request("POST", "/api/v1/connections", json=body, headers=headers)
        job = out.get("job")
        return CreateResult(
            connection=connection_from(out["connection"]),
            initial_job=job_from(job) if job else None,
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
        out = await self.request(
            "PATCH", f"/api/v1/connections/{connection_id}", json=dict(patch), headers=headers
        )
        return connection_from(out)

    async def delete_connection(self, connection_id: int) -> Job:
        return job_from(await self.request("DELETE", f"/api/v1/connections/{connection_id}"))

    async def _bulk(self, action: str, ids: Sequence[int]) -> list[Connection]:
        out: list[Connection] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), self.page_size):
            chunk = unique[start : start + self.page_size]
            body = await self.request("POST", f"/api/v1/connections/{action}", json={"ids": chunk})
            out.extend(connection_from(c) for c in body["items"])
        return out

    async def enable(self, ids: Sequence[int]) -> list[Connection]:
        return await self._bulk("enable", ids) if ids else []

    async def disable(self, ids: Sequence[int]) -> list[Connection]:
        return await self._bulk("disable", ids) if ids else []

    async def trigger_sync(self, connection_id: int) -> Job:
        return job_from(await self.request("POST", f"/api/v1/connections/{connection_id}/sync"))

    async def get_job(self, job_id: int) -> Job:
        return job_from(await self.request("GET", f"/api/v1/jobs/{job_id}"))

    async def list_jobs(
        self, *, connection_id: int | None = None, state: str | None = None
    ) -> list[Job]:
        params = {"connection_id": connection_id, "state": state}
        return [job_from(j) for j in await self._pages("/api/v1/jobs", params)]


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
