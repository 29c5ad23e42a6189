"""The platform's per-driver rules as the vendor documents them, over real HTTP.

Refusal codes and what they name: required credentials, the Magento 2 invoice lock,
settings that wait for the first sync (and the ones that do not), the plugins Klarna
and Ratepay need, the languages a Shopware 6 shop needs in the DataHub, and BigCommerce's
one connection per store.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.emulator import EmulatorProcess

API = "/api/v1"
SW6 = {"url": "https://shop.example.com", "accessKeyId": "SWIA1", "secretAccessKey": "s3cret"}
SFCC_STAGING = {
    "url": "https://staging.example.com",
    "clientId": "c",
    "clientPassword": "client-pw",
    "username": "u@example.com",
    "userPassword": "user-pw",
    "accessToken": "token",
}
TRADEBYTE = {
    "merchantNumber": "1",
    "shopName": "shop",
    "restUsername": "r",
    "restPassword": "rest-pw",
    "sftpUsername": "s",
    "sftpPassword": "sftp-pw",
}
MAGENTO = {"url": "https://m.example.com", "username": "u", "password": "magento-pw"}


def call(emu: EmulatorProcess, method: str, path: str, **kw: Any) -> httpx.Response:
    return emu.admin.request(method, API + path, **kw)


def create(emu: EmulatorProcess, driver: str, credentials: dict[str, Any]) -> httpx.Response:
    body = {"name": f"{driver}-{time.monotonic_ns()}", "driver": driver, "credentials": credentials}
    return call(emu, "POST", "/connections", json=body)


def created(emu: EmulatorProcess, driver: str, credentials: dict[str, Any]) -> dict[str, Any]:
    r = create(emu, driver, credentials)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def patch(emu: EmulatorProcess, cid: int, settings: dict[str, Any]) -> httpx.Response:
    return call(emu, "PATCH", f"/connections/{cid}", json={"settings": settings})


def synced(emu: EmulatorProcess, out: dict[str, Any]) -> int:
    """Wait for the initial sync of a create's answer; the connection id."""
    deadline = time.monotonic() + 10
    while call(emu, "GET", f"/jobs/{out['job']['id']}").json()["state"] != "succeeded":
        assert time.monotonic() < deadline, "the initial sync did not finish"
        time.sleep(0.02)
    return int(out["connection"]["id"])


def error(r: httpx.Response) -> tuple[int, str, str | None]:
    body = r.json()
    assert set(body) <= {"error", "message", "field"} and body["message"], body
    return r.status_code, body["error"], body.get("field")


@pytest.fixture
def account(emu: EmulatorProcess) -> Iterator[dict[str, Any]]:
    """The account as the test found it; put back afterwards (one emulator per module)."""
    before: dict[str, Any] = emu.admin.get(f"{API}/testing/account")
    yield before
    emu.admin.post(f"{API}/testing/account", json=before)


@pytest.mark.parametrize(
    ("driver", "credentials", "missing"),
    [
        ("sfcc", {"staging": SFCC_STAGING}, "staging.accessToken"),
        ("sfcc", {"staging": SFCC_STAGING}, "staging.username"),
        ("sfcc", {"staging": SFCC_STAGING}, "staging.userPassword"),
        ("tradebyte", TRADEBYTE, "shopName"),
        ("tradebyte", TRADEBYTE, "sftpUsername"),
        ("tradebyte", TRADEBYTE, "sftpPassword"),
        ("bigcommerce", {"storeHash": "missingtoken", "accessToken": "t0ken"}, "accessToken"),
        ("bigcommerce", {"storeHash": "missinghash", "accessToken": "t0ken"}, "storeHash"),
    ],
)
def test_the_documented_credentials_are_required(
    emu: EmulatorProcess, driver: str, credentials: dict[str, Any], missing: str
) -> None:
    head, _, leaf = missing.rpartition(".")
    creds = {**credentials}
    if head:
        creds[head] = {k: v for k, v in creds[head].items() if k != leaf}
    else:
        creds.pop(leaf)
    r = create(emu, driver, creds)
    assert error(r) == (422, "invalid_credentials", f"credentials.{missing}")
    assert "is required" in r.json()["message"]


def test_sfcc_production_needs_its_access_token_only_in_production_mode(
    emu: EmulatorProcess,
) -> None:
    production = {**SFCC_STAGING, "url": "https://production.example.com"}
    del production["accessToken"]
    creds = {"productionMode": True, "staging": SFCC_STAGING, "production": production}
    r = create(emu, "sfcc", creds)
    assert error(r) == (422, "invalid_credentials", "credentials.production.accessToken")
    production["accessToken"] = "prod-token"
    created(emu, "sfcc", creds)


def test_magento_notify_about_invoice_is_locked_unless_invoices_are_created(
    emu: EmulatorProcess,
) -> None:
    cid = synced(emu, created(emu, "magento2", MAGENTO))
    notify = {"orderStates": {"notifyCustomerAboutInvoice": True}}
    r = patch(emu, cid, notify)
    assert error(r) == (422, "locked_setting", "settings.orderStates.notifyCustomerAboutInvoice")
    assert "createInvoiceWhenPaid" in r.json()["message"]
    both = {"orderStates": {"createInvoiceWhenPaid": True, "notifyCustomerAboutInvoice": True}}
    assert patch(emu, cid, both).status_code == 200
    # turning invoices off again while notify stays on is refused too
    r = patch(emu, cid, {"orderStates": {"createInvoiceWhenPaid": False}})
    assert error(r)[:2] == (422, "locked_setting")


def test_every_magento_setting_waits_for_the_initial_sync(emu: EmulatorProcess) -> None:
    # A secret starting "fail-sync" makes the emulator's syncs fail: never synced.
    never = created(emu, "magento2", {**MAGENTO, "password": "fail-sync-pw"})
    cid = int(never["connection"]["id"])
    for settings in ({"imageName": {"useEcmName": False}}, {"hiddenImageAttributes": ["x"]}):
        key = next(iter(settings))
        assert error(patch(emu, cid, settings)) == (422, "unknown_value", f"settings.{key}")
    cid = synced(emu, created(emu, "magento2", MAGENTO))
    assert patch(emu, cid, {"imageName": {"useEcmName": False}}).status_code == 200


def test_tradebyte_sales_channels_and_languages_wait_for_the_initial_sync(
    emu: EmulatorProcess,
) -> None:
    never = created(emu, "tradebyte", {**TRADEBYTE, "restPassword": "fail-sync-pw"})
    cid = int(never["connection"]["id"])
    for key in ("salesChannels", "languages"):
        assert error(patch(emu, cid, {key: ["de"]})) == (422, "unknown_value", f"settings.{key}")
    cid = synced(emu, created(emu, "tradebyte", TRADEBYTE))
    assert patch(emu, cid, {"salesChannels": ["zalando"], "languages": ["de"]}).status_code == 200


def test_values_typed_in_by_hand_need_no_sync(emu: EmulatorProcess) -> None:
    """SFCC tax classes and default language, Shopify tax classes: no sync gate.

    On connections whose syncs all fail ("fail-sync" credentials), so none has synced:
    the same connection state on which Shopware 6's default language is refused.
    """
    sw6 = created(emu, "shopware6", {**SW6, "secretAccessKey": "fail-sync-key"})
    r = patch(emu, sw6["connection"]["id"], {"defaultLanguage": "de-DE"})
    assert error(r) == (422, "unknown_value", "settings.defaultLanguage")
    staging = {**SFCC_STAGING, "clientPassword": "fail-sync-pw"}
    sfcc = created(emu, "sfcc", {"staging": staging})["connection"]["id"]
    settings = {
        "taxClasses": [{"code": "standard", "actindoId": 1}],
        "defaultLanguage": "de",
        "priceBooks": [{"id": "eur-list", "currency": "EUR"}],
    }
    r = patch(emu, sfcc, settings)
    assert r.status_code == 200, r.text
    shop = emu.admin.marketplace_install(
        "shopify", "Shop", {"shopUrl": "a.myshopify.com", "apiKey": "fail-sync-key"}
    )
    tax = {
        "orderImport": {"defaultTaxClass": "standard"},
        "offerImport": {"defaultTaxClass": "standard", "collectionsByTaxClass": {"std": ["A"]}},
    }
    r = patch(emu, shop, tax)
    assert r.status_code == 200, r.text
    # none of the three has synced: every sync job failed or is still to end
    for cid in (sw6["connection"]["id"], sfcc, shop):
        jobs = emu.admin.get(f"{API}/jobs", params={"connection_id": cid})["items"]
        assert "succeeded" not in {j["state"] for j in jobs}, jobs


def test_klarna_and_ratepay_need_the_payment_and_shopware_plugins(
    emu: EmulatorProcess, account: dict[str, Any]
) -> None:
    assert account["plugins"] == ["klarna", "ratepay", "shopware"]  # all, until changed
    cid = created(emu, "shopware6", SW6)["connection"]["id"]
    emu.admin.post(f"{API}/testing/account", json={"plugins": ["klarna"]})
    r = patch(emu, cid, {"klarna": True})
    assert error(r) == (422, "plugin_not_installed", "settings.klarna")
    assert "missing: shopware" in r.json()["message"]
    assert patch(emu, cid, {"klarna": False}).status_code == 200  # off needs no plugin
    emu.admin.post(f"{API}/testing/account", json={"plugins": ["klarna", "shopware"]})
    assert patch(emu, cid, {"klarna": True}).status_code == 200
    r = patch(emu, cid, {"ratepay": True})
    assert error(r) == (422, "plugin_not_installed", "settings.ratepay")
    assert "missing: ratepay" in r.json()["message"]


def test_a_shop_language_the_datahub_lacks_refuses_the_create(
    emu: EmulatorProcess, account: dict[str, Any]
) -> None:
    url = "https://languages.example.com"
    emu.admin.post(f"{API}/testing/shop-languages", json={"url": url, "languages": ["de-DE"]})
    emu.admin.post(f"{API}/testing/account", json={"languages": ["en-GB"]})
    before = len(emu.admin.connections())
    r = create(emu, "shopware6", {**SW6, "url": url})
    assert error(r) == (422, "language_missing", "credentials.url")
    assert "de-DE" in r.json()["message"]
    assert len(emu.admin.connections()) == before  # nothing created
    emu.admin.post(f"{API}/testing/account", json={"languages": ["en-GB", "de-DE"]})
    created(emu, "shopware6", {**SW6, "url": url})


def test_bigcommerce_one_connection_per_store(emu: EmulatorProcess) -> None:
    app = emu.admin.marketplace_install(
        "bigcommerce", "BC app", {"storeHash": "store1", "accessToken": "app-token"}
    )
    assert emu.admin.connection(app)["credentials"] == {"storeHash": "store1", "accessToken": None}
    # the app makes one connection per store
    r = call(
        emu,
        "POST",
        "/testing/marketplace-install",
        json={"name": "again", "driver": "bigcommerce", "credentials": {"storeHash": "store1"}},
    )
    assert error(r) == (422, "store_hash_in_use", "credentials.storeHash")
    # by hand: a second connection for the store needs a different store hash
    r = create(emu, "bigcommerce", {"storeHash": "store1", "accessToken": "hand-token"})
    assert error(r) == (422, "store_hash_in_use", "credentials.storeHash")
    assert f"({app})" in r.json()["message"]
    other = created(emu, "bigcommerce", {"storeHash": "store2", "accessToken": "hand-token"})
    cid = other["connection"]["id"]
    r = call(emu, "PATCH", f"/connections/{cid}", json={"credentials": {"storeHash": "store1"}})
    assert error(r)[:2] == (422, "store_hash_in_use")
    # its own hash is no conflict
    r = call(emu, "PATCH", f"/connections/{cid}", json={"credentials": {"accessToken": "new1"}})
    assert r.status_code == 200


def test_bad_account_input_is_one_clear_error(emu: EmulatorProcess) -> None:
    r = call(emu, "POST", "/testing/account", json={"plugins": "klarna"})
    assert error(r) == (400, "bad_request", "plugins")
    r = call(emu, "POST", "/testing/shop-languages", json={"languages": ["de"]})
    assert error(r)[0] == 400
