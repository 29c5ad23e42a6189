"""Who may read the status page, and the headers every page carries.

- On a loopback `--listen` the page is open, as /status is (whoever can reach it is on
  the host).
- With `--ui-password-file` the page asks for HTTP basic authentication: any user
  name, the file's password (compared in constant time). The JSON endpoints keep their
  own rules.
- With `--ui-trusted-header NAME` a request carrying a non-empty NAME header is let in,
  and the value is shown as the user: an authenticating proxy in front (oauth2-proxy's
  `X-Forwarded-Email`) sets it. Only safe when nothing but that proxy reaches the port.
- On any other `--listen` with neither, the page is locked (403 naming both flags):
  the manifests' names, labels and errors are not for whoever reaches the port.

`decide` is pure; `UIGuard` is the ASGI middleware that applies it and sets the
security headers: a Content-Security-Policy under which no inline script runs (script
only from the page's own origin), no framing, no referrer, no caching.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)
REALM = "chanops status"
LOCKED = (
    "The status page is locked: --listen is not loopback and neither "
    "--ui-password-file nor --ui-trusted-header is set (docs/ui.md).\n"
)


@dataclass(frozen=True, slots=True)
class UIAuth:
    password: bytes | None = None
    trusted_header: str | None = None
    exposed: bool = False  # --listen is not loopback


@dataclass(frozen=True, slots=True)
class Decision:
    status: int  # 200: let in
    user: str = ""
    message: str = ""


def is_loopback(host: str) -> bool:
    """True for an address only this host reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def decide(auth: UIAuth, headers: Mapping[str, str]) -> Decision:
    if auth.trusted_header:
        user = headers.get(auth.trusted_header.lower(), "").strip()
        if user:
            return Decision(200, user=user)
    if auth.password is not None:
        if _password_matches(headers.get("authorization", ""), auth.password):
            return Decision(200, user="")
        return Decision(401, message="Authentication required.\n")
    if auth.trusted_header:
        return Decision(401, message=f"The {auth.trusted_header} header is missing.\n")
    if auth.exposed:
        return Decision(403, message=LOCKED)
    return Decision(200)


def _password_matches(header: str, password: bytes) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    _, sep, given = decoded.partition(b":")
    return bool(sep) and hmac.compare_digest(given, password)


class UIGuard:
    """ASGI middleware in front of the status page: the access rule and the headers."""

    def __init__(self, app: ASGIApp, auth: UIAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decision = decide(self.auth, Headers(scope=scope))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if decision.status != 200:  # noqa: PLR2004 (HTTP OK)
            headers = {}
            if decision.status == 401 and self.auth.password is not None:  # noqa: PLR2004
                headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
            refused = PlainTextResponse(
                decision.message, status_code=decision.status, headers=headers
            )
            await refused(scope, receive, send_with_headers)
            return
        scope.setdefault("state", {})["ui_user"] = decision.user
        await self.app(scope, receive, send_with_headers)
