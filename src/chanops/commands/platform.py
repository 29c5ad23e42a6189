"""The platform a command talks to: a remote URL, or `local:PATH` served in this process.

`local:PATH` is the bundled emulator over SQLite at PATH, reached through httpx's ASGI
transport, with a warning that nothing reaches a real platform. It is built here, at
the edge, so the platform layer never imports the emulator.

With an OAuth client (`--client-id`, `--client-secret-file`) the client takes its
bearer tokens from an `OAuthSession` over the token set in the state store
(`StateTokens`, the bridge between the platform and state layers).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from chanops import errors
from chanops.events import EventSink
from chanops.platform.auth import RECHECK_S, OAuthSession, TokenSet
from chanops.platform.client import OnRequest, PlatformClient, open_client

if TYPE_CHECKING:
    from chanops.config import Settings
    from chanops.rpcprofile import Profile
    from chanops.state.protocol import Store
    from chanops.state.tokens import StoredTokens

# The logger of the platform client: `platform.local` is the client's own warning.
log = structlog.get_logger("chanops.platform")

LOCAL_TOKEN = "local-emulator"  # noqa: S105 (in-process emulator, not a secret)


class StateTokens:
    """The token set in a state store, as the OAuth session's TokenStore.

    Either backend keeps it outside its writer lock (SQLite) or lease (PostgreSQL), so
    a read-only command and `chanops login` save it beside a running daemon. With
    SQLite a lock file beside the database also keeps two processes from refreshing
    at once.
    """

    def __init__(self, store: Store) -> None:
        from chanops.state.factory import is_postgres

        self.store = store
        self.where = store.location
        location = store.location
        self._lock_path = None if is_postgres(location) else Path(location)

    def load(self) -> TokenSet | None:
        stored = self.store.tokens()
        return None if stored is None else TokenSet(**_fields(stored))

    def save(self, tokens: TokenSet, *, login: bool = False) -> TokenSet:
        from chanops.state.tokens import StoredTokens

        saved = self.store.save_tokens(StoredTokens(**_fields(tokens)), login=login)
        return TokenSet(**_fields(saved))

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        from chanops.state.tokens import refresh_lock

        if self._lock_path is None:
            return contextlib.nullcontext()
        return refresh_lock(self._lock_path)


def _fields(tokens: TokenSet | StoredTokens) -> dict[str, Any]:
    """A token set's fields by name (TokenSet and StoredTokens have the same ones)."""
    return {f.name: getattr(tokens, f.name) for f in dataclasses.fields(tokens)}


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """The OAuth client chanops is registered as, and the store its token set lives in."""

    client_id: str
    client_secret: str = dataclasses.field(repr=False)
    store: Store
    recheck_s: float = RECHECK_S  # the daemon's look at a refused grant, every so often


def oauth_from(
    settings: Settings, store: Store, *, recheck_s: float = RECHECK_S
) -> OAuthClient | None:
    """The OAuth client the settings name (--client-id), over `store`'s token set."""
    platform = settings.platform
    if platform.client_id is None or platform.client_secret is None:
        return None
    return OAuthClient(platform.client_id, platform.client_secret, store, recheck_s)


def oauth_session(
    url: str, oauth: OAuthClient, *, events: EventSink | None = None, timeout: float = 30.0
) -> OAuthSession:
    return OAuthSession(
        platform_url=url,
        client_id=oauth.client_id,
        client_secret=oauth.client_secret,
        store=StateTokens(oauth.store),
        events=events,
        timeout=timeout,
        recheck_s=oauth.recheck_s,
    )


def _local_only(oauth: OAuthClient | None, profile: Profile | None) -> None:
    """The embedded emulator is reached over REST with its own token: refuse the rest."""
    if profile is not None:
        raise errors.ConfigError(
            "--profile core1 needs a remote platform (--platform https://...): the "
            "embedded emulator is reached over REST"
        )
    if oauth is not None:
        raise errors.ConfigError(
            "--client-id needs a remote platform (--platform https://...): the embedded "
            "emulator takes no OAuth"
        )


def open_platform(
    url: str,
    token: str | None,
    *,
    concurrency: int = 16,
    rate_limit: float | None = None,
    timeout: float = 30.0,
    max_retries: int = 6,
    on_request: OnRequest | None = None,
    events: EventSink | None = None,
    oauth: OAuthClient | None = None,
    auth_events: EventSink | None = None,
    profile: Profile | None = None,
) -> PlatformClient:
    """`open_client(url, token, ...)`, with `local:PATH` served by the bundled emulator.

    `oauth`: bearer tokens from the state store's token set instead of `token`;
    `auth_events`: where the session announces `auth.*` (the daemon's sink; a one-shot
    command reports the error itself); `profile`: Core1's RPC convention instead of REST.
    """
    if url.startswith("local:"):
        _local_only(oauth, profile)
    else:
        auth = oauth_session(url, oauth, events=auth_events, timeout=timeout) if oauth else None
        return open_client(
            url,
            token,
            concurrency=concurrency,
            rate_limit=rate_limit,
            timeout=timeout,
            max_retries=max_retries,
            on_request=on_request,
            events=events,
            auth=auth,
            profile=profile,
        )
    path = url[len("local:") :]
    if not path:
        raise errors.ConfigError(
            "platform URL local: needs a path, e.g. local:.chanops/platform.db"
        )
    # Imported here: a remote platform never loads the emulator (Starlette, SQLite).
    import httpx

    from chanops.emulator.app import create_app
    from chanops.platform.client import InProcess, open_in_process

    if path != ":memory:":
        # 0700 like the state directory it usually shares (.chanops/): a `plan` run
        # before the first `apply` must not create it readable by everyone.
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    local_token = token or LOCAL_TOKEN
    app = create_app(db=path, token=local_token, request_log_level="debug")
    log.warning(
        "platform.local",
        message="no remote platform is configured: using the embedded emulator "
        "(nothing reaches a real platform)",
        db=path,
    )
    server = InProcess(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        token=local_token,
        close=app.state.platform.close,
    )
    return open_in_process(
        server,
        concurrency=concurrency,
        rate_limit=rate_limit,
        timeout=timeout,
        max_retries=max_retries,
        on_request=on_request,
        events=events,
    )
