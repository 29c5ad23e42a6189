"""The platform client against the real emulator over HTTP (and in-process for local:)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog

from chanops import errors
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


async def test_remote_url_without_token_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="no platform token"):
        open_client("https://platform.example.com", None)
    with pytest.raises(errors.ConfigError, match="must start with"):
        open_client("ftp://platform.example.com", "t")


async def test_local_url_runs_the_emulator_in_process(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "platform.db"
    with structlog.testing.capture_logs() as logs:
        client = open_client(f"local:{db}", None)
    async with client:
        res = await client.create_connection(name="local", driver="shopware6", credentials=SW6)
    assert db.exists()
    assert any(e["event"] == "platform.local" and e["log_level"] == "warning" for e in logs)
    async with open_client(f"local:{db}", None) as again:
        assert [c.id for c in await again.list_connections()] == [res.connection.id]


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
