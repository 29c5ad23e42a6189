"""The emulator's Core1 RPC surface, over real HTTP: one store, two protocols.

What one protocol writes the other reads; both refuse the same things with the same
codes. Each test makes its own connections (one emulator for the module).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from chanops.commands.emulator import command
from chanops.rpcprofile import load_profile
from support.emulator import start_emulator

API = "/api/v1"
NS = "/Actindo.Modules.Actindo.Channels"
SW6 = {"url": "https://shop.example.com", "accessKeyId": "SWIA1", "secretAccessKey": "s3cret"}
PROFILE = load_profile()


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with start_emulator(tmp_path_factory.mktemp("rpc"), time_scale=0.05) as emu:
        headers = {"Authorization": f"Bearer {emu.token}"}
        with httpx.Client(base_url=emu.url, headers=headers, timeout=10) as client:
            yield client


def rpc(http: httpx.Client, method: str, body: Any, **kw: Any) -> httpx.Response:
    return http.post(f"{NS}.{method}", json=body, **kw)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def rpc_create(http: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "driver": "shopware6", "credentials": SW6, **extra}
    out: dict[str, Any] = ok(rpc(http, "Connections.create", body))
    return out


def as_rest(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    return PROFILE.from_core1(kind, record)


def test_a_connection_created_over_rpc_is_the_one_rest_reads(http: httpx.Client) -> None:
    out = rpc_create(http, unique("rpc"), automation={"orderDownload": "5m"})
    data, job = out["data"], out["initialJob"]
    assert {"hasOrderErrors", "created", "changed"} <= set(data)
    assert job["type"] == "initial_sync" and job["connectionId"] == data["id"]
    rest = ok(http.get(f"{API}/connections/{data['id']}"))
    assert as_rest("connection", data) == rest
    assert rest["credentials"]["secretAccessKey"] is None  # write-only, on both wires
    assert rest["automation"]["orderDownload"] == "5m"
    got = ok(rpc(http, "Connections.get", {"id": data["id"]}))["data"]
    assert got == data


def test_a_connection_created_over_rest_is_listed_over_rpc(http: httpx.Client) -> None:
    body = {"name": unique("rest"), "driver": "shopware6", "credentials": SW6}
    created = http.post(f"{API}/connections", json=body)
    assert created.status_code == 201
    cid = created.json()["connection"]["id"]
    rows: list[dict[str, Any]] = []
    start = 0
    while True:
        page = ok(rpc(http, "Connections.getList", {"start": start, "limit": 2}))
        assert len(page["data"]) <= 2
        rows += page["data"]
        start += 2
        if start >= page["total"]:
            break
    assert len(rows) == page["total"] == len({r["id"] for r in rows})
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    ours = next(r for r in rows if r["id"] == cid)
    assert as_rest("connection", ours) == ok(http.get(f"{API}/connections/{cid}"))
    past_the_end = ok(rpc(http, "Connections.getList", {"start": 10**6, "limit": 5}))
    assert past_the_end["data"] == [] and past_the_end["total"] == page["total"]


def test_save_is_a_merge_patch_checked_by_version(http: httpx.Client) -> None:
    data = rpc_create(http, unique("save"))["data"]
    cid, version = data["id"], data["version"]
    renamed = ok(rpc(http, "Connections.save", {"id": cid, "version": version, "name": "new"}))
    assert renamed["data"]["name"] == "new" and renamed["data"]["version"] == version + 1
    assert ok(http.get(f"{API}/connections/{cid}"))["name"] == "new"
    stale = rpc(http, "Connections.save", {"id": cid, "version": version, "name": "again"})
    assert stale.status_code == 412 and stale.json()["error"] == "precondition_failed"
    # without a version the save is unconditional, like a PATCH without If-Match
    assert ok(rpc(http, "Connections.save", {"id": cid, "name": "last"}))["data"]["name"] == "last"


def test_both_protocols_refuse_alike(http: httpx.Client) -> None:
    cases = [
        (
            ("Connections.create", {"name": "x", "driver": "shopware6", "credentials": {}}),
            ("POST", "/connections", {"name": "x", "driver": "shopware6", "credentials": {}}),
        ),
        (
            ("Connections.create", {"name": "x", "driver": "ebay", "credentials": {}}),
            ("POST", "/connections", {"name": "x", "driver": "ebay", "credentials": {}}),
        ),
        (
            ("Connections.create", {"name": "", "driver": "shopware6"}),
            ("POST", "/connections", {"name": "", "driver": "shopware6"}),
        ),
        (("Connections.get", {"id": 999_999}), ("GET", "/connections/999999", None)),
        (("Jobs.get", {"id": 999_999}), ("GET", "/jobs/999999", None)),
        (
            ("Connections.enable", {"ids": []}),
            ("POST", "/connections/enable", {"ids": []}),
        ),
    ]
    for (method, body), (verb, path, rest_body) in cases:
        over_rpc = rpc(http, method, body)
        over_rest = http.request(verb, API + path, json=rest_body)
        assert over_rpc.status_code == over_rest.status_code, (method, over_rpc.text)
        assert over_rpc.json() == over_rest.json()


def test_a_refusal_names_the_field_as_core1_spells_it(http: httpx.Client) -> None:
    cid = rpc_create(http, unique("field"))["data"]["id"]
    r = rpc(http, "Connections.save", {"id": cid, "driver": "shopify"})
    assert r.status_code == 422 and r.json()["error"] == "immutable_field"
    r = rpc(http, "Connections.save", {"id": cid, "hasOrderErrors": True})
    assert r.status_code == 400 and r.json()["field"] == "hasOrderErrors"
    r = rpc(http, "Connections.get", {"id": "seven"})
    assert r.status_code == 400 and r.json()["field"] == "id"
    r = rpc(http, "Connections.get", {"ident": 1})
    assert r.json() == {
        "error": "bad_request",
        "message": "unknown field ident; allowed: id",
        "field": "ident",
    }
    lost = {"property": "state", "operator": "=", "value": "lost"}
    r = rpc(http, "Jobs.getList", {"start": 0, "limit": 5, "filter": [lost]})
    assert r.status_code == 400 and r.json()["field"] == "state"
    r = rpc(http, "Connections.getList", {"start": 0, "limit": 501})
    assert r.status_code == 400 and r.json()["field"] == "limit"
    r = http.post(f"{NS}.Connections.getList", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"] == "bad_request"


def test_an_unknown_method_is_404_and_every_rpc_call_needs_the_token(http: httpx.Client) -> None:
    r = rpc(http, "Connections.fetchAll", {})
    assert r.status_code == 404 and "Connections.fetchAll" in r.json()["message"]
    r = httpx.post(f"{http.base_url}{NS}.Connections.getList", json={"start": 0, "limit": 1})
    assert r.status_code == 401


def test_the_lifecycle_over_rpc(http: httpx.Client) -> None:
    cid = rpc_create(http, unique("life"))["data"]["id"]
    active = rpc(http, "Connections.delete", {"id": cid})
    assert active.status_code == 409 and active.json()["error"] == "connection_active"
    rows = ok(rpc(http, "Connections.disable", {"ids": [cid, cid]}))["data"]
    assert [r["status"] for r in rows] == ["inactive"]
    assert ok(http.get(f"{API}/connections/{cid}"))["status"] == "inactive"
    inactive = rpc(http, "Connections.sync", {"id": cid})
    assert inactive.status_code == 409 and inactive.json()["error"] == "connection_inactive"
    assert ok(rpc(http, "Connections.enable", {"ids": [cid]}))["data"][0]["status"] == "active"
    sync = ok(rpc(http, "Connections.sync", {"id": cid}))["data"]
    assert sync["connectionId"] == cid and sync["type"] in ("sync", "initial_sync")
    assert ok(rpc(http, "Jobs.get", {"id": sync["id"]}))["data"]["id"] == sync["id"]
    rpc(http, "Connections.disable", {"ids": [cid]})
    deleting = ok(rpc(http, "Connections.delete", {"id": cid}))["data"]
    assert deleting["type"] == "delete"
    assert ok(http.get(f"{API}/connections/{cid}"))["status"] == "deleting"


def test_jobs_filter_by_connection_and_state(http: httpx.Client) -> None:
    cid = rpc_create(http, unique("jobs"))["data"]["id"]
    condition = {"property": "connectionId", "operator": "=", "value": cid}
    body = {"start": 0, "limit": 50, "filter": [condition]}
    listed = ok(rpc(http, "Jobs.getList", body))
    assert listed["total"] == len(listed["data"]) >= 1
    assert {j["connectionId"] for j in listed["data"]} == {cid}
    rest = ok(http.get(f"{API}/jobs", params={"connection_id": cid}))["items"]
    assert [as_rest("job", j)["id"] for j in listed["data"]] == [j["id"] for j in rest]
    deadline = time.monotonic() + 10
    done = {"property": "state", "operator": "=", "value": "succeeded"}
    while time.monotonic() < deadline:
        finished = ok(rpc(http, "Jobs.getList", {**body, "filter": [condition, done]}))
        if finished["data"]:
            break
        time.sleep(0.05)
    assert finished["data"] and {j["state"] for j in finished["data"]} == {"succeeded"}
    unfiltered = ok(rpc(http, "Jobs.getList", {"start": 0, "limit": 1}))
    assert unfiltered["total"] >= listed["total"] and len(unfiltered["data"]) == 1


def test_drivers_over_rpc_are_rests(http: httpx.Client) -> None:
    rows = ok(rpc(http, "Drivers.getList", {}))["data"]
    assert [as_rest("driver", d) for d in rows] == ok(http.get(f"{API}/drivers"))["items"]


def test_a_write_with_an_idempotency_key_happens_once(http: httpx.Client) -> None:
    body = {"name": unique("idem"), "driver": "shopware6", "credentials": SW6}
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    first = rpc(http, "Connections.create", body, headers=headers)
    again = rpc(http, "Connections.create", body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    other = rpc(http, "Connections.create", {**body, "name": "different"}, headers=headers)
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"


def test_rpc_calls_are_counted_by_method(http: httpx.Client) -> None:
    http.post(f"{API}/testing/stats/reset")
    ok(rpc(http, "Connections.getList", {"start": 0, "limit": 1}))
    ok(rpc(http, "Connections.getList", {"start": 0, "limit": 1}))
    stats = ok(http.get(f"{API}/testing/stats"))
    assert stats[f"POST {NS}.Connections.getList"] == 2


def test_an_emulator_serves_an_overridden_profile(tmp_path: Path) -> None:
    override = tmp_path / "profile.yaml"
    override.write_text(
        "operations:\n"
        "  list_connections: {method: Acme.Channels.Connection.list}\n"
        "records:\n"
        "  connection: {name: title}\n",
        encoding="utf-8",
    )
    with (
        start_emulator(tmp_path, extra_args=["--rpc-profile", str(override)]) as emu,
        httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {emu.token}"}) as c,
    ):
        # create keeps its shipped request keys; the record comes back renamed
        body = {"name": "n", "driver": "shopware6", "credentials": SW6}
        created = c.post(f"{NS}.Connections.create", json=body)
        assert created.status_code == 200 and created.json()["data"]["title"] == "n"
        renamed = c.post(f"{NS}.Connections.save", json={"id": 1, "title": "t"})
        assert renamed.status_code == 200 and renamed.json()["data"]["title"] == "t"
        unknown = c.post(f"{NS}.Connections.save", json={"id": 1, "name": "t"})
        assert unknown.status_code == 400 and unknown.json()["field"] == "name"
        listed = c.post("/Acme.Channels.Connection.list", json={"start": 0, "limit": 5})
        assert listed.status_code == 200 and listed.json()["data"][0]["title"] == "t"
        old = c.post(f"{NS}.Connections.getList", json={"start": 0, "limit": 5})
        assert old.status_code == 404


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read it (No such file or directory)"),
        ("operations: [", "cannot read it (ParserError)"),
        ("operations: {list_connections: {method: nope}}", "'nope' is not <Namespace>"),
    ],
)
def test_a_bad_rpc_profile_is_one_line_naming_it(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "profile.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    res = CliRunner().invoke(command, ["--token", "t", "--rpc-profile", str(path)])
    assert res.exit_code == 2
    assert message in res.output and str(path) in res.output
    assert "Traceback" not in res.output
