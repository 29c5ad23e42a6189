"""The engine against the real emulator over HTTP: every driver converges, the syncs the
vendor's procedures require are planned, shown and run, and refusals that wait for a
change are Stalled.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from chanops.engine.plan import ActionKind, Cause
from chanops.engine.reconciler import EngineOptions, Reconciler
from chanops.engine.render import render_text
from chanops.manifests.model import Manifest, SecretRef, SourceLocation
from chanops.platform.client import PlatformClient, open_client
from chanops.state.store import StateStore
from engine.helpers import load_result
from support.emulator import EmulatorProcess, start_emulator

ENV = {
    "SW_SECRET": "sw-secret-value",
    "SFCC_CLIENT": "sfcc-client-value",
    "SFCC_USER": "sfcc-user-value",
    "SFCC_TOKEN": "sfcc-token-value",
    "MAGENTO_PW": "magento-password",
    "TB_REST": "tb-rest-value",
    "TB_SFTP": "tb-sftp-value",
    "BC_TOKEN": "bigcommerce-token",
}
_unique = itertools.count(1)


def manifest(name: str, driver: str, **kw: Any) -> Manifest:
    kw.setdefault("display_name", name)
    return Manifest(name=name, driver=driver, source=SourceLocation(f"{name}.yaml", 1, 1), **kw)


def shopware(name: str, url: str = "https://shop.example.com", **kw: Any) -> Manifest:
    creds = {"url": url, "accessKeyId": "SWIA1", "secretAccessKey": SecretRef(env="SW_SECRET")}
    return manifest(name, "shopware6", credentials=creds, **kw)


@dataclass
class Env:
    emu: EmulatorProcess
    client: PlatformClient
    store: StateStore

    def reconciler(self) -> Reconciler:
        return Reconciler(client=self.client, store=self.store, options=EngineOptions(environ=ENV))

    def id_of(self, name: str) -> int:
        record = self.store.get(name)
        assert record is not None and record.connection_id is not None, name
        return record.connection_id

    def jobs(self, cid: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.emu.admin.get(
            "/api/v1/jobs", params={"connection_id": cid, "limit": 500}
        )["items"]
        return items


@pytest.fixture
async def env(emu: EmulatorProcess, tmp_path: Path) -> AsyncIterator[Env]:
    store = StateStore.open(tmp_path / "state.db")
    async with open_client(emu.url, emu.token) as client:
        yield Env(emu, client, store)
    store.close()


def every_driver(tag: str, apps: dict[str, int]) -> list[Manifest]:
    """One manifest per driver (BigCommerce twice: by hand, and the app's), with settings."""
    staging = {
        "url": "https://staging.example.com",
        "clientId": "client",
        "clientPassword": SecretRef(env="SFCC_CLIENT"),
        "username": "integration@example.com",
        "userPassword": SecretRef(env="SFCC_USER"),
        "accessToken": SecretRef(env="SFCC_TOKEN"),
    }
    tradebyte = {
        "merchantNumber": "4711",
        "shopName": "fashion",
        "restUsername": "rest",
        "restPassword": SecretRef(env="TB_REST"),
        "sftpUsername": "sftp",
        "sftpPassword": SecretRef(env="TB_SFTP"),
    }
    magento = {
        "url": "https://m.example.com",
        "username": "u",
        "password": SecretRef(env="MAGENTO_PW"),
    }
    bigcommerce = {"storeHash": f"hand{tag}", "accessToken": SecretRef(env="BC_TOKEN")}
    return [
        shopware(
            f"sw-{tag}",
            settings={"defaultLanguage": "de-DE", "priceRules": ["b2b"], "klarna": True},
        ),
        manifest(
            f"shopify-{tag}",
            "shopify",
            connection_id=apps["shopify"],
            settings={"orderImport": {"defaultTaxClass": "standard"}},
        ),
        manifest(
            f"sfcc-{tag}",
            "sfcc",
            credentials={"staging": staging},
            settings={
                "taxClasses": [{"code": "standard", "actindoId": 1}],
                "defaultLanguage": "de",
                "uploadMode": {"mode": "delayed", "delayMinutes": 10},
            },
        ),
        manifest(
            f"amazon-{tag}",
            "amazon",
            credentials={"sellerId": "A1", "marketplace": "DE"},
            settings={"shippingProviderMapping": {"default": "DHL"}},
        ),
        manifest(
            f"magento-{tag}",
            "magento2",
            credentials=magento,
            settings={
                "orderStates": {"createInvoiceWhenPaid": True, "notifyCustomerAboutInvoice": True},
                "imageName": {"useEcmName": True},
            },
        ),
        manifest(
            f"tradebyte-{tag}",
            "tradebyte",
            credentials=tradebyte,
            settings={"salesChannels": ["zalando"], "languages": ["de", "en"]},
        ),
        manifest(f"pos-{tag}", "actindo-pos", connection_id=apps["actindo-pos"]),
        manifest(
            f"bc-{tag}",
            "bigcommerce",
            credentials=bigcommerce,
            settings={
                "variantOptionType": "rectangles",
                "orderFilters": {"statuses": ["Shipped"], "fromOrderId": 100},
                "offers": {"onlyPushMappedAttributes": True},
            },
        ),
        manifest(
            f"bc-app-{tag}",
            "bigcommerce",
            connection_id=apps["bigcommerce"],
            settings={"orderFilters": {"importArchived": True, "createdFrom": "2026-01-01"}},
        ),
    ]


async def test_a_manifest_for_every_driver_converges(env: Env) -> None:
    tag = str(next(_unique))
    admin = env.emu.admin
    apps = {
        "shopify": admin.marketplace_install(
            "shopify", f"Shopify {tag}", {"shopUrl": f"s{tag}.myshopify.com"}
        ),
        "actindo-pos": admin.marketplace_install("actindo-pos", f'POS store "{tag}"'),
        # the vendor's BigCommerce app: creates, synchronises and fills the credentials
        "bigcommerce": admin.marketplace_install(
            "bigcommerce",
            f"BigCommerce {tag}",
            {"storeHash": f"app{tag}", "accessToken": "app-token"},
        ),
    }
    manifests = every_driver(tag, apps)
    rec = env.reconciler()
    admin.reset_stats()
    result = await rec.reconcile(load_result(manifests))
    assert result.converged, [o for o in result.outcomes if not o.ok]
    # Created only what is made by hand; the app-made ones are adopted by connectionId.
    assert admin.stats()["POST /api/v1/connections"] == 6
    assert {n: env.id_of(n) for n in (f"shopify-{tag}", f"pos-{tag}", f"bc-app-{tag}")} == {
        f"shopify-{tag}": apps["shopify"],
        f"pos-{tag}": apps["actindo-pos"],
        f"bc-app-{tag}": apps["bigcommerce"],
    }
    # The syncs the procedures require, one per connection, after its create.
    synced = sorted(a.name for a in result.plan.actions if a.kind == ActionKind.SYNC)
    assert synced == [f"amazon-{tag}", f"sw-{tag}", f"tradebyte-{tag}"]
    # Everything is on the platform; the next plan is empty.
    for m in manifests:
        conn = admin.connection(env.id_of(m.name))
        assert conn["settings"] == m.settings, m.name
        assert conn["name"] == m.display_name
    assert (await rec.plan(load_result(manifests))).actions == ()


async def test_a_change_the_procedure_syncs_after_is_planned_shown_and_run(env: Env) -> None:
    name = f"sw-sync-{next(_unique)}"
    m = shopware(name, settings={"priceRules": ["b2b"]})
    rec = env.reconciler()
    assert (await rec.reconcile(load_result([m]))).converged
    cid = env.id_of(name)

    edited = replace(m, settings={"priceRules": ["b2b", "vip"], "klarna": True})
    plan = await rec.plan(load_result([edited]))
    assert [(a.kind, a.cause) for a in plan.actions] == [
        (ActionKind.UPDATE, Cause.MANIFEST),
        (ActionKind.SYNC, Cause.PROCEDURE),  # one sync for both fields
    ]
    sync = plan.actions[1]
    assert sync.connection_id == cid
    assert sync.reason == (
        "the vendor's procedure requires a sync after a change to /settings/priceRules, "
        "/settings/klarna turned on"
    )
    assert f"# {name} (id {cid}) will be synced ({sync.reason})" in render_text(plan)

    before = {j["id"] for j in env.jobs(cid)}
    result = await rec.reconcile(load_result([edited]))
    assert result.converged, result.outcomes
    assert [(o.action, o.ok) for o in result.outcomes] == [("update", True), ("sync", True)]
    (job,) = [j for j in env.jobs(cid) if j["id"] not in before]
    assert (job["kind"], job["state"]) == ("sync", "succeeded")  # followed to its end
    record = env.store.get(name)
    assert record is not None
    assert (record.last_sync_job, record.last_sync_outcome) == (job["id"], "succeeded")
    # The sync ran after the update: it created the "vip" attribute, so the rule is locked.
    r = env.emu.admin.request(
        "PATCH", f"/api/v1/connections/{cid}", json={"settings": {"priceRules": ["b2b"]}}
    )
    assert (r.status_code, r.json()["error"]) == (422, "locked_setting")

    # Turning Klarna off is no procedure's business; a disabled connection gets no sync.
    off = replace(edited, settings={"priceRules": ["b2b", "vip"], "klarna": False})
    assert [a.kind for a in (await rec.plan(load_result([off]))).actions] == [ActionKind.UPDATE]
    disabled = replace(edited, enabled=False, settings={"priceRules": ["b2b", "vip", "x"]})
    kinds = [a.kind for a in (await rec.plan(load_result([disabled]))).actions]
    assert kinds == [ActionKind.UPDATE, ActionKind.DISABLE]


async def test_a_failed_sync_fails_the_action_and_says_why(env: Env) -> None:
    name = f"tb-fail-{next(_unique)}"
    creds = {
        "merchantNumber": "1",
        "shopName": "shop",
        "restUsername": "rest",
        "restPassword": SecretRef(env="TB_REST"),
        "sftpUsername": "sftp",
        "sftpPassword": SecretRef(env="TB_SFTP"),
    }
    m = manifest(name, "tradebyte", credentials=creds, settings={"salesChannels": ["zalando"]})
    rec = env.reconciler()
    assert (await rec.reconcile(load_result([m]))).converged
    # The emulator's syncs fail for a connection holding a "fail-sync" value.
    broken = replace(
        m,
        credentials={**creds, "sftpPassword": "fail-sync-password"},
        settings={"salesChannels": ["zalando", "otto"]},
    )
    result = await rec.reconcile(load_result([broken]))
    assert [(o.action, o.ok) for o in result.outcomes] == [("update", True), ("sync", False)]
    assert result.failed == (name,)
    error = result.outcomes[1].error or ""
    assert error.startswith("sync job ") and "failed" in error
    record = env.store.get(name)
    assert record is not None and record.last_sync_outcome == "failed"


async def test_a_missing_datahub_language_is_stalled_until_the_account_changes(
    env: Env,
) -> None:
    admin = env.emu.admin
    before = admin.get("/api/v1/testing/account")
    url = f"https://lang{next(_unique)}.example.com"
    admin.post("/api/v1/testing/shop-languages", json={"url": url, "languages": ["fr-FR"]})
    admin.post("/api/v1/testing/account", json={"languages": ["de-DE"]})
    try:
        m = shopware(f"sw-{url[8:14]}", url=url)
        rec = env.reconciler()
        result = await rec.reconcile(load_result([m]))
        (outcome,) = result.outcomes
        assert not outcome.ok and outcome.info is not None
        # a refusal: the daemon parks it until the manifest changes (no retry loop)
        assert (outcome.info.code, outcome.info.refusal) == ("language_missing", True)
        assert "fr-FR" in outcome.info.message
        record = env.store.get(m.name)
        assert record is not None
        stalled = {c.type.value: c for c in record.conditions}["Stalled"]
        assert (stalled.status.value, stalled.reason) == ("True", "LanguageMissing")
        assert "fr-FR" in stalled.message
        # the account gets the language: the next reconcile creates it
        admin.post("/api/v1/testing/account", json={"languages": ["de-DE", "fr-FR"]})
        assert (await rec.reconcile(load_result([m]))).converged
        record = env.store.get(m.name)
        assert record is not None and record.connection_id is not None
        assert "Stalled" not in {c.type.value for c in record.conditions}
    finally:
        admin.post("/api/v1/testing/account", json=before)


async def test_klarna_without_its_plugins_is_stalled(env: Env) -> None:
    admin = env.emu.admin
    before = admin.get("/api/v1/testing/account")
    admin.post("/api/v1/testing/account", json={"plugins": ["ratepay", "shopware"]})
    try:
        m = shopware(f"sw-klarna-{next(_unique)}")
        rec = env.reconciler()
        assert (await rec.reconcile(load_result([m]))).converged
        on = replace(m, settings={"klarna": True})
        result = await rec.reconcile(load_result([on]))
        failed = [o for o in result.outcomes if not o.ok]
        assert [(o.action, o.info.code if o.info else None) for o in failed] == [
            ("update", "plugin_not_installed")
        ]
        assert [o.action for o in result.outcomes] == ["update"]  # no sync after a refusal
        record = env.store.get(m.name)
        assert record is not None
        reasons = {c.type.value: c.reason for c in record.conditions}
        assert reasons["Stalled"] == "PluginNotInstalled"
    finally:
        admin.post("/api/v1/testing/account", json=before)


async def test_a_sync_already_running_before_the_change_is_not_the_procedures_sync(
    tmp_path: Path,
) -> None:
    """A sync the platform started before the update (a schedule, a person) read the old
    settings: chanops follows it to its end and then starts the sync the change needs."""
    with start_emulator(tmp_path / "slow", time_scale=0.3) as emu:  # a sync takes 0.75 s
        store = StateStore.open(tmp_path / "state.db")
        async with open_client(emu.url, emu.token) as client:
            env = Env(emu, client, store)
            m = shopware("sw-running", settings={"priceRules": ["b2b"]})
            rec = env.reconciler()
            assert (await rec.reconcile(load_result([m]))).converged
            cid = env.id_of(m.name)
            running = emu.admin.post(f"/api/v1/connections/{cid}/sync")
            assert running["state"] in ("queued", "running")

            edited = replace(m, settings={"priceRules": ["b2b", "vip"]})
            result = await rec.reconcile(load_result([edited]))
            assert [(o.action, o.ok) for o in result.outcomes] == [("update", True), ("sync", True)]
            record = store.get(m.name)
            assert record is not None and record.last_sync_job != running["id"]
            (job,) = [j for j in env.jobs(cid) if j["id"] == record.last_sync_job]
            assert (job["kind"], job["state"]) == ("sync", "succeeded")
            # the sync chanops followed used "vip": the rule is locked now
            r = emu.admin.request(
                "PATCH", f"/api/v1/connections/{cid}", json={"settings": {"priceRules": ["b2b"]}}
            )
            assert (r.status_code, r.json()["error"]) == (422, "locked_setting")
        store.close()
