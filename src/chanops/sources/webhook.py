"""The push webhook: verify a GitHub or GitLab delivery, then ask the git source to fetch.

The `verify_*` functions and `GithubSignature` are pure (no I/O): they compare in
constant time and never return or log the signature or the secret. `git_webhook_route`
is the thin Starlette shell around them for `POST /hooks/git`.

A delivery only says "fetch now": its body is never trusted for what to check out, so
a replayed or reordered delivery can at worst cause one extra fetch.

`POST /hooks/git` is reachable by anyone who can reach `--listen`, so it spends as
little as possible on a request before it is authenticated:

- no signature header (`X-Hub-Signature-256` or `X-Gitlab-Token`): 401 before a byte of
  the body is read;
- a wrong GitLab token or a malformed GitHub header: 401, body unread (neither needs it);
- a declared `Content-Length` over 25 MB: 413, body unread;
- more than `MAX_IN_FLIGHT` (4) deliveries being read at once: 429, body unread;
- otherwise the body is streamed, never buffered: through the HMAC for GitHub, drained
  for GitLab; past 25 MB it is 413, and if it has not all arrived `BODY_TIMEOUT` (10 s)
  after the request head it is 408.

Every refusal is logged as `webhook.rejected` with its `reason` and the `client`
address, and answered with `Connection: close` so a refused sender cannot keep the
connection (and the rest of its body) on the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Callable, Mapping
from http import HTTPStatus
from pathlib import Path

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chanops.errors import ConfigError

log = structlog.get_logger(__name__)

GITHUB_HEADER = "x-hub-signature-256"
GITLAB_HEADER = "x-gitlab-token"
# GitHub caps push payloads at 25 MB; a push notification needs no more than that, and
# an unauthenticated endpoint must not read unbounded bodies.
MAX_BODY = 25 * 1024 * 1024
# A real delivery (at most 25 MB from GitHub's or GitLab's network) arrives well within
# this; a sender that trickles its body to hold a slot is cut off here.
BODY_TIMEOUT = 10.0
# Deliveries whose bodies are being read at once. Pushes come one at a time from one
# forge; more than a few at once is a flood, and each one costs a read loop and HMAC work.
MAX_IN_FLIGHT = 4

# Refusals close the connection: whatever body is still coming is not read or drained.
_CLOSE = {"Connection": "close"}


class GithubSignature:
    """HMAC-SHA256 of a body fed chunk by chunk, checked against `X-Hub-Signature-256`.

    Streaming lets the endpoint verify a 25 MB delivery with one chunk in memory at a
    time; `verify_github` is the same check over a whole body.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = bool(secret)
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)

    def update(self, chunk: bytes) -> None:
        self._mac.update(chunk)

    def matches(self, signature_header: str | None) -> bool:
        given = parse_github_header(signature_header)
        if not self._secret or given is None:
            return False
        return hmac.compare_digest(self._mac.hexdigest(), given)


def parse_github_header(signature_header: str | None) -> str | None:
    """The lower-case hex digest of `sha256=<hex>`; None when malformed or absent."""
    if not signature_header:
        return None
    scheme, _, given = signature_header.strip().partition("=")
    if scheme != "sha256" or not given:
        return None
    return given.lower()


def verify_github(body: bytes, signature_header: str | None, secret: bytes) -> bool:
    """True when `X-Hub-Signature-256: sha256=<hex>` is the HMAC-SHA256 of `body` under `secret`."""
    signature = GithubSignature(secret)
    signature.update(body)
    return signature.matches(signature_header)


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


class _BodyTooLarge(Exception):
    pass


class _Refused(Exception):
    """A delivery refused: the answer's status and error, and the reason logged."""

    def __init__(self, status: HTTPStatus, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


def git_webhook_route(source_trigger: Callable[[], None], secret_file: Path) -> Route:
    """`POST /hooks/git`: 202 and `source_trigger()` for a verified delivery, 401 otherwise.

    The secret is read now (a missing or empty file is a ConfigError at startup) and
    re-read on each delivery, so a rotated secret (a Kubernetes Secret update) applies
    without a restart; if the file becomes unreadable the last good secret is used.
    """
    return Route("/hooks/git", _GitWebhook(source_trigger, secret_file).endpoint, methods=["POST"])


class _GitWebhook:
    def __init__(self, source_trigger: Callable[[], None], secret_file: Path) -> None:
        self.source_trigger = source_trigger
        self.secret_file = secret_file
        self.secret = read_secret(secret_file)
        self.in_flight = 0  # one event loop: a plain counter needs no lock

    def current_secret(self) -> bytes:
        with contextlib.suppress(ConfigError):
            self.secret = read_secret(self.secret_file)
        return self.secret

    async def endpoint(self, request: Request) -> JSONResponse:
        headers = request.headers
        provider = provider_of(headers)
        try:
            if provider is None:
                raise _Refused(HTTPStatus.UNAUTHORIZED, "unauthorized", "unsigned")
            self._check_head(headers, provider)
            await self._check_body(request, provider)
        except _Refused as refused:
            client = request.client.host if request.client else None
            by = {"provider": provider} if provider is not None else {}
            log.warning("webhook.rejected", reason=refused.reason, client=client, **by)
            answer = dict(_CLOSE)
            if refused.status == HTTPStatus.TOO_MANY_REQUESTS:
                answer["Retry-After"] = "1"
            return JSONResponse(
                {"error": refused.error}, status_code=refused.status, headers=answer
            )
        event = headers.get("x-github-event") or headers.get("x-gitlab-event")
        delivery = headers.get("x-github-delivery") or headers.get("x-gitlab-event-uuid")
        log.info("webhook.accepted", provider=provider, hook_event=event, delivery=delivery)
        self.source_trigger()
        return JSONResponse({"status": "accepted"}, status_code=HTTPStatus.ACCEPTED)

    def _check_head(self, headers: Mapping[str, str], provider: str) -> None:
        """What refuses a delivery before a byte of its body or the secret is read."""
        if provider == "github" and parse_github_header(headers.get(GITHUB_HEADER)) is None:
            raise _Refused(HTTPStatus.UNAUTHORIZED, "unauthorized", "bad signature")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            raise _Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large", "body too large"
            )
        if self.in_flight >= MAX_IN_FLIGHT:
            raise _Refused(HTTPStatus.TOO_MANY_REQUESTS, "too_many_requests", "too many in flight")

    async def _check_body(self, request: Request, provider: str) -> None:
        """Verify the delivery's token, or stream its body through the HMAC, in a slot."""
        headers = request.headers
        self.in_flight += 1
        try:
            secret = self.current_secret()
            signature: GithubSignature | None = None
            if provider == "gitlab":
                # The token is the whole proof: a wrong one is refused without its body.
                if not verify_gitlab(headers.get(GITLAB_HEADER), secret):
                    raise _Refused(HTTPStatus.UNAUTHORIZED, "unauthorized", "bad signature")
            else:
                signature = GithubSignature(secret)
            try:
                # A total deadline, not a per-chunk one: a byte every few seconds must not
                # keep a slot for ever.
                async with asyncio.timeout(BODY_TIMEOUT):
                    await _read_body(request, signature)
            except TimeoutError:
                raise _Refused(
                    HTTPStatus.REQUEST_TIMEOUT, "request_timeout", "body timeout"
                ) from None
            except _BodyTooLarge:
                raise _Refused(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large", "body too large"
                ) from None
            except ClientDisconnect:
                # Nobody is left to answer; log it so a flood of these is still visible.
                raise _Refused(
                    HTTPStatus.BAD_REQUEST, "disconnected", "client disconnected"
                ) from None
            if signature is not None and not signature.matches(headers.get(GITHUB_HEADER)):
                raise _Refused(HTTPStatus.UNAUTHORIZED, "unauthorized", "bad signature")
        finally:
            self.in_flight -= 1


async def _read_body(request: Request, signature: GithubSignature | None) -> None:
    """Stream the body into `signature` (or just drain it), one chunk in memory at a time."""
    size = 0
    async with contextlib.aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_BODY:
                raise _BodyTooLarge
            if signature is not None:
                signature.update(chunk)
