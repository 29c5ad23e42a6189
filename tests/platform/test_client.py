"""The platform client against the real emulator over HTTP (and in-process for local:)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog

from chanops import errors
from chanops.platform.api import between_pages
from chanops.platform.client import open_client
from chanops.platform.models import Connection
from support.emulator import EmulatorProcess, start_emulator

SW6 = {"url": "https://shop.example.com", "accessKeyId": "SWIA1", "secretAccessKey": "s3cret"}


async def wait_done(client: Any, job_id: int) -> Any:
    for _ in range(2000):
        job = await client.get_job(job_id)
        if job.done:
            return job
        await asyncio.sleep(0.005)
    raise AssertionError(f"job {job_id} never finished")


async def test_typed_results_and_secrets_hidden(emulator: EmulatorProcess) -> None:
    async with open_client(emulator.url, emulator.token) as client:
        drivers = {d.name: d for d in await client.list_drivers()}
        assert drivers["shopify"].creatable is False and drivers["shopware6"].creatable
        res = await client.create_connection(
            name="de", driver="shopware6", credentials=SW6, automation={"orderDownload": "5m"}
        )
        assert isinstance(res.connection, Connection)
        assert res.connection.credentials["secretAccessKey"] is None
        assert res.connection.automation["orderDownload"] == "5m"
        assert res.initial_job is not None and res.initial_job.kind == "initial_sync"
        job = await wait_done(client, res.initial_job.id)
        assert job.state == "succeeded" and job.progress == 100
        sync = await client.trigger_sync(res.connection.id)
        assert sync.kind == "sync"
        assert [j.id for j in await client.list_jobs(connection_id=res.connection.id)] == [
            res.initial_job.id,
            sync.id,
        ]


@pytest.mark.parametrize(
    ("kwargs", "exc", "field"),
    [
        ({"driver": "shopify", "credentials": {}}, errors.NotCreatable, "driver"),
        (
            {"driver": "shopware6", "credentials": {**SW6, "secretAccessKey": "invalid"}},
            errors.InvalidCredentials,
            "credentials.secretAccessKey",
        ),
        (
            {
                "driver": "amazon",
                "credentials": {"sellerId": "A", "marketplace": "DE", "accessToken": "t"},
            },
            errors.ImmutableField,
            "credentials.accessToken",
        ),
    ],
)
async def test_each_error_code_has_its_exception(
    emulator: EmulatorProcess, kwargs: dict[str, Any], exc: type[errors.APIError], field: str
) -> None:
    calls: list[tuple[str, int, float]] = []
    async with open_client(
        emulator.url, emulator.token, on_request=lambda m, s, t: calls.append((m, s, t))
    ) as client:
        with pytest.raises(exc) as info:
            await client.create_connection(name="x", **kwargs)
    assert info.value.field == field and info.value.status == 422
    assert [(m, s) for m, s, _ in calls] == [("POST", 422)]  # 4xx: never retried


async def test_rule_errors_map_to_their_classes(tmp_path: Path) -> None:
    with start_emulator(tmp_path, drivers=["shopware6"], time_scale=0.1) as emu:
        async with open_client(emu.url, emu.token) as client:
            with pytest.raises(errors.DriverNotInstalled):
                await client.create_connection(name="x", driver="magento2", credentials={})
            res = await client.create_connection(name="x", driver="shopware6", credentials=SW6)
            cid = res.connection.id
            with pytest.raises(errors.UnknownValue):
                await client.update_connection(cid, {"settings": {"defaultLanguage": "de"}})
            with pytest.raises(errors.Conflict) as conflict:
                await client.delete_connection(cid)
            assert conflict.value.code == "connection_active"
            updated = await client.update_connection(cid, {"name": "y"}, if_match=1)
            assert updated.version == 2
            with pytest.raises(errors.PreconditionFailed):
                await client.update_connection(cid, {"name": "z"}, if_match=1)
            assert res.initial_job is not None
            await wait_done(client, res.initial_job.id)
            await client.update_connection(cid, {"settings": {"priceRules": ["r1"]}})
            await wait_done(client, (await client.trigger_sync(cid)).id)
            with pytest.raises(errors.LockedSetting):
                await client.update_connection(cid, {"settings": {"priceRules": None}})
            with pytest.raises(errors.NotFound):
                await client.get_connection(424242)
        async with open_client(emu.url, "wrong") as bad:
            with pytest.raises(errors.Forbidden):
                await bad.list_connections()


async def test_pagination_is_followed(emulator: EmulatorProcess) -> None:
    for i in range(5):
        emulator.admin.marketplace_install("actindo-pos", f"pos-{i}")
    async with open_client(emulator.url, emulator.token) as client:
        client.page_size = 2
        conns = await client.list_connections()
        assert [c.name for c in conns] == [f"pos-{i}" for i in range(5)]
        disabled = await client.disable([c.id for c in conns])
        assert {c.status for c in disabled} == {"inactive"} and len(disabled) == 5
    stats = emulator.admin.stats()
    assert stats["GET /api/v1/connections"] == 3
    assert stats["POST /api/v1/connections/disable"] == 3


async def test_a_listing_awaits_between_pages_what_its_context_sets(
    emulator: EmulatorProcess,
) -> None:
    """The daemon's resync listing is background work: `between_pages`, set in the
    listing task's context, is awaited between two pages (never after the last one),
    and a listing started outside that context does not see it."""
    for i in range(5):
        emulator.admin.marketplace_install("actindo-pos", f"pos-{i}")
    turned: list[int] = []
    async with open_client(emulator.url, emulator.token) as client:
        client.page_size = 2

        async def pause() -> None:
            turned.append(emulator.admin.stats()["GET /api/v1/connections"])

        token = between_pages.set(pause)
        try:
            listing = asyncio.ensure_future(client.list_connections())
        finally:
            between_pages.reset(token)
        assert len(await listing) == 5
        assert turned == [1, 2]  # after the first and the second of three pages
        assert len(await client.list_connections()) == 5
        assert turned == [1, 2]


async def test_remote_url_without_token_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="no platform token"):
        open_client("https://platform.example.com", None)
    with pytest.raises(errors.ConfigError, match="must start with"):
        open_client("ftp://platform.example.com", "t")


async def test_local_url_runs_the_emulator_in_process(tmp_path: Path) -> None:
    from chanops.commands.platform import open_platform

    db = tmp_path / "nested" / "platform.db"
    with structlog.testing.capture_logs() as logs:
        client = open_platform(f"local:{db}", None)
    async with client:
        res = await client.create_connection(name="local", driver="shopware6", credentials=SW6)
    assert db.exists()
    assert any(e["event"] == "platform.local" and e["log_level"] == "warning" for e in logs)
    async with open_platform(f"local:{db}", None) as again:
        assert [c.id for c in await again.list_connections()] == [res.connection.id]
    with pytest.raises(errors.ConfigError, match="needs a path"):
        open_platform("local:", None)


def test_the_platform_package_does_not_load_the_emulator() -> None:
    """A remote platform never pays for Starlette and SQLite (the command line builds
    `local:` and hands the client its transport)."""
    import subprocess
    import sys

    code = (
        "import sys, chanops.platform.client as c; "
        "c.open_client('https://platform.example.com', 't'); "
        "print(sorted(m for m in sys.modules if m.startswith(('chanops.emulator', 'starlette'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


async def test_restart_keeps_state_and_jobs_finish_while_down(tmp_path: Path) -> None:
    with start_emulator(tmp_path, time_scale=0.1) as emu:
        async with open_client(emu.url, emu.token) as client:
            res = await client.create_connection(name="keep", driver="shopware6", credentials=SW6)
        emu.kill()  # a crash: committed state must survive
        await asyncio.sleep(0.4)
        emu.start()
        async with open_client(emu.url, emu.token) as client:
            conn = await client.get_connection(res.connection.id)
            assert conn.name == "keep" and conn.version == 1
            assert res.initial_job is not None
            assert (await client.get_job(res.initial_job.id)).state == "succeeded"
        emu.stop()
        emu.start()
        assert emu.admin.connection(res.connection.id)["name"] == "keep"


async def test_converges_under_errors_and_rate_limit(tmp_path: Path) -> None:
    """error_rate=0.3 and rate_limit=50/s: every operation lands exactly once."""
    n = 20
    with start_emulator(
        tmp_path, time_scale=0.01, faults="error_rate=0.3,rate_limit=50/s,seed=7"
    ) as emu:
        statuses: list[int] = []
        with structlog.testing.capture_logs() as logs:
            async with open_client(
                emu.url,
                emu.token,
                max_retries=12,
                on_request=lambda m, s, t: statuses.append(s),
            ) as client:
                created = await asyncio.gather(
                    *(
                        client.create_connection(name=f"c{i}", driver="shopware6", credentials=SW6)
                        for i in range(n)
                    )
                )
                ids = [r.connection.id for r in created]
                patched = await asyncio.gather(
                    *(
                        client.update_connection(
                            r.connection.id,
                            {"name": f"c{i}-renamed"},
                            if_match=r.connection.version,
                        )
                        for i, r in enumerate(created)
                    )
                )
                assert {p.version for p in patched} == {2}
                await client.disable(ids[: n // 2])
                jobs = await asyncio.gather(*(client.delete_connection(i) for i in ids[: n // 2]))
                assert {j.kind for j in jobs} == {"delete"}
                listed = await client.list_connections()
        assert 500 in statuses or 502 in statuses or 503 in statuses
        remaining = emu.admin.connections()
        names = sorted(c["name"] for c in remaining if c["status"] != "deleting")
        assert names == sorted(f"c{i}-renamed" for i in range(n // 2, n))
        assert len({c.id for c in listed}) == len(listed)
        # nothing doubled: exactly n connections were ever created (one initial sync each)
        jobs_page = emu.admin.get("/api/v1/jobs", params={"limit": 500})["items"]
        assert sum(j["kind"] == "initial_sync" for j in jobs_page) == n
        retries = [e for e in logs if e["event"] == "platform.retry"]
        assert retries and all(
            {"method", "path", "attempt", "delay_s", "error"} <= set(e) for e in retries
        )
        assert emu.token not in repr(logs)
        assert "applied" in emu.logs()  # the emulator says whether each fault applied


async def test_connection_resets_are_retried(tmp_path: Path) -> None:
    with start_emulator(tmp_path, faults="reset_rate=0.3,seed=3") as emu:
        statuses: list[int] = []
        async with open_client(
            emu.url, emu.token, max_retries=12, on_request=lambda m, s, t: statuses.append(s)
        ) as client:
            results = await asyncio.gather(
                *(
                    client.create_connection(name=f"r{i}", driver="shopware6", credentials=SW6)
                    for i in range(10)
                )
            )
        assert 0 in statuses  # transport errors were seen ...
        assert len({r.connection.id for r in results}) == 10
        assert len(emu.admin.connections()) == 10  # ... and nothing was doubled


async def test_retry_after_is_honoured_and_limiter_avoids_429(tmp_path: Path) -> None:
    with start_emulator(tmp_path, faults="rate_limit=5/s") as emu:
        unpaced: list[int] = []
        with structlog.testing.capture_logs() as logs:
            async with open_client(
                emu.url, emu.token, on_request=lambda m, s, t: unpaced.append(s)
            ) as client:
                await asyncio.gather(*(client.list_drivers() for _ in range(8)))
        assert 429 in unpaced
        waits = [e["delay_s"] for e in logs if e["event"] == "platform.retry"]
        assert waits and min(waits) >= 1  # the server's Retry-After, not a short backoff
        await asyncio.sleep(1.2)  # let the server's bucket refill
        paced: list[int] = []
        async with open_client(
            emu.url, emu.token, rate_limit=5, on_request=lambda m, s, t: paced.append(s)
        ) as client:
            await asyncio.gather(*(client.list_drivers() for _ in range(8)))
        assert paced == [200] * 8


async def test_non_retryable_errors_stop_at_once_and_5xx_gives_up(tmp_path: Path) -> None:
    with start_emulator(tmp_path, faults="error_rate=1,seed=1") as emu:
        calls: list[int] = []
        async with open_client(
            emu.url, emu.token, max_retries=2, on_request=lambda m, s, t: calls.append(s)
        ) as client:
            client.rng.seed(0)
            with pytest.raises(errors.ServerError):
                await client.list_drivers()
        assert len(calls) == 3 and all(s >= 500 for s in calls)


@pytest.mark.slow
async def test_chaos_every_fault_at_once(tmp_path: Path) -> None:
    """The long form: 100 connections through latency, errors, resets and a rate limit."""
    n = 100
    faults = "latency=5ms,jitter=5ms,error_rate=0.3,reset_rate=0.05,rate_limit=50/s,seed=11"
    with start_emulator(tmp_path, faults=faults) as emu:
        async with open_client(emu.url, emu.token, max_retries=15, rate_limit=45) as client:
            created = await asyncio.gather(
                *(
                    client.create_connection(name=f"x{i}", driver="shopware6", credentials=SW6)
                    for i in range(n)
                )
            )
            await asyncio.gather(
                *(
                    client.update_connection(
                        r.connection.id,
                        {"settings": {"klarna": True}},
                        if_match=r.connection.version,
                    )
                    for r in created
                )
            )
            await client.disable([r.connection.id for r in created])
            listed = await client.list_connections()
        assert len(listed) == n
        assert all(c.status == "inactive" and c.settings == {"klarna": True} for c in listed)
        assert {c.version for c in listed} == {3}


async def test_timeouts_are_retried_then_raised_as_transport_errors(tmp_path: Path) -> None:
    with start_emulator(tmp_path, faults="latency=400ms") as emu:
        calls: list[int] = []
        async with open_client(
            emu.url,
            emu.token,
            timeout=0.1,
            max_retries=1,
            on_request=lambda m, s, t: calls.append(s),
        ) as client:
            with pytest.raises(errors.TransportError, match="timed out"):
                await client.list_drivers()
        assert calls == [0, 0]  # one retry; status 0 = no answer


async def test_an_outage_opens_the_breaker_and_warns_once(emulator: EmulatorProcess) -> None:
    """Platform gone: one `platform.retry` warning, then every call fails fast, no retries."""
    attempts: list[int] = []
    async with open_client(
        emulator.url, emulator.token, on_request=lambda m, status, s: attempts.append(status)
    ) as client:
        await client.list_drivers()
        emulator.kill()
        attempts.clear()
        with structlog.testing.capture_logs() as logs:
            results = await asyncio.gather(
                *(client.get_connection(i) for i in range(1, 21)), return_exceptions=True
            )
        assert all(isinstance(r, errors.TransportError) for r in results), results
        assert any(isinstance(r, errors.PlatformUnavailable) for r in results)
        # 20 calls with 6 retries each would be 140 attempts; the breaker stops that.
        assert len(attempts) < 40, len(attempts)
        assert set(attempts) == {0}
        warnings = [
            e for e in logs if e["event"] == "platform.retry" and e["log_level"] == "warning"
        ]
        assert len(warnings) == 1
        emulator.start()
        assert [d.name for d in await client.list_drivers()]  # an answer closes the breaker
        assert not client.breaker_open


# -- answers that are not the contract's, from a real server ---------------------------

TOKEN = "tok-3f9a1c77e2"  # recognisable, so a test can tell that it never leaks
CONN = {
    "id": 1,
    "name": "de",
    "driver": "shopware6",
    "status": "active",
    "has_order_errors": False,
    "created_at": "2026-11-27T02:41:56.395Z",
    "updated_at": "2026-11-27T02:41:56.395Z",
    "version": 1,
    "credentials": {"url": "https://shop.example.com", "secretAccessKey": None},
    "settings": {},
    "automation": {"orderDownload": "5m", "returnDownload": "never"},
    "authorization": None,
}
Answer = tuple[int, dict[str, str], bytes]


class Scripted:
    """A real HTTP server on 127.0.0.1 that answers what the test's `answer` returns.

    `answer(method, path, n)` gets the request's method, path (with query) and how many
    requests came before it; every request is recorded with its headers.
    """

    def __init__(self, answer: Any) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                n = len(outer.requests)
                outer.requests.append((self.command, self.path, dict(self.headers)))
                status, headers, body = answer(self.command, self.path, n)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def json_answer(body: Any, status: int = 200) -> Answer:
    import json

    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def html_answer(status: int, text: str = "<html><body>Sign in</body></html>") -> Answer:
    return status, {"Content-Type": "text/html; charset=utf-8"}, text.encode()


@pytest.fixture
def scripted() -> Any:
    servers: list[Scripted] = []

    def start(answer: Any) -> Scripted:
        servers.append(Scripted(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


async def test_a_redirect_is_an_error_and_is_never_followed(scripted: Any) -> None:
    trap = scripted(lambda m, p, n: json_answer({"items": [], "next_cursor": None}))
    platform = scripted(lambda m, p, n: (307, {"Location": f"{trap.url}{p}"}, b""))
    async with open_client(platform.url, TOKEN) as client:
        with pytest.raises(errors.APIError) as listing:
            await client.list_connections()
        with pytest.raises(errors.APIError) as create:
            await client.create_connection(name="x", driver="shopware6", credentials=SW6)
    assert listing.value.status == 307 and listing.value.code == "unexpected_redirect"
    assert not listing.value.retryable
    assert "GET /api/v1/connections: the platform answered 307 Temporary Redirect" in str(
        listing.value
    )
    assert f"to '{trap.url}/api/v1/connections" in str(listing.value)
    assert "POST /api/v1/connections: the platform answered 307" in str(create.value)
    assert len(platform.requests) == 2  # one attempt each: a redirect is not retried
    assert trap.requests == []  # neither the token nor the write went to the other host


async def test_a_garbled_2xx_is_retried_like_a_5xx_then_raised(scripted: Any) -> None:
    platform = scripted(lambda m, p, n: html_answer(200))
    async with open_client(platform.url, TOKEN, max_retries=2) as client:
        client.rng.seed(0)
        with pytest.raises(errors.ServerError) as info:
            await client.list_drivers()
    assert len(platform.requests) == 3  # the retry policy of a 5xx, then it gives up
    assert info.value.status == 200 and info.value.code == "invalid_response"
    assert str(info.value) == (
        "invalid_response: GET /api/v1/drivers: the platform answered 200 OK with a "
        "text/html body: '<html><body>Sign in</body></html>', not JSON"
    )
    # ... and one garbled answer in a row of good ones costs a retry, not the call
    healed = scripted(
        lambda m, p, n: html_answer(200) if n == 0 else json_answer({"items": [CONN]})
    )
    async with open_client(healed.url, TOKEN) as client:
        client.rng.seed(0)
        assert [c.id for c in await client.enable([1])] == [1]
    assert [m for m, _, _ in healed.requests] == ["POST", "POST"]
    keys = {h["Idempotency-Key"] for _, _, h in healed.requests}
    assert len(keys) == 1  # the retried write replays, it is not applied twice


def _conn(**changes: Any) -> dict[str, Any]:
    return {**CONN, **changes}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"items": "x", "next_cursor": None}, "items: expected an array, got a string"),
        ([CONN], "body: expected an object, got an array"),
        ({"next_cursor": None}, "items: expected an array, got nothing (missing)"),
        ({"items": [CONN, "x"]}, "items[1]: expected an object, got a string"),
        ({"items": [_conn(id="1")]}, "items[0].id: expected a positive integer, got a string"),
        ({"items": [_conn(id=True)]}, "items[0].id: expected a positive integer, got a boolean"),
        ({"items": [_conn(id=0)]}, "items[0].id: expected a positive integer, got a number"),
        ({"items": [_conn(name=None)]}, "items[0].name: expected a string, got null"),
        (
            {"items": [_conn(status="paused")]},
            "items[0].status: expected one of active, deleting, inactive, got 'paused'",
        ),
        ({"items": [_conn(status=["x"])]}, "items[0].status: expected one of"),
        ({"items": [_conn(credentials="s")]}, "items[0].credentials: expected an object"),
        ({"items": [_conn(automation={"orderDownload": 5})]}, "automation.orderDownload"),
        ({"items": [_conn(has_order_errors="no")]}, "has_order_errors: expected a boolean"),
        ({"items": [], "next_cursor": 5}, "body.next_cursor: expected a string or null"),
    ],
)
async def test_a_listing_of_the_wrong_shape_names_what_is_wrong(
    scripted: Any, body: Any, problem: str
) -> None:
    platform = scripted(lambda m, p, n: json_answer(body))
    async with open_client(platform.url, TOKEN, max_retries=0) as client:
        with pytest.raises(errors.ServerError) as info:
            await client.list_connections()
    message = str(info.value)
    assert message.startswith(
        "invalid_response: GET /api/v1/connections: the platform answered 200 OK with "
        "JSON that is not the contract's ("
    ), message
    assert problem in message


@pytest.mark.parametrize(
    ("call", "body", "problem"),
    [
        ("get_job", {"id": 1, "kind": "sync", "connection_id": 1}, "job.state: expected one of"),
        ("get_job", {**dict.fromkeys(("id", "connection_id"), 1), "kind": "x"}, "job.kind"),
        ("get_connection", {"items": [CONN]}, "connection.id: expected a positive integer"),
        ("create", {"connection": CONN, "job": "x"}, "job: expected an object, got a string"),
        ("create", {"job": None}, "connection: expected an object, got nothing (missing)"),
        ("drivers", {"items": [{"name": "x", "title": "X"}]}, "items[0].creatable"),
    ],
)
async def test_single_objects_of_the_wrong_shape_are_refused(
    scripted: Any, call: str, body: Any, problem: str
) -> None:
    platform = scripted(lambda m, p, n: json_answer(body))
    async with open_client(platform.url, TOKEN, max_retries=0) as client:
        with pytest.raises(errors.ServerError, match="invalid_response") as info:
            if call == "get_job":
                await client.get_job(1)
            elif call == "get_connection":
                await client.get_connection(1)
            elif call == "create":
                await client.create_connection(name="x", driver="shopware6", credentials=SW6)
            else:
                await client.list_drivers()
    assert problem in str(info.value)


async def test_empty_and_absurd_bodies_are_errors_not_crashes(scripted: Any) -> None:
    bodies = [
        (204, {}, b""),
        (200, {"Content-Type": "application/json"}, b"[" * 100_000),  # RecursionError
        (200, {"Content-Type": "application/json"}, b"\xff\xfe\x00garbage"),
        (200, {"Content-Type": "text/html; charset=base64"}, b"<html>"),  # no text codec
    ]
    platform = scripted(lambda m, p, n: bodies[n])
    async with open_client(platform.url, TOKEN, max_retries=0) as client:
        for _ in bodies:
            with pytest.raises(errors.ServerError, match="not JSON"):
                await client.get_connection(1)


async def test_error_answers_that_are_not_the_contract_map_by_status(scripted: Any) -> None:
    answers = [
        html_answer(404, "<h1>Not here</h1>"),
        json_answer({"detail": "nope"}, 422),
        html_answer(403, ""),
        html_answer(502, "<html>Bad gateway</html>"),
    ]
    platform = scripted(lambda m, p, n: answers[min(n, 3)])
    async with open_client(platform.url, TOKEN, max_retries=1) as client:
        with pytest.raises(errors.NotFound) as not_found:
            await client.get_connection(7)
        with pytest.raises(errors.UnprocessableEntity) as unprocessable:
            await client.update_connection(7, {"name": "x"})
        with pytest.raises(errors.Forbidden):
            await client.list_connections()
        client.rng.seed(0)
        with pytest.raises(errors.ServerError) as bad_gateway:
            await client.list_jobs()
    assert str(not_found.value) == (
        "http_404: GET /api/v1/connections/7: the platform answered 404 Not Found with a "
        "text/html body: '<h1>Not here</h1>', not a JSON error"
    )
    assert unprocessable.value.code == "http_422"
    assert "PATCH /api/v1/connections/7" in str(unprocessable.value)
    assert "502 Bad Gateway" in str(bad_gateway.value) and bad_gateway.value.status == 502
    assert len(platform.requests) == 5  # 4xx once each; the 502 retried (max_retries=1)


async def test_untrusted_text_is_one_short_line_without_the_token(scripted: Any) -> None:
    nasty = f"line one\r\n\x1b[31mred\x1b[0m Authorization: Bearer {TOKEN} " + "A" * 20_000
    answers = [
        (500, {"Content-Type": "text/plain"}, nasty.encode()),
        json_answer({"error": "boom\nx", "message": nasty}, 409),
        (302, {"Location": f"https://evil.example/?t={TOKEN}\x1b[2J"}, b""),
    ]
    platform = scripted(lambda m, p, n: answers[n])
    async with open_client(platform.url, TOKEN, max_retries=0) as client:
        raised = []
        for _ in answers:
            with pytest.raises(errors.APIError) as info:
                await client.get_connection(1)
            raised.append(str(info.value))
    for message in raised:
        assert TOKEN not in message
        assert message.isprintable(), repr(message)  # no newline, no escape sequence
        assert len(message) < 700
    assert "(sensitive value)" in raised[0]
    # the contract's error keeps its code and message, on one line; ESC is gone, so the
    # printable rest of "\x1b[31m" cannot colour or move anything
    assert raised[1].startswith("boom x: line one [31mred [0m Authorization: Bearer (sens")
    assert raised[2].startswith("unexpected_redirect: GET /api/v1/connections/1: the platform")


def test_retry_after_is_bounded() -> None:
    import httpx

    from chanops.platform.answers import RETRY_AFTER_CAP_S, retry_after

    def after(value: str) -> float | None:
        return retry_after(httpx.Response(429, headers={"Retry-After": value}))

    assert after("2") == 2.0
    assert after("1e9") == RETRY_AFTER_CAP_S  # not a sleep of 31 years
    assert after("inf") is None and after("nan") is None  # the client's backoff instead
    assert after("-5") == 0.0
    assert after("Wed, 21 Oct 2026 07:28:00 GMT") is None


async def test_a_listing_that_never_ends_or_repeats_an_id_is_refused(scripted: Any) -> None:
    looping = scripted(lambda m, p, n: json_answer({"items": [], "next_cursor": "again"}))
    async with open_client(looping.url, TOKEN) as client:
        with pytest.raises(errors.ServerError, match="already sent"):
            await client.list_connections()
    assert len(looping.requests) == 2
    pages = [
        json_answer({"items": [CONN], "next_cursor": "p2"}),
        json_answer({"items": [CONN], "next_cursor": None}),
    ]
    doubled = scripted(lambda m, p, n: pages[n])
    async with open_client(doubled.url, TOKEN) as client:
        with pytest.raises(errors.ServerError, match="the same connection id twice"):
            await client.list_connections()
