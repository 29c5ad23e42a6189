"""The emulator's OAuth 2.0 server: Core1's authorization-code flow, for development.

Core1's two URLs: `GET /Actindo.CoreModules.Auth.OAuth2.authorize` approves at once (a
development server has no login page) and redirects back with a code;
`POST /Actindo.CoreModules.Auth.OAuth2Token.getAccessToken` exchanges a code or a
refresh token (RFC 6749 section 4.1 and 6, PKCE S256 per RFC 7636). Redirect URIs are
loopback URLs on any port (RFC 8252 section 7.3), which is what `chanops login`
listens on.

`OAuthServer` holds the rules and the tokens, in memory (restarting the emulator signs
every client out) and only as SHA-256 digests; it knows no HTTP. The handlers at the
bottom turn requests into its calls. Knobs for tests: `--access-token-ttl`,
`--rotate-refresh-tokens`, `--refresh-grace`, and testing routes that revoke every
token, count the token requests and make the token endpoint fail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from chanops.emulator._routes import TESTING

__all__ = [
    "AUTHORIZE_PATH",
    "TOKEN_PATH",
    "OAuthClient",
    "OAuthConfig",
    "OAuthError",
    "OAuthServer",
    "oauth_routes",
    "parse_client",
]

AUTHORIZE_PATH: Final = "/Actindo.CoreModules.Auth.OAuth2.authorize"
TOKEN_PATH: Final = "/Actindo.CoreModules.Auth.OAuth2Token.getAccessToken"  # noqa: S105 - a URL
CODE_TTL_S: Final = 60.0
DEFAULT_SCOPE: Final = "api"
FAILURE_MODES: Final = ("none", "html", "500")

# The vendor's rule for an app's client id: 4-31 letters, digits or underscores,
# starting with a letter.
_CLIENT_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,30}$")
# RFC 7636 section 4.1: 43 to 128 unreserved characters.
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_LOOPBACK_HOSTS: Final = ("127.0.0.1", "localhost", "::1")

_LOGIN_PAGE: Final = (
    "<!doctype html><html><head><title>Sign in</title></head>"
    "<body><form method=post><input name=user></form></body></html>"
)


@dataclass(frozen=True, slots=True)
class OAuthClient:
    client_id: str
    secret: str


def parse_client(text: str) -> OAuthClient:
    """`ID:SECRET` (the secret may hold colons); ValueError says what is wrong."""
    client_id, sep, secret = text.partition(":")
    if not sep or not secret:
        raise ValueError("expected ID:SECRET")
    if not _CLIENT_ID.match(client_id):
        raise ValueError(
            f"client id {client_id!r}: 4-31 letters, digits or underscores, starting with a letter"
        )
    return OAuthClient(client_id, secret)


@dataclass(frozen=True, slots=True)
class OAuthConfig:
    clients: Sequence[OAuthClient]
    access_token_ttl_s: float = 3600.0
    rotate_refresh_tokens: bool = False
    refresh_grace_s: float = 0.0


class OAuthError(Exception):
    """An RFC 6749 error: `code` (invalid_grant, ...), a description, the HTTP status."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.status = status


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str | None
    scope: str
    expires_at: float


@dataclass(slots=True)
class _Refresh:
    client_id: str
    scope: str
    superseded_at: float | None = None  # rotated: valid until superseded_at + grace


@dataclass(frozen=True, slots=True)
class _Access:
    client_id: str
    expires_at: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _s256(verifier: str) -> str:
    raw = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def is_loopback_redirect(uri: str) -> bool:
    """An http URL on a loopback host, any port (RFC 8252 section 7.3), no fragment."""
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in _LOOPBACK_HOSTS
        and parts.username is None
        and not parts.fragment
    )


@dataclass(slots=True)
class _Failure:
    mode: str = "none"
    remaining: int | None = None  # requests left to fail; None: until reset


class OAuthServer:
    """The authorization server's rules and tokens (in memory, digests only)."""

    def __init__(self, config: OAuthConfig, clock: Callable[[], float] = time.monotonic) -> None:
        if not config.clients:
            raise ValueError("an OAuth server needs at least one client")
        if config.access_token_ttl_s <= 0:
            raise ValueError("the access token lifetime must be positive")
        if config.refresh_grace_s < 0:
            raise ValueError("the refresh grace must not be negative")
        self.config = config
        self.clients = {c.client_id: c for c in config.clients}
        self.clock = clock
        self.codes: dict[str, _Code] = {}
        self.refresh: dict[str, _Refresh] = {}
        self.access: dict[str, _Access] = {}
        self.stats: Counter[str] = Counter()
        self.failure = _Failure()

    # -- the authorize step -------------------------------------------------------------

    def authorize(self, params: Mapping[str, str]) -> str:
        """The URL to redirect to (with a code, or with an error for the client).

        Raises OAuthError for what must not be redirected (RFC 6749 section 4.1.2.1):
        an unknown client or a redirect URI that is not an allowed one.
        """
        self.stats["authorize"] += 1
        client_id = params.get("client_id", "")
        if client_id not in self.clients:
            raise OAuthError("invalid_client", f"unknown client_id {client_id!r}")
        redirect_uri = params.get("redirect_uri", "")
        if not is_loopback_redirect(redirect_uri):
            raise OAuthError(
                "invalid_request",
                f"redirect_uri {redirect_uri!r} is not registered for {client_id}: the "
                "emulator allows http://127.0.0.1:<port>/... and http://localhost:<port>/...",
            )
        state = params.get("state")
        try:
            challenge = self._challenge(params)
            if params.get("response_type") != "code":
                raise OAuthError("unsupported_response_type", "response_type must be code")
        except OAuthError as exc:
            return _with_query(
                redirect_uri, {"error": exc.code, "error_description": exc.description}, state
            )
        code = secrets.token_urlsafe(24)
        self.codes[_digest(code)] = _Code(
            client_id=client_id,
            redirect_uri=redirect_uri,
            challenge=challenge,
            scope=params.get("scope") or DEFAULT_SCOPE,
            expires_at=self.clock() + CODE_TTL_S,
        )
        return _with_query(redirect_uri, {"code": code}, state)

    def _challenge(self, params: Mapping[str, str]) -> str | None:
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method", "plain" if challenge else None)
        if challenge is None:
            if method is not None:
                raise OAuthError("invalid_request", "code_challenge_method without code_challenge")
            return None
        if method != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256")
        return challenge

    # -- the token endpoint -------------------------------------------------------------

    def token(self, form: Mapping[str, str], basic: tuple[str, str] | None) -> dict[str, Any]:
        """The answer to a token request; raises OAuthError (RFC 6749 section 5.2)."""
        self.stats["token_requests"] += 1
        try:
            client = self._client(form, basic)
            grant = form.get("grant_type")
            if grant == "authorization_code":
                answer = self._exchange(client, form)
                self.stats["code_exchanges"] += 1
            elif grant == "refresh_token":
                answer = self._refresh(client, form)
                self.stats["refreshes"] += 1
            elif not grant:
                raise OAuthError("invalid_request", "grant_type is required")
            else:
                raise OAuthError(
                    "unsupported_grant_type",
                    f"grant_type {grant!r}: use authorization_code or refresh_token",
                )
        except OAuthError as exc:
            self.stats[f"refused.{exc.code}"] += 1
            raise
        return answer

    def _client(self, form: Mapping[str, str], basic: tuple[str, str] | None) -> OAuthClient:
        client_id, secret = basic if basic else (form.get("client_id"), form.get("client_secret"))
        client = self.clients.get(client_id or "")
        if client is None:
            raise OAuthError("invalid_client", f"unknown client_id {client_id!r}", 401)
        if not secret or not hmac.compare_digest(secret.encode(), client.secret.encode()):
            raise OAuthError("invalid_client", f"wrong client secret for {client_id}", 401)
        return client

    def _exchange(self, client: OAuthClient, form: Mapping[str, str]) -> dict[str, Any]:
        code = self.codes.pop(_digest(form.get("code") or ""), None)  # one use only
        if code is None or code.expires_at <= self.clock():
            raise OAuthError("invalid_grant", "the code is unknown, used or expired")
        if code.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorize step's")
        if code.challenge is not None:
            verifier = form.get("code_verifier") or ""
            if not _VERIFIER.match(verifier) or not hmac.compare_digest(
                _s256(verifier), code.challenge
            ):
                raise OAuthError("invalid_grant", "code_verifier does not match code_challenge")
        refresh_token = secrets.token_urlsafe(32)
        self.refresh[_digest(refresh_token)] = _Refresh(client.client_id, code.scope)
        return self._tokens(client, code.scope, refresh_token)

    def _refresh(self, client: OAuthClient, form: Mapping[str, str]) -> dict[str, Any]:
        presented = form.get("refresh_token") or ""
        key = _digest(presented)
        record = self.refresh.get(key)
        now = self.clock()
        if record is None or record.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the refresh token is unknown or revoked")
        grace = self.config.refresh_grace_s
        if record.superseded_at is not None and now > record.superseded_at + grace:
            del self.refresh[key]
            raise OAuthError("invalid_grant", "the refresh token was rotated and has expired")
        if not self.config.rotate_refresh_tokens:
            return self._tokens(client, record.scope, presented)
        if record.superseded_at is None:
            record.superseded_at = now
        refresh_token = secrets.token_urlsafe(32)
        self.refresh[_digest(refresh_token)] = _Refresh(client.client_id, record.scope)
        return self._tokens(client, record.scope, refresh_token)

    def _tokens(self, client: OAuthClient, scope: str, refresh_token: str) -> dict[str, Any]:
        ttl = self.config.access_token_ttl_s
        access_token = secrets.token_urlsafe(32)
        self.access[_digest(access_token)] = _Access(client.client_id, self.clock() + ttl)
        self._forget_expired()
        return {
            "access_token": access_token,
            "expires_in": max(1, round(ttl)),
            "token_type": "bearer",
            "scope": scope,
            "refresh_token": refresh_token,
        }

    def _forget_expired(self) -> None:
        now = self.clock()
        grace = self.config.refresh_grace_s
        for key in [k for k, a in self.access.items() if a.expires_at <= now]:
            del self.access[key]
        for key in [k for k, c in self.codes.items() if c.expires_at <= now]:
            del self.codes[key]
        for key in [
            k
            for k, r in self.refresh.items()
            if r.superseded_at is not None and now > r.superseded_at + grace
        ]:
            del self.refresh[key]

    # -- what the API gate asks, and the testing knobs ----------------------------------

    def access_valid(self, token: bytes) -> bool:
        try:
            key = _digest(token.decode("ascii"))
        except UnicodeDecodeError:
            return False
        access = self.access.get(key)
        return access is not None and access.expires_at > self.clock()

    def revoke_all(self) -> dict[str, int]:
        revoked = {"refresh_tokens": len(self.refresh), "access_tokens": len(self.access)}
        self.refresh.clear()
        self.access.clear()
        self.codes.clear()
        return revoked

    def set_failure(self, mode: str, times: int | None) -> None:
        if mode not in FAILURE_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAILURE_MODES)}")
        self.failure = _Failure(mode, times if mode != "none" else None)

    def take_failure(self) -> str:
        """The failure to answer this token request with ("none": answer normally)."""
        failure = self.failure
        if failure.mode == "none":
            return "none"
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining <= 0:
                self.failure = _Failure()
        self.stats["token_requests"] += 1
        self.stats[f"failed.{failure.mode}"] += 1
        return failure.mode


def _with_query(uri: str, values: Mapping[str, str], state: str | None) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += list(values.items())
    if state is not None:
        query.append(("state", state))
    return parts._replace(query=urlencode(query)).geturl()


# -- HTTP ---------------------------------------------------------------------------------


def _server(request: Request) -> OAuthServer | None:
    server: OAuthServer | None = request.app.state.oauth
    return server


def _error(exc: OAuthError) -> JSONResponse:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if exc.status == 401:  # noqa: PLR2004 - RFC 6749 section 5.2's one special status
        headers["WWW-Authenticate"] = 'Basic realm="core1"'
    return JSONResponse(
        {"error": exc.code, "error_description": exc.description},
        status_code=exc.status,
        headers=headers,
    )


def _not_enabled() -> JSONResponse:
    return JSONResponse(
        {"error": "not_found", "message": "OAuth is off: start the emulator with --oauth-client"},
        status_code=404,
    )


async def authorize_endpoint(request: Request) -> Response:
    server = _server(request)
    if server is None:
        return _not_enabled()
    try:
        location = server.authorize(dict(request.query_params))
    except OAuthError as exc:
        # never redirected: the redirect target is the thing in doubt
        return _error(exc)
    return RedirectResponse(location, status_code=302)


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")
    client_id, _, secret = decoded.partition(":")
    return (client_id, secret)


async def _form(request: Request) -> dict[str, str]:
    """The form-encoded body; a parameter sent twice is refused (RFC 6749 section 3.1)."""
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the body is not a form") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise OAuthError("invalid_request", f"parameter {key} is sent twice")
        form[key] = value
    return form


async def token_endpoint(request: Request) -> Response:
    server = _server(request)
    if server is None:
        return _not_enabled()
    failure = server.take_failure()
    if failure == "html":
        return HTMLResponse(_LOGIN_PAGE, status_code=200)
    if failure == "500":
        return HTMLResponse("<h1>500 Internal Server Error</h1>", status_code=500)
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        server.stats["token_requests"] += 1
        return _error(OAuthError("invalid_request", "send the parameters form-encoded (RFC 6749)"))
    try:
        answer = server.token(await _form(request), _basic(request))
    except OAuthError as exc:
        return _error(exc)
    return JSONResponse(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def testing_revoke(request: Request) -> Response:
    server = _server(request)
    if server is None:
        return _not_enabled()
    return JSONResponse({"revoked": server.revoke_all()})


async def testing_stats(request: Request) -> Response:
    server = _server(request)
    if server is None:
        return _not_enabled()
    counts = dict(sorted(server.stats.items()))
    counts["refresh_tokens_valid"] = len(server.refresh)
    now = server.clock()
    counts["access_tokens_valid"] = sum(1 for a in server.access.values() if a.expires_at > now)
    return JSONResponse(counts)


async def testing_stats_reset(request: Request) -> Response:
    server = _server(request)
    if server is None:
        return _not_enabled()
    server.stats.clear()
    return JSONResponse({})


async def testing_failure(request: Request) -> Response:
    server = _server(request)
    if server is None:
        return _not_enabled()
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _bad_request("the body must be a JSON object {mode, times?}", None)
    times = body.get("times")
    if times is not None and (type(times) is not int or times < 1):
        return _bad_request("times must be a positive integer", "times")
    try:
        server.set_failure(str(body.get("mode")), times)
    except ValueError as exc:
        return _bad_request(str(exc), "mode")
    return JSONResponse({"mode": server.failure.mode, "times": server.failure.remaining})


def _bad_request(message: str, field: str | None) -> JSONResponse:
    return JSONResponse(
        {"error": "bad_request", "message": message, "field": field}, status_code=400
    )


def oauth_routes() -> list[Route]:
    """Core1's two OAuth URLs, and the testing routes (which need the emulator's token)."""
    return [
        Route(AUTHORIZE_PATH, authorize_endpoint, methods=["GET"]),
        Route(TOKEN_PATH, token_endpoint, methods=["POST"]),
        Route(f"{TESTING}oauth/revoke", testing_revoke, methods=["POST"]),
        Route(f"{TESTING}oauth/stats", testing_stats, methods=["GET"]),
        Route(f"{TESTING}oauth/stats/reset", testing_stats_reset, methods=["POST"]),
        Route(f"{TESTING}oauth/token-failure", testing_failure, methods=["POST"]),
    ]
