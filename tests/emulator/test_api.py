"""Every documented platform rule and error code, over real HTTP against `chanops emulator`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.emulator import EmulatorProcess, start_emulator

API = "/api/v1"
SW6 = {"url": "https://shop.example.com", "accessKeyId": "SWIA1", "secretAccessKey": "s3cret"}


def call(emu: EmulatorProcess, method: str, path: str, **kw: Any) -> httpx.Response:
    return emu.admin.request(method, API + path, **kw)


def create(
    emu: EmulatorProcess,
    name: str = "c",
    driver: str = "shopware6",
    credentials: dict[str, Any] | None = None,
    **extra: Any,
) -> httpx.Response:
    body = {
        "name": name,
        "driver": driver,
        "credentials": SW6 if credentials is None else credentials,
        **extra,
    }
    return call(emu, "POST", "/connections", json=body)


def created(emu: EmulatorProcess, **kw: Any) -> dict[str, Any]:
    r = create(emu, **kw)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def wait_job(emu: EmulatorProcess, job_id: int, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = call(emu, "GET", f"/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.01)


def error(r: httpx.Response) -> tuple[int, str, str | None]:
    body = r.json()
    assert set(body) <= {"error", "message", "field"} and body["message"]
    return r.status_code, body["error"], body.get("field")


def test_token_missing_is_401_and_wrong_is_403(emu: EmulatorProcess) -> None:
    r = httpx.get(emu.url + API + "/connections")
    assert error(r)[:2] == (401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.get(emu.url + API + "/connections", headers={"Authorization": "Bearer nope"})
    assert error(r)[:2] == (403, "forbidden")


def test_openapi_is_served_without_a_token(emu: EmulatorProcess) -> None:
    spec = httpx.get(emu.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert "/api/v1/connections/{id}" in spec["paths"]


def test_drivers_lists_all_eight_by_default(emu: EmulatorProcess) -> None:
    items = call(emu, "GET", "/drivers").json()["items"]
    by_name = {d["name"]: d for d in items}
    assert set(by_name) == {
        "shopware6",
        "shopify",
        "sfcc",
        "amazon",
        "magento2",
        "tradebyte",
        "actindo-pos",
        "bigcommerce",
    }
    assert by_name["shopify"]["creatable"] is False
    assert by_name["amazon"]["oauth_fields"] == ["accessToken"]
    assert "staging.clientPassword" in by_name["sfcc"]["secret_fields"]


def test_create_is_active_with_initial_sync_and_hides_secrets(emu: EmulatorProcess) -> None:
    out = created(emu, name="Shopware DE")
    conn, job = out["connection"], out["job"]
    assert conn["status"] == "active" and conn["version"] == 1
    assert conn["credentials"] == {**SW6, "secretAccessKey": None}
    assert conn["automation"] == {"orderDownload": "never", "returnDownload": "never"}
    assert conn["authorization"] is None
    assert job["kind"] == "initial_sync" and job["connection_id"] == conn["id"]
    assert wait_job(emu, job["id"])["state"] == "succeeded"
    again = call(emu, "GET", f"/connections/{conn['id']}").json()
    assert again["credentials"]["secretAccessKey"] is None


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        ({"url": "https://s.example.com", "accessKeyId": "k"}, "credentials.secretAccessKey"),
        ({**SW6, "url": "http://plain.example.com"}, "credentials.url"),
        ({**SW6, "accessKeyId": 7}, "credentials.accessKeyId"),
        ({**SW6, "secretAccessKey": "invalid-key"}, "credentials.secretAccessKey"),
        ({**SW6, "surprise": "x"}, "credentials.surprise"),
    ],
)
def test_create_checks_credentials(
    emu: EmulatorProcess, credentials: dict[str, Any], field: str
) -> None:
    assert error(create(emu, credentials=credentials)) == (422, "invalid_credentials", field)


def test_rejected_create_creates_nothing(emu: EmulatorProcess) -> None:
    before = len(emu.admin.connections())
    create(emu, credentials={**SW6, "secretAccessKey": "invalid"})
    assert len(emu.admin.connections()) == before


def test_sfcc_production_required_only_in_production_mode(emu: EmulatorProcess) -> None:
    staging = {
        "url": "https://st.example.com",
        "clientId": "c",
        "clientPassword": "p",
        "username": "u@example.com",
        "userPassword": "up",
        "accessToken": "t",
    }
    created(emu, driver="sfcc", credentials={"staging": staging})
    # the access token is needed beside the client ID and password
    r = create(emu, driver="sfcc", credentials={"staging": {**staging, "accessToken": None}})
    assert error(r) == (422, "invalid_credentials", "credentials.staging.accessToken")
    r = create(emu, driver="sfcc", credentials={"productionMode": True, "staging": staging})
    assert error(r) == (422, "invalid_credentials", "credentials.production")
    r = create(
        emu, driver="sfcc", credentials={"staging": {**staging, "clientPassword": "invalid!"}}
    )
    assert error(r) == (422, "invalid_credentials", "credentials.staging.clientPassword")


def test_settings_in_create_are_rejected(emu: EmulatorProcess) -> None:
    r = create(emu, settings={"klarna": True})
    assert error(r) == (422, "settings_after_create", "settings")


@pytest.mark.parametrize("driver", ["shopify", "actindo-pos"])
def test_marketplace_drivers_are_not_creatable(emu: EmulatorProcess, driver: str) -> None:
    status, code, field = error(create(emu, driver=driver, credentials={}))
    assert (status, code, field) == (422, "not_creatable", "driver")
    message = create(emu, driver=driver, credentials={}).json()["message"]
    assert ("app" in message) if driver == "shopify" else ("POS store" in message)


def test_marketplace_install_creates_what_the_api_cannot(emu: EmulatorProcess) -> None:
    cid = emu.admin.marketplace_install(
        "shopify", "shop", {"shopUrl": "a.myshopify.com", "apiKey": "k"}
    )
    conn = emu.admin.connection(cid)
    assert conn["driver"] == "shopify" and conn["credentials"]["apiKey"] is None
    # once it exists it is managed through the normal API
    r = call(emu, "PATCH", f"/connections/{cid}", json={"name": "renamed"})
    assert r.status_code == 200 and r.json()["version"] == 2


def test_amazon_token_comes_only_from_the_authorize_flow(emu: EmulatorProcess) -> None:
    creds = {"sellerId": "A1", "marketplace": "DE"}
    r = create(emu, driver="amazon", credentials={**creds, "accessToken": "tok"})
    assert error(r) == (422, "immutable_field", "credentials.accessToken")
    conn = created(emu, driver="amazon", credentials=creds)["connection"]
    assert conn["authorization"] == "pending"
    r = call(emu, "PATCH", f"/connections/{conn['id']}", json={"credentials": {"accessToken": "x"}})
    assert error(r) == (422, "immutable_field", "credentials.accessToken")
    r = call(
        emu, "PATCH", f"/connections/{conn['id']}", json={"credentials": {"marketplace": "FR"}}
    )
    assert error(r) == (422, "immutable_field", "credentials.marketplace")
    authorized = emu.admin.authorize(conn["id"])
    assert authorized["authorization"] == "authorized"
    assert authorized["credentials"]["accessToken"] is None
    assert authorized["version"] == conn["version"] + 1


def test_driver_is_immutable(emu: EmulatorProcess) -> None:
    cid = created(emu)["connection"]["id"]
    r = call(emu, "PATCH", f"/connections/{cid}", json={"driver": "magento2"})
    assert error(r) == (422, "immutable_field", "driver")
    assert (
        call(emu, "PATCH", f"/connections/{cid}", json={"driver": "shopware6"}).status_code == 200
    )


def test_driver_not_installed(tmp_path: Any) -> None:
    from support.emulator import start_emulator

    with start_emulator(tmp_path, drivers=["amazon"]) as e:
        names = [d["name"] for d in call(e, "GET", "/drivers").json()["items"]]
        assert names == ["amazon"]
        assert error(create(e)) == (422, "driver_not_installed", "driver")
        assert error(create(e, driver="nope"))[:2] == (422, "unknown_driver")


def test_model_settings_wait_for_the_first_sync(emu: EmulatorProcess) -> None:
    # A secret starting "fail-sync" fails every sync: never synced, however slow the
    # machine (a PATCH racing a short initial sync would not show the rule).
    never = created(emu, credentials={**SW6, "secretAccessKey": "fail-sync-secret"})
    nid = never["connection"]["id"]
    r = call(emu, "PATCH", f"/connections/{nid}", json={"settings": {"defaultLanguage": "de-DE"}})
    assert error(r) == (422, "unknown_value", "settings.defaultLanguage")
    # a setting that does not depend on the data model is fine at once
    assert (
        call(emu, "PATCH", f"/connections/{nid}", json={"settings": {"klarna": True}}).status_code
        == 200
    )
    out = created(emu)
    cid = out["connection"]["id"]
    r = call(emu, "PATCH", f"/connections/{cid}", json={"settings": {"klarna": True}})
    assert r.status_code == 200
    assert wait_job(emu, out["job"]["id"])["state"] == "succeeded"
    r = call(emu, "PATCH", f"/connections/{cid}", json={"settings": {"defaultLanguage": "de-DE"}})
    assert r.status_code == 200
    assert r.json()["settings"] == {"klarna": True, "defaultLanguage": "de-DE"}


def test_price_rules_lock_after_a_sync_used_them(emu: EmulatorProcess) -> None:
    out = created(emu)
    cid = out["connection"]["id"]
    wait_job(emu, out["job"]["id"])
    patch = {"settings": {"priceRules": ["gold", "silver"]}}
    assert call(emu, "PATCH", f"/connections/{cid}", json=patch).status_code == 200
    # not synced with them yet: removing is still allowed
    assert (
        call(
            emu, "PATCH", f"/connections/{cid}", json={"settings": {"priceRules": ["gold"]}}
        ).status_code
        == 200
    )
    job = call(emu, "POST", f"/connections/{cid}/sync").json()
    assert wait_job(emu, job["id"])["state"] == "succeeded"
    r = call(emu, "PATCH", f"/connections/{cid}", json={"settings": {"priceRules": []}})
    assert error(r) == (422, "locked_setting", "settings.priceRules")
    assert "gold" in r.json()["message"]
    ok = call(
        emu, "PATCH", f"/connections/{cid}", json={"settings": {"priceRules": ["gold", "bronze"]}}
    )
    assert ok.status_code == 200


def test_merge_patch_semantics_and_versions(emu: EmulatorProcess) -> None:
    out = created(emu)
    cid = out["connection"]["id"]
    wait_job(emu, out["job"]["id"])
    c = call(
        emu,
        "PATCH",
        f"/connections/{cid}",
        json={
            "settings": {
                "orders": {"importAboveNumber": "10", "importStatuses": ["open"]},
                "klarna": True,
            }
        },
    ).json()
    assert c["version"] == 2
    c = call(
        emu,
        "PATCH",
        f"/connections/{cid}",
        json={"settings": {"orders": {"importAboveNumber": None}, "klarna": None}},
    ).json()
    assert c["settings"] == {"orders": {"importStatuses": ["open"]}}
    assert c["version"] == 3
    # an unchanged result is no change
    same = call(emu, "PATCH", f"/connections/{cid}", json={"settings": {"orders": {}}}).json()
    assert same["version"] == 3
    auto = call(
        emu, "PATCH", f"/connections/{cid}", json={"automation": {"orderDownload": "5m"}}
    ).json()
    assert auto["automation"] == {"orderDownload": "5m", "returnDownload": "never"}
    r = call(emu, "PATCH", f"/connections/{cid}", json={"automation": {"orderDownload": "7m"}})
    assert error(r) == (422, "invalid_request", "automation.orderDownload")


def test_if_match_turns_a_lost_update_into_412(emu: EmulatorProcess) -> None:
    cid = created(emu)["connection"]["id"]
    r = call(emu, "PATCH", f"/connections/{cid}", json={"name": "one"}, headers={"If-Match": "1"})
    assert r.status_code == 200 and r.json()["version"] == 2
    r = call(emu, "PATCH", f"/connections/{cid}", json={"name": "two"}, headers={"If-Match": "1"})
    assert error(r)[:2] == (412, "precondition_failed")
    assert emu.admin.connection(cid)["name"] == "one"


def test_credentials_patch_triggers_a_sync(emu: EmulatorProcess) -> None:
    out = created(emu)
    cid = out["connection"]["id"]
    wait_job(emu, out["job"]["id"])
    r = call(emu, "PATCH", f"/connections/{cid}", json={"credentials": {"secretAccessKey": "new"}})
    assert r.status_code == 200 and r.json()["version"] == 2
    jobs = call(emu, "GET", "/jobs", params={"connection_id": cid}).json()["items"]
    assert [j["kind"] for j in jobs] == ["initial_sync", "sync"]
    r = call(
        emu,
        "PATCH",
        f"/connections/{cid}",
        json={"credentials": {"secretAccessKey": "invalid-new"}},
    )
    assert error(r) == (422, "invalid_credentials", "credentials.secretAccessKey")


@pytest.fixture(scope="module")
def slow_jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    # Jobs at full length (~3.5 s): "the initial sync is still running" must hold even
    # on a loaded machine, where the module emulator's 0.35 s jobs may already be done.
    with start_emulator(tmp_path_factory.mktemp("emu-slow-jobs"), time_scale=1.0) as e:
        yield e


def test_one_sync_at_a_time(slow_jobs: EmulatorProcess) -> None:
    emu = slow_jobs
    out = created(emu)
    cid = out["connection"]["id"]
    # the initial sync is still running: a sync request returns it
    r = call(emu, "POST", f"/connections/{cid}/sync")
    assert r.status_code == 200 and r.json()["id"] == out["job"]["id"]
    done = wait_job(emu, out["job"]["id"])
    assert done["progress"] == 100 and done["finished_at"]
    r = call(emu, "POST", f"/connections/{cid}/sync")
    assert r.status_code == 202 and r.json()["kind"] == "sync"
    assert call(emu, "POST", f"/connections/{cid}/sync").json()["id"] == r.json()["id"]


def test_failing_sync_reports_an_error(emu: EmulatorProcess) -> None:
    out = created(emu, credentials={**SW6, "accessKeyId": "fail-sync-please"})
    job = wait_job(emu, out["job"]["id"])
    assert job["state"] == "failed" and job["error"]


def test_enable_disable_are_bulk_and_atomic(emu: EmulatorProcess) -> None:
    a = created(emu)["connection"]["id"]
    b = created(emu)["connection"]["id"]
    r = call(emu, "POST", "/connections/disable", json={"ids": [a, b]})
    assert [c["status"] for c in r.json()["items"]] == ["inactive", "inactive"]
    r = call(emu, "POST", "/connections/enable", json={"ids": [a, 999999]})
    assert error(r)[:2] == (404, "not_found")
    assert emu.admin.connection(a)["status"] == "inactive"
    r = call(emu, "POST", f"/connections/{a}/sync")
    assert error(r)[:2] == (409, "connection_inactive")
    r = call(emu, "POST", "/connections/enable", json={"ids": []})
    assert error(r)[:2] == (400, "bad_request")


def test_delete_needs_inactive_takes_a_job_then_404(emu: EmulatorProcess) -> None:
    out = created(emu)
    cid = out["connection"]["id"]
    assert error(call(emu, "DELETE", f"/connections/{cid}"))[:2] == (409, "connection_active")
    call(emu, "POST", "/connections/disable", json={"ids": [cid]})
    r = call(emu, "DELETE", f"/connections/{cid}")
    assert r.status_code == 202 and r.json()["kind"] == "delete"
    assert emu.admin.connection(cid)["status"] == "deleting"
    assert call(emu, "DELETE", f"/connections/{cid}").json()["id"] == r.json()["id"]
    assert error(call(emu, "PATCH", f"/connections/{cid}", json={"name": "x"}))[:2] == (
        409,
        "connection_deleting",
    )
    delete_job = wait_job(emu, r.json()["id"])
    assert delete_job["state"] == "succeeded"
    assert error(call(emu, "GET", f"/connections/{cid}"))[:2] == (404, "not_found")
    sync = wait_job(emu, out["job"]["id"])
    # deleting takes longer than syncing
    span = lambda j: j["finished_at"] > j["created_at"]  # noqa: E731
    assert span(sync) and span(delete_job)


def test_delete_takes_longer_than_sync() -> None:
    from chanops.emulator._wire import DURATIONS

    assert sum(DURATIONS["delete"]) > sum(DURATIONS["initial_sync"]) > 0


def test_pagination_walks_every_connection_once(emu: EmulatorProcess) -> None:
    for i in range(7):
        created(emu, name=f"p{i}")
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = call(emu, "GET", "/connections", params=params).json()
        assert len(page["items"]) <= 3
        seen += [c["id"] for c in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(set(seen)) and len(seen) == len(emu.admin.connections())
    assert pages >= 3
    assert error(call(emu, "GET", "/connections", params={"limit": 501}))[:2] == (
        400,
        "bad_request",
    )
    assert error(call(emu, "GET", "/connections", params={"cursor": "garbage"}))[:2] == (
        400,
        "bad_request",
    )


def test_jobs_filter_by_connection_and_state(emu: EmulatorProcess) -> None:
    out = created(emu)
    cid = out["connection"]["id"]
    wait_job(emu, out["job"]["id"])
    done = call(emu, "GET", "/jobs", params={"connection_id": cid, "state": "succeeded"}).json()
    assert [j["id"] for j in done["items"]] == [out["job"]["id"]]
    running = call(emu, "GET", "/jobs", params={"connection_id": cid, "state": "running"}).json()
    assert running["items"] == []
    assert error(call(emu, "GET", "/jobs/999999"))[:2] == (404, "not_found")


def test_idempotency_key_returns_the_first_response(emu: EmulatorProcess) -> None:
    key = {"Idempotency-Key": "create-once-1"}
    body = {"name": "idem", "driver": "shopware6", "credentials": SW6}
    first = call(emu, "POST", "/connections", json=body, headers=key)
    second = call(emu, "POST", "/connections", json=body, headers=key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert sum(c["name"] == "idem" for c in emu.admin.connections()) == 1
    other = call(emu, "POST", "/connections", json={**body, "name": "other"}, headers=key)
    assert error(other)[:2] == (422, "idempotency_key_reused")


def test_bad_requests(emu: EmulatorProcess) -> None:
    r = call(
        emu,
        "POST",
        "/connections",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert error(r)[:2] == (400, "bad_request")
    r = call(emu, "POST", "/connections", json={"driver": "shopware6"})
    assert error(r) == (400, "bad_request", "name")
    r = call(emu, "PATCH", "/connections/1", json={"name": "x"}, headers={"If-Match": "abc"})
    assert error(r)[:2] == (400, "bad_request")
    assert error(call(emu, "GET", "/nowhere"))[:2] == (404, "not_found")
    assert error(call(emu, "PUT", "/connections"))[:2] == (405, "method_not_allowed")
    cid = emu.admin.marketplace_install("actindo-pos", "pos")
    r = call(emu, "POST", f"/testing/authorize/{cid}")
    assert error(r)[:2] == (422, "not_oauth")


def test_stats_count_requests_by_route_template(emu: EmulatorProcess) -> None:
    emu.admin.reset_stats()
    cid = created(emu)["connection"]["id"]
    call(emu, "GET", f"/connections/{cid}")
    call(emu, "GET", f"/connections/{cid}")
    call(emu, "PATCH", f"/connections/{cid}", json={"name": "n"})
    emu.admin.marketplace_install("shopify", "not counted")
    assert emu.admin.stats() == {
        "GET /api/v1/connections/{id}": 2,
        "PATCH /api/v1/connections/{id}": 1,
        "POST /api/v1/connections": 1,
    }
    emu.admin.reset_stats()
    assert emu.admin.stats() == {}


def test_order_errors_flag_is_raised_by_the_marketplace(emu: EmulatorProcess) -> None:
    cid = created(emu)["connection"]["id"]
    assert emu.admin.connection(cid)["has_order_errors"] is False
    flagged = emu.admin.set_order_errors(cid)
    assert flagged["has_order_errors"] is True and flagged["version"] == 2
    assert emu.admin.set_order_errors(cid, False)["has_order_errors"] is False
