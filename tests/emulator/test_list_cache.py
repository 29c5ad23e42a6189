"""The connection list serves remembered encodings: they must never go stale.

`Platform.list_connections_json` reuses a connection's encoded wire form while its row
is unchanged; these tests change rows every way there is (through the API, behind its
back, by a delete finishing) and check that the next page shows it, byte for byte as
JSONResponse would render the connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse

from chanops.emulator._parse import encode_cursor
from chanops.emulator._store import Platform
from chanops.emulator.app import create_app
from support.emulator import EmulatorProcess

TOKEN = "t"
SW6 = {"url": "https://shop.example.com", "accessKeyId": "SWIA1", "secretAccessKey": "s3cret"}


def run(platform: Platform, fn: Callable[[float], tuple[int, Any]]) -> Any:
    status, body, _ = platform.idempotent(None, "test", fn)
    assert status < 300, body
    return body


def seed(platform: Platform) -> dict[str, int]:
    """Connections covering every shape the wire form has."""
    ids: dict[str, int] = {}

    def create(key: str, body: dict[str, Any], marketplace: bool = False) -> int:
        out = run(platform, lambda now: platform.create(body, now, marketplace=marketplace))
        ids[key] = int(out["connection"]["id"])
        return ids[key]

    name = 'Café ☕ "quoted" \\ </script>'
    create("sw6", {"name": name, "driver": "shopware6", "credentials": SW6})
    sfcc = {
        "productionMode": True,
        "staging": {
            "url": "https://s.example.com",
            "clientId": "c",
            "clientPassword": "p",
            "username": "u@example.com",
            "userPassword": "up",
            "accessToken": "t",
        },
        "production": {
            "url": "https://p.example.com",
            "clientId": "c",
            "clientPassword": "p",
            "username": "u@example.com",
            "userPassword": "up",
            "accessToken": "t",
        },
    }
    create("sfcc", {"name": "sfcc", "driver": "sfcc", "credentials": sfcc})
    amazon = {"sellerId": "s", "marketplace": "DE"}
    create("amazon", {"name": "amz", "driver": "amazon", "credentials": amazon})  # pending
    authorized = create("amazon2", {"name": "amz2", "driver": "amazon", "credentials": amazon})
    run(platform, lambda now: platform.authorize(authorized, now))
    create("shopify", {"name": "shop", "driver": "shopify", "credentials": {}}, marketplace=True)
    tradebyte = {
        "merchantNumber": "1",
        "shopName": "shop",
        "restUsername": "r",
        "restPassword": "x",
        "sftpUsername": "s",
        "sftpPassword": "y",
        "testApi": True,
    }
    tb = create(
        "tb",
        {
            "name": "tb",
            "driver": "tradebyte",
            "credentials": tradebyte,
            "automation": {"orderDownload": "5m"},
        },
    )
    run(platform, lambda now: platform.set_order_errors(tb, True, now))
    settings = {"klarna": True, "ratio": 0.5, "orders": {"importAboveNumber": "100"}, "l": [1]}
    run(platform, lambda now: platform.update(ids["sw6"], {"settings": settings}, None, now))
    run(platform, lambda now: platform.set_status([ids["shopify"]], "inactive", now))
    return ids


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Starlette]:
    app = create_app(db=str(tmp_path / "emulator.db"), token=TOKEN)
    try:
        yield app
    finally:
        app.state.platform.close()


async def pages(app: Starlette, limit: int) -> list[bytes]:
    bodies: list[bytes] = []
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://emu", headers=headers
    ) as client:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            r = await client.get("/api/v1/connections", params=params)
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/json"
            assert int(r.headers["content-length"]) == len(r.content)
            bodies.append(r.content)
            cursor = r.json()["next_cursor"]
            if not cursor:
                return bodies


def expected_pages(platform: Platform, limit: int) -> list[bytes]:
    """Every page as JSONResponse renders it from connections read one by one."""
    ids = [int(r[0]) for r in platform.conn.execute("SELECT id FROM connections ORDER BY id")]
    out = []
    for start in range(0, max(len(ids), 1), limit):
        chunk = ids[start : start + limit]
        more = start + limit < len(ids)
        body = {
            "items": [platform.get_connection(i) for i in chunk],
            "next_cursor": encode_cursor(chunk[-1] if more else None),
        }
        out.append(bytes(JSONResponse(body).body))
    return out


@pytest.mark.parametrize("limit", [1, 2, 5, 500])
async def test_pages_are_the_bytes_jsonresponse_renders(app: Starlette, limit: int) -> None:
    platform: Platform = app.state.platform
    assert await pages(app, limit) == expected_pages(platform, limit)  # empty
    seed(platform)
    first = await pages(app, limit)  # encodes
    assert first == expected_pages(platform, limit)
    assert await pages(app, limit) == first  # from the cache
    secrets = [c["credentials"] for c in platform.list_connections(after=0, limit=500)[0]]
    assert all(c[k] is None for c in secrets for k in c if "assword" in k or "ecret" in k)


async def test_every_change_shows_on_the_next_page(app: Starlette) -> None:
    platform: Platform = app.state.platform
    ids = seed(platform)
    before = await pages(app, 500)
    run(platform, lambda now: platform.update(ids["sw6"], {"name": "renamed"}, None, now))
    run(platform, lambda now: platform.set_status([ids["sfcc"]], "inactive", now))
    run(platform, lambda now: platform.set_order_errors(ids["tb"], False, now))
    run(platform, lambda now: platform.authorize(ids["amazon"], now))
    after = await pages(app, 500)
    assert after != before and after == expected_pages(platform, 500)
    assert b'"renamed"' in after[0]


async def test_a_row_changed_behind_the_apis_back_is_not_served_stale(
    app: Starlette, tmp_path: Path
) -> None:
    platform: Platform = app.state.platform
    ids = seed(platform)
    await pages(app, 500)
    # another writer, version and updated_at untouched: only the row's content tells
    other = sqlite3.connect(tmp_path / "emulator.db", isolation_level=None)
    other.execute(
        "UPDATE connections SET settings = ?, name = ? WHERE id = ?",
        ('{"changed": true}', "sneaky", ids["sw6"]),
    )
    other.close()
    after = await pages(app, 500)
    assert after == expected_pages(platform, 500)
    assert b'"sneaky"' in after[0] and b'{"changed":true}' in after[0]


def test_a_finished_delete_disappears_from_the_list(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    platform = Platform(str(tmp_path / "p.db"), clock=lambda: now[0])
    try:
        ids = seed(platform)
        cid = ids["shopify"]  # inactive
        job = run(platform, lambda t: platform.delete(cid, t))
        assert job["kind"] == "delete"
        items, _ = platform.list_connections_json(after=0, limit=500)
        assert any(b'"status":"deleting"' in i for i in items)
        now[0] += 0.5  # still running
        assert len(platform.list_connections_json(after=0, limit=500)[0]) == len(ids)
        now[0] += 3600  # finished
        items, last = platform.list_connections_json(after=0, limit=500)
        assert last is None and len(items) == len(ids) - 1
        assert not any(f'"id":{cid},'.encode() in i for i in items)
        assert [c["id"] for c in platform.list_connections(after=0, limit=500)[0]] == sorted(
            i for i in ids.values() if i != cid
        )
        # settled in the database, not just hidden
        assert platform.conn.execute("SELECT COUNT(*) FROM connections").fetchone()[0] == 5
    finally:
        platform.close()


def test_list_over_http_after_changes(emu: EmulatorProcess) -> None:
    """The same through `chanops emulator`: list, change through the API, list again."""
    admin = emu.admin
    cid = admin.post(
        "/api/v1/connections", json={"name": "cached", "driver": "shopware6", "credentials": SW6}
    )["connection"]["id"]
    listed = {c["id"]: c for c in admin.connections()}
    assert listed[cid] == admin.connection(cid)
    admin.patch(f"/api/v1/connections/{cid}", json={"settings": {"klarna": True}})
    admin.post("/api/v1/connections/disable", json={"ids": [cid]})
    admin.set_order_errors(cid)
    listed = {c["id"]: c for c in admin.connections()}
    now = admin.connection(cid)
    assert listed[cid] == now
    assert now["settings"] == {"klarna": True} and now["status"] == "inactive"
    assert now["has_order_errors"] is True and now["credentials"]["secretAccessKey"] is None
