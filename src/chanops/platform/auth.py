"""OAuth 2.0 sessions with a Core1 instance: access tokens that never lapse.

Core1 authorises an app with the authorization-code flow (`chanops login` runs it once)
and hands out an access token (an hour by default) with a refresh token. `OAuthSession`
keeps the platform client supplied with a valid bearer token from then on:

- refresh at 80 % of the token's lifetime (`REFRESH_AT`), ahead of expiry, so a call
  never meets an expired token in the normal course;
- one refresh at a time however many calls are in flight (an asyncio lock within the
  process, the token store's exclusive lock across processes: a `chanops plan` beside
  the daemon), and a refresh that finds a newer set in the store takes that instead;
- the new set (with a rotated refresh token) is durable in the store *before* the new
  access token is used: the `update_token` hook of authlib's client saves it;
- after a 401 the client calls `rejected`: one refresh (unless another call refreshed
  already) and one retry of the call;
- a refused refresh (`invalid_grant`: revoked, expired) is `ReauthorizationRequired`:
  announced once per streak (`auth.reauthorization_required`), and from then on every
  call fails at once without touching the network. The session re-reads the store
  (local, cheap) and resumes as soon as `chanops login` wrote a new set
  (`auth.restored`); only every `recheck_s` does it try the token endpoint again.

The token exchange itself is authlib's (`AsyncOAuth2Client`: grant bodies, client
authentication, error answers); this module adds the policy. No token or secret is
ever logged: `TokenSet`'s repr leaves them out and `secrets()` gives the client's
redaction every current one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx

from chanops import errors
from chanops.events import EventSink
from chanops.platform.answers import Redirected, describe_body, phrase, refuse_redirects, snippet

if TYPE_CHECKING:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

AUTHORIZE_PATH = "/Actindo.CoreModules.Auth.OAuth2.authorize"
TOKEN_PATH = "/Actindo.CoreModules.Auth.OAuth2Token.getAccessToken"  # noqa: S105 (a URL path)
REFRESH_AT = 0.8  # of a token's lifetime: refresh then, well before it lapses
DEFAULT_LIFETIME_S = 3600.0  # Core1's, when an answer leaves expires_in out
RECHECK_S = 300.0  # while awaiting reauthorization: one token request at most this often
T = TypeVar("T")


def authorize_url(platform_url: str) -> str:
    return platform_url.rstrip("/") + AUTHORIZE_PATH


def token_url(platform_url: str) -> str:
    return platform_url.rstrip("/") + TOKEN_PATH


@dataclass(frozen=True, slots=True)
class TokenSet:
    """An access token, its refresh token and when it lapses (unix times).

    `generation` grows with every save to the store and `login` is the generation of
    the last `chanops login`: how a waiting session tells a new authorisation.
    """

    platform_url: str
    client_id: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    scope: str
    issued_at: float
    expires_at: float
    generation: int = 0
    login: int = 0

    @property
    def refresh_due(self) -> float:
        return self.issued_at + REFRESH_AT * max(0.0, self.expires_at - self.issued_at)


class TokenStore(Protocol):
    """Where the token set lives (the state store, `chanops.commands.platform`)."""

    where: str  # for messages: the state store's path

    def load(self) -> TokenSet | None: ...

    def save(self, tokens: TokenSet, *, login: bool = False) -> TokenSet:
        """Durably, in one transaction, before returning; the set as saved."""
        ...

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held across one refresh: no other process refreshes meanwhile (blocking)."""
        ...


def token_set_from(
    answer: Mapping[str, Any],
    *,
    platform_url: str,
    client_id: str,
    now: float,
    previous_refresh: str | None = None,
) -> TokenSet:
    """A token endpoint's answer as a TokenSet (pure); AuthError when it is no token."""
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise errors.AuthError("the token endpoint answered without an access_token")
    token_type = answer.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = snippet(str(token_type), (access,), 20)
        raise errors.AuthError(f"the token endpoint answered token_type {shown!r}, not bearer")
    lifetime = answer.get("expires_in", DEFAULT_LIFETIME_S)
    if isinstance(lifetime, str) and lifetime.isdigit():
        lifetime = int(lifetime)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        raise errors.AuthError("the token endpoint answered an expires_in that is no duration")
    refresh = answer.get("refresh_token") or previous_refresh
    scope = answer.get("scope")
    return TokenSet(
        platform_url=platform_url,
        client_id=client_id,
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) else None,
        scope=scope if isinstance(scope, str) else "",
        issued_at=now,
        expires_at=now + float(lifetime),
    )


# -- authlib's client, and what its failures mean --------------------------------------


def oauth_client(
    platform_url: str,
    client_id: str,
    client_secret: str,
    *,
    timeout: float = 30.0,
    redirect_uri: str | None = None,
    update_token: Callable[..., Awaitable[None]] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncOAuth2Client:
    """authlib's httpx client for Core1's token endpoint (client_secret_post, PKCE S256)."""
    # authlib prefers the httpx2 package and warns when it runs on httpx itself, which
    # it supports: the warning would only reach the user's terminal. Its module sets
    # an "always" filter when imported, so it is imported first and overridden here.
    import authlib.deprecate  # noqa: F401

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from authlib.integrations.httpx_client import AsyncOAuth2Client

    client = AsyncOAuth2Client(
        client_id=client_id,
        client_secret=client_secret,
        token_endpoint_auth_method="client_secret_post",  # noqa: S106 (a method name)
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint=token_url(platform_url),
        update_token=update_token,
        timeout=timeout,
        follow_redirects=False,
        event_hooks={"response": [refuse_redirects]},
        headers={"User-Agent": "chanops"},
        transport=transport,
    )
    hook = _token_answer_check(client_secret)
    client.register_compliance_hook("access_token_response", hook)
    client.register_compliance_hook("refresh_token_response", hook)
    return client


def _token_answer_check(client_secret: str) -> Callable[[httpx.Response], httpx.Response]:
    """A compliance hook: a token answer that is not JSON is one clear error, here.

    authlib would raise httpx's HTTPStatusError or a bare ValueError; the user needs the
    status and what the body was (an HTML login page: the platform URL is wrong).
    """

    def check(response: httpx.Response) -> httpx.Response:
        status = response.status_code
        what = f"the token endpoint answered {phrase(status)}"
        body = describe_body(response, (client_secret,))
        if status >= 500:  # noqa: PLR2004 (HTTP status classes)
            raise errors.ServerError(f"{what} with {body}", status=status, code="token_endpoint")
        try:
            decoded = response.json()
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            raise errors.AuthError(f"{what} with {body}, not a JSON token (is the URL right?)")
        return response

    return check


async def token_call(
    call: Awaitable[T], *, client_id: str, secrets: tuple[str, ...], refresh: bool
) -> T:
    """Await a token request of authlib's; its failures as chanops errors.

    `refresh`: an `invalid_grant` then means the refresh token is refused
    (ReauthorizationRequired); for a code exchange it means the code is.
    """
    from authlib.integrations.base_client import OAuthError

    try:
        return await call
    except OAuthError as exc:
        raise _oauth_error(exc.error, exc.description, client_id, secrets, refresh) from None
    except Redirected as exc:
        raise errors.AuthError(
            f"the token endpoint answered {phrase(exc.status)}: redirects are not followed "
            "(is the platform URL right?)"
        ) from None
    except httpx.TimeoutException as exc:
        raise errors.TransportError(
            f"token endpoint{_where(exc)}: timed out ({type(exc).__name__})"
        ) from None
    except httpx.TransportError as exc:
        raise errors.TransportError(
            f"cannot reach the token endpoint{_where(exc)}: {type(exc).__name__}: {exc} "
            "(is the platform URL right, and is it up?)"
        ) from None


def _where(exc: httpx.TransportError) -> str:
    """` <url>` of the request that failed (no query: it carries nothing, but a URL's
    query is no place to print), or nothing if httpx did not attach it."""
    try:
        url = exc.request.url
    except RuntimeError:
        return ""
    return f" {url.copy_with(query=None)}"


def _oauth_error(
    code: str | None,
    description: str | None,
    client_id: str,
    secrets: tuple[str, ...],
    refresh: bool,
) -> errors.PlatformError:
    said = f": {snippet(description, secrets)}" if description else ""
    if code == "invalid_grant" and refresh:
        return errors.ReauthorizationRequired(
            f"the platform refused the refresh token (invalid_grant{said}): "
            "run chanops login to authorise chanops again"
        )
    if code in ("invalid_client", "unauthorized_client"):
        return errors.AuthError(
            f"the platform refused client id {client_id!r} ({code}{said}): "
            "is the client secret right, and is the app registered on this instance?"
        )
    shown = snippet(code or "no error code", secrets, 64)
    return errors.AuthError(f"the token endpoint refused the request ({shown}{said})")


# -- the session ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Awaiting:
    """Awaiting reauthorisation since `since`; the store's set then (None: none at all)."""

    since: float
    reason: str
    stored: TokenSet | None


class OAuthSession:
    """Bearer tokens for one platform client (see the module docstring)."""

    def __init__(  # noqa: PLR0913 (each is a separate setting of the session)
        self,
        *,
        platform_url: str,
        client_id: str,
        client_secret: str,
        store: TokenStore,
        events: EventSink | None = None,
        timeout: float = 30.0,
        recheck_s: float = RECHECK_S,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.platform_url = platform_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._store = store
        self._events = events
        self._recheck_s = recheck_s
        self._clock = clock
        self._oauth = oauth_client(
            self.platform_url,
            client_id,
            client_secret,
            timeout=timeout,
            update_token=self._persist,
            transport=transport,
        )
        self._tokens: TokenSet | None = None
        self._awaiting: _Awaiting | None = None
        self._next_recheck = 0.0
        self._lock = asyncio.Lock()
        self.refreshes = 0  # refreshes this session made (tests, /metrics via events)

    # -- what the client asks -------------------------------------------------------------

    @property
    def awaiting_authorization(self) -> bool:
        return self._awaiting is not None

    @property
    def awaiting_reason(self) -> str | None:
        return self._awaiting.reason if self._awaiting is not None else None

    @property
    def current(self) -> TokenSet | None:
        """The token set in use (None before the first call)."""
        return self._tokens

    @property
    def awaiting_since(self) -> float | None:
        """Since when (unix time) a login has been awaited."""
        return self._awaiting.since if self._awaiting is not None else None

    def secrets(self) -> tuple[str, ...]:
        """Every secret this session holds now, for redacting answers and errors."""
        tokens = self._tokens
        held: tuple[str, ...] = (self._client_secret,)
        if tokens is not None:
            held += (tokens.access_token, tokens.refresh_token or "")
        return tuple(s for s in held if s)

    async def bearer(self) -> str:
        """A valid access token: the current one, or a fresh one past REFRESH_AT."""
        if self._tokens is None or self._awaiting is not None:
            async with self._lock:
                await self._settle()
        tokens = self._current()
        if self._clock() < tokens.refresh_due:
            return tokens.access_token
        async with self._lock:
            if self._awaiting is not None:
                raise errors.ReauthorizationRequired(self._awaiting.reason)
            if self._clock() >= self._current().refresh_due:
                await self._refresh(forced=False)
        return self._current().access_token

    async def rejected(self, access_token: str) -> None:
        """A call got 401 with `access_token`: refresh, unless another call already did."""
        async with self._lock:
            if self._awaiting is not None:
                raise errors.ReauthorizationRequired(self._awaiting.reason)
            if self._current().access_token == access_token:
                await self._refresh(forced=True)

    async def recheck(self) -> bool:
        """While awaiting reauthorisation: look again (the daemon calls this on a timer).

        True once the session has a usable token set again.
        """
        async with self._lock:
            with contextlib.suppress(errors.ReauthorizationRequired, errors.PlatformError):
                await self._settle()
            return self._awaiting is None

    async def aclose(self) -> None:
        await self._oauth.aclose()

    # -- inside the lock ------------------------------------------------------------------

    def _current(self) -> TokenSet:
        if self._tokens is None:  # _settle has run: only a bug gets here
            raise errors.ReauthorizationRequired("no token set loaded")
        return self._tokens

    async def _settle(self) -> None:
        """Load the stored set first time; while awaiting, resume when the store has a
        new one, or (every recheck_s) when the token endpoint takes the refresh token."""
        if self._tokens is None and self._awaiting is None:
            stored = await asyncio.to_thread(self._store.load)
            if stored is None or not self._ours(stored):
                self._await(self._missing(stored), None)
            else:
                self._tokens = stored
                return
        awaiting = self._awaiting
        if awaiting is None:
            return
        stored = await asyncio.to_thread(self._store.load)
        if stored is not None and self._ours(stored) and _newer(stored, awaiting.stored):
            self._tokens = stored
            self._restored("a new token set in the state store")
            return
        now = self._clock()
        if awaiting.stored is None or not awaiting.stored.refresh_token or now < self._next_recheck:
            raise errors.ReauthorizationRequired(awaiting.reason)
        self._next_recheck = now + self._recheck_s
        self._tokens = awaiting.stored
        await self._refresh(forced=True)  # raises again while the grant stays refused
        self._restored("the platform accepted the refresh token again")

    def _ours(self, stored: TokenSet) -> bool:
        return stored.client_id == self.client_id and stored.platform_url == self.platform_url

    def _missing(self, stored: TokenSet | None) -> str:
        where = self._store.where
        if stored is None:
            return f"no OAuth token set in the state store {where}: run chanops login"
        return (
            f"the token set in {where} is for client id {stored.client_id!r} at "
            f"{stored.platform_url}: run chanops login with --client-id {self.client_id} "
            f"--platform {self.platform_url}"
        )

    async def _refresh(self, *, forced: bool) -> None:
        """One refresh, holding the store's exclusive lock; a newer stored set wins."""
        held = self._current()
        async with _in_thread(self._store.exclusive()):
            stored = await asyncio.to_thread(self._store.load)
            if stored is not None and self._ours(stored) and stored.generation > held.generation:
                # Another process refreshed (or logged in) meanwhile: its set is ours.
                self._tokens = stored
                if forced or self._clock() < stored.refresh_due:
                    return
            current = self._current()
            if not current.refresh_token:
                self._await("the token set has no refresh token: run chanops login", current)
                raise errors.ReauthorizationRequired(self._awaiting_reason())
            try:
                await token_call(
                    self._oauth.refresh_token(
                        self._oauth.metadata["token_endpoint"],
                        refresh_token=current.refresh_token,
                    ),
                    client_id=self.client_id,
                    secrets=self.secrets(),
                    refresh=True,
                )
            except errors.ReauthorizationRequired as exc:
                if await self._adopt_newer(current):
                    return  # another process spent the same refresh token first
                self._await(str(exc), current)
                raise
        self.refreshes += 1

    async def _adopt_newer(self, refused: TokenSet) -> bool:
        """After a refusal: a set stored meanwhile by another process (a replica on a
        shared store, which has no refresh lock) is ours, and the refusal is moot."""
        stored = await asyncio.to_thread(self._store.load)
        if stored is None or not self._ours(stored) or stored.generation <= refused.generation:
            return False
        self._tokens = stored
        return True

    async def _persist(self, token: Mapping[str, Any], **_: Any) -> None:
        """authlib's `update_token` hook: store the new set before anyone uses it."""
        previous = self._tokens.refresh_token if self._tokens is not None else None
        fresh = token_set_from(
            token,
            platform_url=self.platform_url,
            client_id=self.client_id,
            now=self._clock(),
            previous_refresh=previous,
        )
        generation = self._tokens.generation if self._tokens is not None else 0
        saved = await asyncio.to_thread(self._store.save, replace(fresh, generation=generation))
        rotated = previous is not None and saved.refresh_token != previous
        self._tokens = saved
        self._emit(
            "auth.refreshed",
            "debug",
            expires_in_s=round(saved.expires_at - saved.issued_at, 3),
            rotated=rotated,
        )

    # -- the streak ----------------------------------------------------------------------

    def _await(self, reason: str, stored: TokenSet | None) -> None:
        if self._awaiting is not None:
            self._awaiting = replace(self._awaiting, stored=stored or self._awaiting.stored)
            return
        self._awaiting = _Awaiting(self._clock(), reason, stored)
        self._next_recheck = self._clock() + self._recheck_s
        self._emit(
            "auth.reauthorization_required",
            "error",
            client_id=self.client_id,
            platform=self.platform_url,
            error=reason,
        )

    def _awaiting_reason(self) -> str:
        return self._awaiting.reason if self._awaiting is not None else "reauthorization required"

    def _restored(self, how: str) -> None:
        awaiting, self._awaiting = self._awaiting, None
        if awaiting is not None:
            self._emit(
                "auth.restored",
                "info",
                client_id=self.client_id,
                reason=how,
                awaited_s=round(self._clock() - awaiting.since, 1),
            )

    def _emit(self, name: str, level: Any, **fields: Any) -> None:
        if self._events is not None:
            self._events.emit(name, level, **fields)


def _newer(stored: TokenSet, seen: TokenSet | None) -> bool:
    """A set written after `seen` by a login (or, with none seen, any set at all)."""
    if seen is None:
        return True
    return stored.login > seen.login


@contextlib.asynccontextmanager
async def _in_thread(lock: contextlib.AbstractContextManager[None]) -> AsyncIterator[None]:
    """Enter a blocking lock off the event loop; leave it when the block ends.

    Cancelled while waiting, the thread still takes the lock; it is let go when the
    context manager is collected (its generator's `finally` closes the lock file).
    """
    await asyncio.to_thread(lock.__enter__)
    try:
        yield
    finally:
        lock.__exit__(None, None, None)
