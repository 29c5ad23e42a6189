"""The push webhook: verify a GitHub or GitLab delivery, then ask the git source to fetch.

The `verify_*` functions are pure (no I/O): they compare in constant time and never
return or log the signature or the secret. `git_webhook_route` is the thin Starlette
shell around them for `POST /hooks/git`.

A delivery only says "fetch now": its body is never trusted for what to check out, so
a replayed or reordered delivery can at worst cause one extra fetch.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chanops.errors import ConfigError

log = structlog.get_logger(__name__)

GITHUB_HEADER = "x-hub-signature-256"
GITLAB_HEADER = "x-gitlab-token"
# GitHub caps push payloads at 25 MB; a push notification needs no more than that, and
# an unauthenticated endpoint must not buffer unbounded bodies.
MAX_BODY = 25 * 1024 * 1024


def verify_github(body: bytes, signature_header: str | None, secret: bytes) -> bool:
    """True when `X-Hub-Signature-256: sha256=<hex>` is the HMAC-SHA256 of `body` under `secret`."""
    if not secret or not signature_header:
        return False
    scheme, _, given = signature_header.strip().partition("=")
    if scheme != "sha256" or not given:
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.lower())


def verify_gitlab(token_header: str | None, secret: bytes) -> bool:
    """True when `X-Gitlab-Token` equals the secret (GitLab sends the secret itself)."""
    if not secret or token_header is None:
        return False
    return hmac.compare_digest(token_header.encode("utf-8"), secret)


def provider_of(headers: Mapping[str, str]) -> str | None:
    """Which provider signed the request ("github", "gitlab"), by header; None if neither."""
    names = {k.lower() for k in headers}
    if GITHUB_HEADER in names:
        return "github"
    if GITLAB_HEADER in names:
        return "gitlab"
    return None


def verify_request(headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
    """Verify by whichever header the request carries; a request with neither is refused."""
    lowered = {k.lower(): v for k, v in headers.items()}
    provider = provider_of(lowered)
    if provider == "github":
        return verify_github(body, lowered.get(GITHUB_HEADER), secret)
    if provider == "gitlab":
        return verify_gitlab(lowered.get(GITLAB_HEADER), secret)
    return False


def read_secret(secret_file: Path) -> bytes:
    """The webhook secret: the file's content without the trailing newline editors add."""
    try:
        secret = secret_file.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read webhook secret file {secret_file}: {exc.strerror}"
        ) from None
    if not secret:
        raise ConfigError(f"webhook secret file {secret_file} is empty")
    return secret


def git_webhook_route(source_trigger: Callable[[], None], secret_file: Path) -> Route:
    """`POST /hooks/git`: 202 and `source_trigger()` for a verified delivery, 401 otherwise.

    The secret is read now (a missing or empty file is a ConfigError at startup) and
    re-read on each delivery, so a rotated secret (a Kubernetes Secret update) applies
    without a restart; if the file becomes unreadable the last good secret is used.
    """
    cached = [read_secret(secret_file)]

    def current_secret() -> bytes:
        with contextlib.suppress(ConfigError):
            cached[0] = read_secret(secret_file)
        return cached[0]

    async def endpoint(request: Request) -> JSONResponse:
        headers = request.headers
        provider = provider_of(headers)
        client = request.client.host if request.client else None
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            log.warning("webhook.rejected", reason="body too large", client=client)
            return JSONResponse({"error": "payload_too_large"}, status_code=413)
        body = await _read_limited(request)
        if body is None:
            log.warning("webhook.rejected", reason="body too large", client=client)
            return JSONResponse({"error": "payload_too_large"}, status_code=413)
        if provider is None:
            log.warning("webhook.rejected", reason="unsigned", client=client)
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if not verify_request(headers, body, current_secret()):
            log.warning(
                "webhook.rejected", reason="bad signature", provider=provider, client=client
            )
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        event = headers.get("x-github-event") or headers.get("x-gitlab-event")
        delivery = headers.get("x-github-delivery") or headers.get("x-gitlab-event-uuid")
        log.info("webhook.accepted", provider=provider, hook_event=event, delivery=delivery)
        source_trigger()
        return JSONResponse({"status": "accepted"}, status_code=202)

    return Route("/hooks/git", endpoint, methods=["POST"])


async def _read_limited(request: Request) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
