"""What every request of the emulator passes first: token, request counts, faults, log.

One ASGI middleware (`Gate`), so the order is fixed: /openapi.json and the two OAuth
URLs need no token (the OAuth server counts its own requests and has its own failure
knob); a missing or wrong token is answered 401/403 before anything is counted (with
--oauth-client, an unknown or expired token is 401 `invalid_token`, RFC 6750); the
testing routes are neither counted nor faulted (a test's own setup must not fail by
chance); every other request is counted by route template (`GET
/api/v1/connections/{id}`, an RPC call by its method path) and then meets the
injected faults (--faults).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence

import structlog
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chanops.emulator._routes import TESTING, error_response
from chanops.emulator._rpc import RPC_TEMPLATE
from chanops.emulator.faults import Decision, FaultInjector
from chanops.emulator.oauth import AUTHORIZE_PATH, TOKEN_PATH, OAuthServer

# Served before any token check: the contract, and the OAuth server's own URLs.
_OPEN_PATHS = frozenset({"/openapi.json", AUTHORIZE_PATH, TOKEN_PATH})

log = structlog.get_logger("chanops.emulator")


class ConnectionDropped(Exception):
    """Raised mid-response to make the server drop the connection (reset_rate fault)."""


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
        oauth: OAuthServer | None = None,
    ) -> None:
        self.app = app
        self.oauth = oauth
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
            await self._handle(scope, receive, logging_send)
        finally:
            log.log(
                self.request_log_level,
                "emulator.request",
                method=method,
                path=path,
                status=status_holder["status"],
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path in _OPEN_PATHS:
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
        if template == RPC_TEMPLATE:
            template = path
        if template is not None:
            self.stats[f"{scope['method']} {template}"] += 1
        if not self.injector.spec.any:
            await self.app(scope, receive, send)
            return
        await self._faulted(scope, receive, send, self.injector.decide())

    async def _faulted(
        self, scope: Scope, receive: Receive, send: Send, decision: Decision
    ) -> None:
        """Serve the request the way `decision` says: delayed, refused, failed or cut."""
        method: str = scope["method"]
        path: str = scope["path"]
        if decision.delay_s:
            await asyncio.sleep(decision.delay_s)
        if decision.outcome == "ok":
            await self.app(scope, receive, send)
            return
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
        presented = presented.strip()
        if hmac.compare_digest(presented, self.token):
            return None
        if self.oauth is None:
            return error_response(
                403, "forbidden", "the bearer token is not valid for this account"
            )
        if self.oauth.access_valid(presented):
            return None
        return error_response(
            401,
            "invalid_token",
            "the access token is unknown, expired or revoked: refresh it",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
