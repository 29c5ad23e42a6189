"""The emulator's HTTP surface: a Starlette app implementing schemas/platform-api.yaml.

`create_app` is used by `chanops emulator` (under uvicorn) and by the platform client's
`local:PATH` mode (in-process through httpx's ASGI transport). The app is a thin layer:
it checks the token, injects faults, counts requests, validates request shapes and
hands the rest to `store.Platform`, which holds the platform's rules.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import structlog
import yaml
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chanops.emulator import rules
from chanops.emulator.faults import FaultInjector, parse_faults
from chanops.emulator.store import Platform, Problem, encode_json, problem

log = structlog.get_logger("chanops.emulator")

API = "/api/v1"
TESTING = f"{API}/testing/"
MAX_ID = 2**63 - 1
MAX_LIMIT = 500
DEFAULT_LIMIT = 100


class ConnectionDropped(Exception):
    """Raised mid-response to make the server drop the connection (reset_rate fault)."""


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    return body


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def load_spec() -> dict[str, Any]:
    text = resources.files("chanops").joinpath("schemas/platform-api.yaml").read_text("utf-8")
    spec: dict[str, Any] = yaml.safe_load(text)
    return spec


# -- request parsing ---------------------------------------------------------------------


def bad_request(message: str, field: str | None = None) -> Problem:
    return problem(400, "bad_request", message, field)


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise bad_request("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def path_id(request: Request) -> int:
    value = int(request.path_params["id"])
    if value > MAX_ID:
        raise problem(404, "not_found", f"{value} does not exist")
    return value


def query_int(request: Request, name: str, lo: int, hi: int, default: int | None) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"query parameter {name} must be an integer", name) from None
    if not lo <= value <= hi:
        raise bad_request(f"query parameter {name} must be between {lo} and {hi}", name)
    return value


def encode_cursor(last_id: int | None) -> str | None:
    if last_id is None:
        return None
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(request: Request) -> int:
    text = request.query_params.get("cursor")
    if not text:
        return 0
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        prefix, _, num = raw.partition(":")
        value = int(num)
        if prefix != "after" or not 0 <= value <= MAX_ID:
            raise ValueError(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request("cursor is not one this platform issued", "cursor") from None
    return value


def require_str(body: Mapping[str, Any], key: str, *, max_len: int = 200) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{key} is required and must be a non-empty string", key)
    if len(value) > max_len:
        raise bad_request(f"{key} must be at most {max_len} characters", key)
    return value


def only_keys(body: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in body:
        if key not in allowed:
            raise bad_request(f"unknown field {key}; allowed: {', '.join(allowed)}", key)


def optional_object(body: Mapping[str, Any], key: str) -> None:
    if key in body and not isinstance(body[key], dict):
        raise bad_request(f"{key} must be an object", key)


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise bad_request("Idempotency-Key must be 1 to 255 characters", "Idempotency-Key")
    return key


# -- the app ---------------------------------------------------------------------------


Handler = Callable[[Request], Awaitable[Response]]


def handles_problems(fn: Handler) -> Handler:
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except Problem as exc:
            v = exc.violation
            return error_response(v.status, v.code, v.message, v.field)

    wrapper.__name__ = fn.__name__
    return wrapper


def create_app(
    *,
    db: str,
    token: str,
    time_scale: float = 1.0,
    faults: str | None = None,
    drivers: Sequence[str] | None = None,
    request_log_level: str = "info",
) -> Starlette:
    """The emulator as an ASGI app over SQLite at `db` (`:memory:` for throwaway)."""
    if not token:
        raise ValueError("the emulator needs a token")
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    platform = Platform(db, time_scale=time_scale, drivers=drivers)
    spec = load_spec()

    def respond(status: int, body: Any, replayed: bool = False) -> JSONResponse:
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return JSONResponse(body, status_code=status, headers=headers)

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    @handles_problems
    async def drivers_list(request: Request) -> Response:
        return respond(200, {"items": platform.list_drivers()})

    @handles_problems
    async def connections_list(request: Request) -> Response:
        limit = query_int(request, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
        assert limit is not None
        items, last = platform.list_connections_json(after=decode_cursor(request), limit=limit)
        # the bytes JSONResponse would render for {"items": [...], "next_cursor": ...},
        # assembled from the store's per-item encodings
        body = b"".join(
            (
                b'{"items":[',
                b",".join(items),
                b'],"next_cursor":',
                encode_json(encode_cursor(last)),
                b"}",
            )
        )
        return Response(body, media_type=JSONResponse.media_type)

    @handles_problems
    async def connections_create(request: Request) -> Response:
        key = idempotency_key(request)
        body = await json_object(request)
        only_keys(body, ("name", "driver", "credentials", "settings", "automation"))
        require_str(body, "name")
        require_str(body, "driver", max_len=64)
        optional_object(body, "credentials")
        optional_object(body, "automation")
        status, out, replayed = platform.idempotent(
            key,
            "POST /connections " + rules.canonical(body),
            lambda now: platform.create(body, now),
        )
        return respond(status, out, replayed)

    @handles_problems
    async def connection_get(request: Request) -> Response:
        return respond(200, platform.get_connection(path_id(request)))

    @handles_problems
    async def connection_patch(request: Request) -> Response:
        cid = path_id(request)
        key = idempotency_key(request)
        if_match_text = request.headers.get("if-match")
        if_match: int | None = None
        if if_match_text is not None:
            try:
                if_match = int(if_match_text.strip().strip('"'))
            except ValueError:
                raise bad_request("If-Match must be a connection version", "If-Match") from None
        body = await json_object(request)
        only_keys(body, ("name", "driver", "credentials", "settings", "automation"))
        if "name" in body:
            require_str(body, "name")
        if "driver" in body and not isinstance(body["driver"], str):
            raise bad_request("driver must be a string", "driver")
        for key_name in ("credentials", "settings", "automation"):
            optional_object(body, key_name)
        status, out, replayed = platform.idempotent(
            key,
            f"PATCH /connections/{cid} {if_match} {rules.canonical(body)}",
            lambda now: platform.update(cid, body, if_match, now),
        )
        return respond(status, out, replayed)

    @handles_problems
    async def connection_delete(request: Request) -> Response:
        cid = path_id(request)
        key = idempotency_key(request)
        status, out, replayed = platform.idempotent(
            key, f"DELETE /connections/{cid}", lambda now: platform.delete(cid, now)
        )
        return respond(status, out, replayed)

    def bulk(status_value: str) -> Handler:
        @handles_problems
        async def handler(request: Request) -> Response:
            key = idempotency_key(request)
            body = await json_object(request)
            only_keys(body, ("ids",))
            ids = body.get("ids")
            if (
                not isinstance(ids, list)
                or not ids
                or len(ids) > MAX_LIMIT
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
            ):
                raise bad_request(f"ids must be a list of 1 to {MAX_LIMIT} integers", "ids")
            unique = list(dict.fromkeys(int(i) for i in ids))
            for i in unique:
                if not 1 <= i <= MAX_ID:
                    raise problem(404, "not_found", f"connection {i} does not exist", "ids")
            status, out, replayed = platform.idempotent(
                key,
                f"POST /connections/{status_value} {unique}",
                lambda now: platform.set_status(unique, status_value, now),
            )
            return respond(status, out, replayed)

        return handler

    @handles_problems
    async def connection_sync(request: Request) -> Response:
        cid = path_id(request)
        key = idempotency_key(request)
        status, out, replayed = platform.idempotent(
            key, f"POST /connections/{cid}/sync", lambda now: platform.sync(cid, now)
        )
        return respond(status, out, replayed)

    @handles_problems
    async def jobs_list(request: Request) -> Response:
        limit = query_int(request, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
        assert limit is not None
        connection_id = query_int(request, "connection_id", 0, MAX_ID, None)
        state = request.query_params.get("state")
        if state is not None and state not in ("queued", "running", "succeeded", "failed"):
            raise bad_request("state must be queued, running, succeeded or failed", "state")
        items, last = platform.list_jobs(
            connection_id=connection_id, state=state, after=decode_cursor(request), limit=limit
        )
        return respond(200, {"items": items, "next_cursor": encode_cursor(last)})

    @handles_problems
    async def job_get(request: Request) -> Response:
        return respond(200, platform.get_job(path_id(request)))

    # emulator-only testing routes

    @handles_problems
    async def testing_install(request: Request) -> Response:
        body = await json_object(request)
        only_keys(body, ("name", "driver", "credentials", "automation"))
        require_str(body, "name")
        require_str(body, "driver", max_len=64)
        optional_object(body, "credentials")
        optional_object(body, "automation")
        status, out, _ = platform.idempotent(
            None, "install", lambda now: platform.create(body, now, marketplace=True)
        )
        return respond(status, out)

    @handles_problems
    async def testing_authorize(request: Request) -> Response:
        cid = path_id(request)
        status, out, _ = platform.idempotent(
            None, "authorize", lambda now: platform.authorize(cid, now)
        )
        return respond(status, out)

    @handles_problems
    async def testing_order_errors(request: Request) -> Response:
        cid = path_id(request)
        body = await json_object(request)
        only_keys(body, ("has_order_errors",))
        value = body.get("has_order_errors")
        if not isinstance(value, bool):
            raise bad_request("has_order_errors must be a boolean", "has_order_errors")
        status, out, _ = platform.idempotent(
            None, "order-errors", lambda now: platform.set_order_errors(cid, value, now)
        )
        return respond(status, out)

    async def testing_stats(request: Request) -> Response:
        return JSONResponse(dict(sorted(stats.items())))

    async def testing_stats_reset(request: Request) -> Response:
        stats.clear()
        return JSONResponse({})

    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route(f"{API}/drivers", drivers_list, methods=["GET"]),
        Route(f"{API}/connections", connections_list, methods=["GET"]),
        Route(f"{API}/connections", connections_create, methods=["POST"]),
        Route(f"{API}/connections/enable", bulk("active"), methods=["POST"]),
        Route(f"{API}/connections/disable", bulk("inactive"), methods=["POST"]),
        Route(f"{API}/connections/{{id:int}}", connection_get, methods=["GET"]),
        Route(f"{API}/connections/{{id:int}}", connection_patch, methods=["PATCH"]),
        Route(f"{API}/connections/{{id:int}}", connection_delete, methods=["DELETE"]),
        Route(f"{API}/connections/{{id:int}}/sync", connection_sync, methods=["POST"]),
        Route(f"{API}/jobs", jobs_list, methods=["GET"]),
        Route(f"{API}/jobs/{{id:int}}", job_get, methods=["GET"]),
        Route(f"{TESTING}marketplace-install", testing_install, methods=["POST"]),
        Route(f"{TESTING}authorize/{{id:int}}", testing_authorize, methods=["POST"]),
        Route(f"{TESTING}order-errors/{{id:int}}", testing_order_errors, methods=["POST"]),
        Route(f"{TESTING}stats", testing_stats, methods=["GET"]),
        Route(f"{TESTING}stats/reset", testing_stats_reset, methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        headers = dict(exc.headers or {})
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    async def internal_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, ConnectionDropped):  # an injected reset is no failure
            log.error("emulator.internal_error", error=repr(exc), path=request.url.path)
        return error_response(500, "internal_error", "the emulator failed unexpectedly")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        platform.close()

    stats: Counter[str] = Counter()
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                Gate,
                token=token,
                routes=routes,
                stats=stats,
                injector=FaultInjector(parse_faults(faults)),
                request_log_level=request_log_level,
            )
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
        max_body_size=1 << 20,
    )
    app.state.platform = platform
    app.state.stats = stats
    return app


def route_template(routes: Sequence[Route], scope: Scope) -> str | None:
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route.path.replace(":int}", "}")
        if match == Match.PARTIAL and partial is None:
            partial = route.path.replace(":int}", "}")
    return partial


class Gate:
    """Token check, request counting, fault injection and the request log, in one place."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        routes: Sequence[Route],
        stats: Counter[str],
        injector: FaultInjector,
        request_log_level: str = "info",
    ) -> None:
        self.app = app
        self.request_log_level = logging.getLevelNamesMapping()[request_log_level.upper()]
        self.token = token.encode()
        self.routes = routes
        self.stats = stats
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        status_holder = {"status": 0}

        async def logging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, logging_send, method, path)
        finally:
            log.log(
                self.request_log_level,
                "emulator.request",
                method=method,
                path=path,
                status=status_holder["status"],
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        if path == "/openapi.json":
            await self.app(scope, receive, send)
            return
        denied = self._auth(scope)
        if denied is not None:
            await denied(scope, receive, send)
            return
        if path.startswith(TESTING):
            await self.app(scope, receive, send)
            return
        template = route_template(self.routes, scope)
        if template is not None:
            self.stats[f"{method} {template}"] += 1
        if not self.injector.spec.any:
            await self.app(scope, receive, send)
            return
        decision = self.injector.decide()
        if decision.delay_s:
            await asyncio.sleep(decision.delay_s)
        if decision.outcome == "rate_limited":
            retry_after = max(1, math.ceil(decision.retry_after_s))
            log.info(
                "emulator.fault", fault="rate_limited", applied=False, method=method, path=path
            )
            await error_response(
                429,
                "rate_limited",
                "too many requests; retry after the Retry-After delay",
                headers={"Retry-After": str(retry_after)},
            )(scope, receive, send)
            return
        if decision.outcome == "ok":
            await self.app(scope, receive, send)
            return
        applied = decision.when == "after"
        log.info(
            "emulator.fault",
            fault=decision.outcome,
            applied=applied,
            method=method,
            path=path,
            status=decision.status or None,
        )
        if applied:
            # run the request fully, then lose its answer
            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)
        if decision.outcome == "error":
            await error_response(
                decision.status,
                "server_error",
                "injected fault: the platform failed to answer"
                + (" (the request was applied)" if applied else " (nothing was changed)"),
            )(scope, receive, send)
            return
        # reset: promise a body, send part of it, then fail so the server drops the socket
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise ConnectionDropped(f"injected connection reset on {method} {path}")

    def _auth(self, scope: Scope) -> ASGIApp | None:
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            return error_response(
                401,
                "unauthorized",
                "missing bearer token: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(presented.strip(), self.token):
            return error_response(
                403, "forbidden", "the bearer token is not valid for this account"
            )
        return None
