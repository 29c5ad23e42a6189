"""The OAuth session of the platform client, against an in-process token endpoint.

Pure policy (when to refresh, one refresh at a time, persist before use, 401 -> one
refresh and one retry, a refused grant -> one announcement and no more token requests)
checked with httpx.MockTransport; the real emulator's OAuth server is exercised in
tests/reliability/test_oauth*.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from chanops import errors
from chanops.commands.platform import StateTokens
from chanops.events import Event, EventSink
from chanops.platform.auth import TOKEN_PATH, OAuthSession, TokenSet
from chanops.platform.client import PlatformClient
from chanops.state.store import StateStore

URL = "https://ws.example.com"
SECRET = "client-SECRET-value"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class TokenServer:
    """Core1's token endpoint: rotating refresh tokens, a switch to refuse them."""

    def __init__(self, store: StateTokens) -> None:
        self.store = store
        self.requests: list[dict[str, list[str]]] = []
        self.issued = 0
        self.refuse: str | None = None  # an OAuth error code to answer with
        self.raw: httpx.Response | None = None  # an answer that is no token at all
        self.seen_at_use: list[str | None] = []  # the stored refresh token when each API call came

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            form = parse_qs(request.content.decode())
            self.requests.append(form)
            if self.raw is not None:
                return self.raw
            if self.refuse:
                return httpx.Response(400, json={"error": self.refuse})
            self.issued += 1
            return httpx.Response(
                200,
                json={
                    "access_token": f"at-{self.issued}",
                    "refresh_token": f"rt-{self.issued}",
                    "expires_in": 100,
                    "token_type": "bearer",
                    "scope": "api",
                },
            )
        stored = self.store.load()
        self.seen_at_use.append(stored.access_token if stored else None)
        bearer = request.headers.get("Authorization", "")
        if bearer.endswith("-revoked"):
            return httpx.Response(401, json={"error": "invalid_token", "message": "expired"})
        return httpx.Response(200, json={"items": [], "next_cursor": None})


@pytest.fixture
def setup(tmp_path: Path) -> tuple[StateTokens, Clock, TokenServer, list[Event]]:
    StateStore.open(tmp_path / "state.db").close()
    store = StateTokens(StateStore.open(tmp_path / "state.db", readonly=True))
    clock = Clock()
    store.save(_set(clock.now, "at-0", "rt-0"), login=True)
    return store, clock, TokenServer(store), []


def _set(now: float, access: str, refresh: str, client_id: str = "chanops") -> TokenSet:
    return TokenSet(
        platform_url=URL,
        client_id=client_id,
        access_token=access,
        refresh_token=refresh,
        scope="api",
        issued_at=now,
        expires_at=now + 100,
    )


def _client(
    store: StateTokens, clock: Clock, server: TokenServer, events: list[Event]
) -> tuple[PlatformClient, OAuthSession]:
    transport = httpx.MockTransport(server)
    session = OAuthSession(
        platform_url=URL,
        client_id="chanops",
        client_secret=SECRET,
        store=store,
        events=EventSink(events.append),
        clock=clock,
        transport=transport,
        recheck_s=60,
    )
    http = httpx.AsyncClient(base_url=URL, transport=transport)
    return PlatformClient(http, auth=session, max_retries=2), session


def _names(events: list[Event]) -> list[str]:
    return [e.name for e in events if e.name.startswith("auth.") and e.name != "auth.refreshed"]


Setup = tuple[StateTokens, Clock, TokenServer, list[Event]]


def run(coro: Callable[[], object]) -> None:
    asyncio.run(coro())  # type: ignore[arg-type]


def test_the_stored_token_is_used_until_80_percent_of_its_lifetime(setup: Setup) -> None:
    store, clock, server, _events = setup

    async def main() -> None:
        client, _ = _client(*setup)
        async with client:
            clock.now += 79
            await client.list_connections()
            assert server.requests == []
            clock.now += 2  # 81 % of 100 s
            await client.list_connections()
        assert len(server.requests) == 1
        form = server.requests[0]
        assert form["grant_type"] == ["refresh_token"]
        assert form["refresh_token"] == ["rt-0"]
        assert form["client_id"] == ["chanops"]
        assert form["client_secret"] == [SECRET]

    run(main)
    stored = store.load()
    assert stored is not None and (stored.access_token, stored.refresh_token) == ("at-1", "rt-1")


def test_the_new_refresh_token_is_stored_before_the_new_access_token_is_used(setup: Setup) -> None:
    _store, clock, server, _events = setup

    async def main() -> None:
        client, _ = _client(*setup)
        async with client:
            for _ in range(3):
                clock.now += 90
                await client.list_connections()

    run(main)
    # Every API call found the access token it carried already in the store.
    assert server.seen_at_use == ["at-1", "at-2", "at-3"]


def test_one_refresh_however_many_calls_are_in_flight(setup: Setup) -> None:
    _store, clock, server, _events = setup

    async def main() -> None:
        client, session = _client(*setup)
        async with client:
            clock.now += 95
            await asyncio.gather(*(client.list_connections() for _ in range(25)))
            assert session.refreshes == 1

    run(main)
    assert len(server.requests) == 1


def test_a_401_refreshes_once_and_retries_the_call_once(setup: Setup) -> None:
    store, clock, server, _events = setup
    store.save(_set(clock.now, "at-revoked", "rt-0"))

    async def main() -> None:
        client, _ = _client(*setup)
        async with client:
            assert await client.list_connections() == []

    run(main)
    assert len(server.requests) == 1
    assert server.seen_at_use == ["at-revoked", "at-1"]


def test_a_second_401_surfaces_as_unauthorized(setup: Setup) -> None:
    store, clock, server, _events = setup
    store.save(_set(clock.now, "at-revoked", "rt-0"))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            server.requests.append({})
            return httpx.Response(200, json={"access_token": "again-revoked", "expires_in": 100})
        return httpx.Response(401, json={"error": "invalid_token", "message": "no"})

    async def main() -> None:
        transport = httpx.MockTransport(answer)
        session = OAuthSession(
            platform_url=URL,
            client_id="chanops",
            client_secret=SECRET,
            store=store,
            clock=clock,
            transport=transport,
        )
        client = PlatformClient(httpx.AsyncClient(base_url=URL, transport=transport), auth=session)
        async with client:
            with pytest.raises(errors.Unauthorized):
                await client.list_connections()

    run(main)
    assert len(server.requests) == 1  # one refresh, not a loop


def test_a_refused_refresh_is_announced_once_and_stops_token_requests(setup: Setup) -> None:
    store, clock, server, events = setup
    server.refuse = "invalid_grant"

    async def main() -> None:
        client, session = _client(*setup)
        async with client:
            clock.now += 90
            for _ in range(5):
                with pytest.raises(errors.ReauthorizationRequired, match="chanops login"):
                    await client.list_connections()
            assert session.awaiting_authorization
            assert len(server.requests) == 1
            assert _names(events) == ["auth.reauthorization_required"]
            # A person logs in (chanops login writes a new set into the same store).
            server.refuse = None
            store.save(_set(clock.now, "at-login", "rt-login"), login=True)
            assert await session.recheck()
            await client.list_connections()
        assert server.seen_at_use[-1] == "at-login"
        assert _names(events) == ["auth.reauthorization_required", "auth.restored"]

    run(main)


def test_a_refused_grant_is_retried_only_every_recheck_interval(setup: Setup) -> None:
    _store, clock, server, events = setup
    server.refuse = "invalid_grant"

    async def main() -> None:
        client, session = _client(*setup)
        async with client:
            clock.now += 90
            with pytest.raises(errors.ReauthorizationRequired):
                await client.list_connections()
            for _ in range(10):
                clock.now += 10
                assert not await session.recheck()
            # 100 s at a recheck interval of 60 s: one more token request.
            assert len(server.requests) == 2
            server.refuse = None
            clock.now += 60
            assert await session.recheck()

    run(main)
    assert _names(events) == ["auth.reauthorization_required", "auth.restored"]


def test_no_token_set_is_a_clear_reauthorization(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    StateStore.open(state).close()
    store = StateTokens(StateStore.open(state, readonly=True))

    async def main() -> None:
        session = OAuthSession(
            platform_url=URL, client_id="chanops", client_secret=SECRET, store=store
        )
        with pytest.raises(errors.ReauthorizationRequired, match="no OAuth token set"):
            await session.bearer()
        store.save(_set(1e12, "at-x", "rt-x", client_id="other"), login=True)
        with pytest.raises(errors.ReauthorizationRequired):
            await session.bearer()
        await session.aclose()

    run(main)


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (
            httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"}),
            errors.AuthError,
            "200 OK with a text/html body: '<html>login</html>', not a JSON token",
        ),
        (
            httpx.Response(400, json={"error": "invalid_client"}),
            errors.AuthError,
            "refused client id 'chanops' (invalid_client)",
        ),
        (
            httpx.Response(500, text="oops"),
            errors.ServerError,
            "the token endpoint answered 500 Internal Server Error",
        ),
    ],
)
def test_a_token_endpoint_failure_is_one_clear_error(
    setup: Setup, answer: httpx.Response, error: type[Exception], message: str
) -> None:
    _store, clock, server, _events = setup
    server.raw = answer

    async def main() -> None:
        client, _ = _client(*setup)
        async with client:
            clock.now += 90
            with pytest.raises(error) as caught:
                await client.list_connections()
        text = str(caught.value)
        assert message in text
        assert "\n" not in text
        assert SECRET not in text

    run(main)


def test_nothing_the_session_emits_holds_a_token_or_the_secret(setup: Setup) -> None:
    _store, clock, server, events = setup

    async def main() -> None:
        client, _ = _client(*setup)
        async with client:
            for _ in range(3):
                clock.now += 90
                await client.list_connections()
            server.refuse = "invalid_grant"
            clock.now += 90
            with pytest.raises(errors.ReauthorizationRequired):
                await client.list_connections()

    run(main)
    text = json.dumps([[e.name, dict(e.fields)] for e in events])
    assert "auth.refreshed" in text
    for secret in (SECRET, "at-1", "rt-1", "at-3", "rt-3", "rt-0"):
        assert secret not in text


def test_a_refusal_after_another_process_refreshed_takes_its_set(setup: Setup) -> None:
    """Two processes spend the same rotating refresh token: the loser takes the set the
    winner stored instead of asking for a login (a shared store has no refresh lock)."""
    store, clock, server, events = setup

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            server.requests.append({})
            # The other process won the race and stored its set a moment ago.
            store.save(_set(clock.now, "at-other", "rt-other"))
            return httpx.Response(400, json={"error": "invalid_grant"})
        return server(request)

    async def main() -> None:
        transport = httpx.MockTransport(answer)
        session = OAuthSession(
            platform_url=URL,
            client_id="chanops",
            client_secret=SECRET,
            store=store,
            events=EventSink(events.append),
            clock=clock,
            transport=transport,
        )
        client = PlatformClient(httpx.AsyncClient(base_url=URL, transport=transport), auth=session)
        async with client:
            clock.now += 90
            await client.list_connections()
            assert not session.awaiting_authorization

    run(main)
    assert server.seen_at_use == ["at-other"]
    assert _names(events) == []


def test_a_refresh_cancelled_while_waiting_for_the_lock_lets_it_go(setup: Setup) -> None:
    """Another process holds the refresh lock; the waiting refresh is cancelled (the
    daemon stops): once the lock comes free, this process must not keep it."""
    import fcntl
    import os
    import threading

    from chanops.state.tokens import refresh_lock

    store, clock, server, _events = setup
    held = threading.Event()
    release = threading.Event()

    def other_process() -> None:
        with refresh_lock(Path(store.where)):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=other_process)
    holder.start()
    held.wait(5)

    async def main() -> None:
        client, _ = _client(*setup)
        async with client:
            clock.now += 90
            call = asyncio.ensure_future(client.list_connections())
            await asyncio.sleep(0.3)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            release.set()
            await asyncio.to_thread(holder.join, 5)
            await asyncio.sleep(0.3)  # the waiting thread takes the lock, then lets it go

    run(main)
    fd = os.open(Path(store.where).with_name("state.db.oauth-lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
    finally:
        os.close(fd)
    assert server.requests == []
