"""The emulator's HTTP surface: a Starlette app implementing schemas/platform-api.yaml.

`create_app` is used by `chanops emulator` (under uvicorn) and by the command line's
`local:PATH` platform (in-process through httpx's ASGI transport). The app is a thin
layer: `gate.Gate` checks the token, injects faults and counts requests, the handlers
of `routes` validate request shapes and hand the rest to `store.Platform`, which holds
the platform's rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import structlog
import yaml
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from chanops.emulator._gate import ConnectionDropped, Gate
from chanops.emulator._routes import error_response, routes
from chanops.emulator._rpc import rpc_routes
from chanops.emulator._store import Platform
from chanops.emulator.faults import FaultInjector, parse_faults
from chanops.emulator.oauth import OAuthConfig, OAuthServer, oauth_routes
from chanops.rpcprofile import Profile, load_profile

__all__ = ["create_app", "load_spec"]

log = structlog.get_logger("chanops.emulator")

MAX_BODY_BYTES = 1 << 20


def load_spec() -> dict[str, Any]:
    text = resources.files("chanops").joinpath("schemas/platform-api.yaml").read_text("utf-8")
    spec: dict[str, Any] = yaml.safe_load(text)
    return spec


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    headers = dict(exc.headers or {})
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ConnectionDropped):  # an injected reset is no failure
        log.error("emulator.internal_error", error=repr(exc), path=request.url.path)
    return error_response(500, "internal_error", "the emulator failed unexpectedly")


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    app.state.platform.close()


def create_app(
    *,
    db: str,
    token: str,
    time_scale: float = 1.0,
    faults: str | None = None,
    drivers: Sequence[str] | None = None,
    request_log_level: str = "info",
    oauth: OAuthConfig | None = None,
    profile: Profile | None = None,
) -> Starlette:
    """The emulator as an ASGI app over SQLite at `db` (`:memory:` for throwaway).

    `oauth` turns on the OAuth 2.0 server (its access tokens are accepted beside
    `token`); `profile` is the RPC profile served (the shipped core1 profile if None).
    """
    if not token:
        raise ValueError("the emulator needs a token")
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    oauth_server = OAuthServer(oauth) if oauth is not None else None
    platform = Platform(db, time_scale=time_scale, drivers=drivers)
    # the RPC route takes any one-segment POST path, so it comes last
    table = [*routes(), *oauth_routes(), *rpc_routes()]
    stats: Counter[str] = Counter()
    app = Starlette(
        routes=table,
        middleware=[
            Middleware(
                Gate,
                token=token,
                routes=table,
                stats=stats,
                injector=FaultInjector(parse_faults(faults)),
                request_log_level=request_log_level,
                oauth=oauth_server,
            )
        ],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=_lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.platform = platform
    app.state.stats = stats
    app.state.spec = load_spec()
    app.state.oauth = oauth_server
    app.state.profile = profile or load_profile()
    return app
