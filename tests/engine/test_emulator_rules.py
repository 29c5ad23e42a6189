"""Every reconcile rule against the real emulator over real HTTP (subprocess, loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from chanops.condition import ConditionStatus, ConditionType
from chanops.engine.conditions import holding
from chanops.engine.plan import (
    AWAITING_AUTHORIZATION,
    AWAITING_MARKETPLACE_SETUP,
    FROZEN,
    SUSPENDED,
    ActionKind,
)
from chanops.engine.reconciler import EngineOptions, Reconciler
from chanops.manifests import load_manifests
from chanops.platform.client import PlatformClient, open_client
from chanops.state.store import Intent, Record, StateStore
from engine.helpers import ENV, load_result, manifest, write_manifest
from support.emulator import EmulatorProcess

WRITES = ("POST", "PATCH", "DELETE")


class Env:
    def __init__(self, emu: EmulatorProcess, client: PlatformClient, store: StateStore) -> None:
        self.emu = emu
        self.client = client
        self.store = store

    def reconciler(self, **kw: Any) -> Reconciler:
        kw.setdefault("environ", ENV)
        return Reconciler(client=self.client, store=self.store, options=EngineOptions(**kw))

    def writes(self) -> dict[str, int]:
        return {k: v for k, v in self.emu.admin.stats().items() if k.split()[0] in WRITES}

    def ids(self) -> dict[str, int]:
        return {
            r.name: r.connection_id
            for r in self.store.records().values()
            if r.connection_id is not None
        }


@pytest.fixture
async def env(emulator: EmulatorProcess, tmp_path: Path) -> AsyncIterator[Env]:
    store = StateStore.open(tmp_path / "state" / "state.db")
    async with open_client(emulator.url, emulator.token) as client:
        yield Env(emulator, client, store)
    store.close()


async def test_create_then_settings_converges_and_costs_nothing_after(env: Env) -> None:
    ms = [
        manifest("sw-a", settings={"klarna": True, "orders": {"importAboveNumber": "10"}}),
        manifest("tb-b", "tradebyte", enabled=False),
        manifest("sw-c", display_name="Shop C", automation={"orderDownload": "5m"}),
    ]
    rec = env.reconciler()
    result = await rec.reconcile(load_result(ms))
    assert result.converged, result.outcomes
    ids = env.ids()
    a = env.emu.admin.connection(ids["sw-a"])
    assert a["settings"] == {"klarna": True, "orders": {"importAboveNumber": "10"}}
    assert a["credentials"]["secretAccessKey"] is None  # write-only
    assert env.emu.admin.connection(ids["tb-b"])["status"] == "inactive"
    assert env.emu.admin.connection(ids["sw-c"])["name"] == "Shop C"
    assert env.emu.admin.connection(ids["sw-c"])["automation"]["orderDownload"] == "5m"

    # Converged: a second plan is empty and a full reconcile costs list pages only.
    env.emu.admin.reset_stats()
    again = await rec.reconcile(load_result(ms))
    assert again.plan.actions == ()
    assert env.emu.admin.stats() == {"GET /api/v1/connections": 1}


async def test_one_field_edit_costs_one_read_and_one_write(env: Env) -> None:
    # (not Klarna: turning it on is followed by a sync, tests/drivers)
    ms = [
        manifest(n, settings={"orders": {"importAboveNumber": "1"}})
        for n in ("one", "two", "three")
    ]
    rec = env.reconciler()
    assert (await rec.reconcile(load_result(ms))).converged
    edited = [replace(ms[0], settings={"orders": {"importAboveNumber": "2"}}), *ms[1:]]
    env.emu.admin.reset_stats()
    result = await rec.reconcile(load_result(edited), only={"one"})
    assert result.converged
    assert [a.kind for a in result.plan.actions] == [ActionKind.UPDATE]
    assert env.emu.admin.stats() == {
        "GET /api/v1/connections/{id}": 1,
        "PATCH /api/v1/connections/{id}": 1,
    }
    assert env.emu.admin.connection(env.ids()["one"])["settings"] == {
        "orders": {"importAboveNumber": "2"}
    }


async def test_settings_waiting_for_the_first_sync_are_applied_after_it(env: Env) -> None:
    m = manifest("sw", settings={"defaultLanguage": "de-DE", "klarna": True})
    result = await env.reconciler().reconcile(load_result([m]))
    assert result.converged, result.outcomes
    conn = env.emu.admin.connection(env.ids()["sw"])
    assert conn["settings"] == {"defaultLanguage": "de-DE", "klarna": True}
    # With jobs not followed, the value waits (condition) and the next reconcile applies it.
    m2 = manifest("sw2", settings={"defaultLanguage": "en-GB"})
    rec = env.reconciler(follow_jobs=False)
    first = await rec.reconcile(load_result([m, m2]))
    assert first.waiting.get("sw2") == ("AwaitingInitialSync",)
    assert not first.failed
    import asyncio

    for _ in range(100):
        second = await rec.reconcile(load_result([m, m2]))
        if not second.waiting:
            break
        await asyncio.sleep(0.1)
    assert env.emu.admin.connection(env.ids()["sw2"])["settings"] == {"defaultLanguage": "en-GB"}
    assert (await rec.plan(load_result([m, m2]))).actions == ()


async def test_adoption_by_name_and_driver_and_by_connection_id(env: Env) -> None:
    shop = env.emu.admin.marketplace_install("shopify", "My Shop", {"shopUrl": "a.myshopify.com"})
    pos = env.emu.admin.marketplace_install("actindo-pos", "Store 1")
    other = env.emu.admin.marketplace_install("actindo-pos", "Somebody else's")
    ms = [
        manifest("shop", "shopify", display_name="My Shop"),
        manifest("pos", "actindo-pos", display_name="Front store", connection_id=pos),
    ]
    env.emu.admin.reset_stats()
    result = await env.reconciler().reconcile(load_result(ms))
    assert result.converged, result.outcomes
    assert env.ids() == {"shop": shop, "pos": pos}
    assert "POST /api/v1/connections" not in env.emu.admin.stats()  # nothing created
    assert env.emu.admin.connection(pos)["name"] == "Front store"
    assert [u.connection_id for u in result.plan.unmanaged] == [other]
    assert env.emu.admin.connection(other)["version"] == 1  # unmanaged: never written


async def test_ambiguous_adoption_is_an_error_naming_the_candidates(env: Env) -> None:
    a = env.emu.admin.marketplace_install("shopify", "Twin", {"shopUrl": "a.myshopify.com"})
    b = env.emu.admin.marketplace_install("shopify", "Twin", {"shopUrl": "b.myshopify.com"})
    ok = manifest("fine", "tradebyte")
    result = await env.reconciler().reconcile(
        load_result([manifest("twin", "shopify", display_name="Twin"), ok])
    )
    assert not result.converged
    assert result.failed == ("twin",)
    (error,) = result.plan.errors
    assert f"ids {a}, {b}" in error.message
    assert "fine" in env.ids()  # one failing connection never blocks the others


async def test_non_creatable_driver_waits_for_marketplace_setup_without_spam(env: Env) -> None:
    m = manifest("shop", "shopify", display_name="Not installed yet")
    rec = env.reconciler()
    with capture_logs() as logs:
        first = await rec.reconcile(load_result([m]))
        second = await rec.reconcile(load_result([m]))
    assert first.converged and second.converged
    assert first.waiting == {"shop": (AWAITING_MARKETPLACE_SETUP,)}
    assert "POST /api/v1/connections" not in env.emu.admin.stats()
    conditions = [e for e in logs if e["event"] == "connection.condition"]
    # Each transition logged once, not every reconcile: the domain condition (info)
    # and Ready turning False for it (debug).
    assert [(e["condition"], e["status"], e["log_level"]) for e in conditions] == [
        ("AwaitingMarketplaceSetup", "True", "info"),
        ("Ready", "False", "debug"),
    ]
    assert conditions[1]["reason"] == "AwaitingMarketplaceSetup"
    assert not [e for e in logs if e["log_level"] == "error"]
    # Installed from the marketplace: adopted on the next reconcile.
    cid = env.emu.admin.marketplace_install("shopify", "Not installed yet")
    third = await rec.reconcile(load_result([m]))
    assert third.converged and env.ids() == {"shop": cid}
    adopted = env.store.get("shop")
    assert adopted is not None
    # The wait is over: no domain condition left, and Ready says it converged.
    assert [(c.type, c.status, c.reason) for c in adopted.conditions] == [
        (ConditionType.READY, ConditionStatus.TRUE, "ReconciliationSucceeded")
    ]


async def test_non_creatable_connection_id_not_yet_installed_waits_not_fails(env: Env) -> None:
    """A manifest bound by connectionId to a Shopify connection the app has not made yet."""
    seed = env.emu.admin.marketplace_install("shopify", "Someone else's")  # the list is seen
    m = manifest("shop", "shopify", connection_id=seed + 100)
    result = await env.reconciler().reconcile(load_result([m]))
    assert result.converged
    assert result.failed == ()
    assert result.waiting == {"shop": (AWAITING_MARKETPLACE_SETUP,)}
    assert result.plan.errors == ()
    assert "POST /api/v1/connections" not in env.emu.admin.stats()


async def test_amazon_awaits_authorization_until_the_oauth_flow(env: Env) -> None:
    m = manifest("amz", "amazon")
    rec = env.reconciler()
    first = await rec.reconcile(load_result([m]))
    assert first.waiting == {"amz": (AWAITING_AUTHORIZATION,)}
    env.emu.admin.authorize(env.ids()["amz"])
    second = await rec.reconcile(load_result([m]))
    assert second.waiting == {}
    assert second.plan.actions == ()  # the OAuth version bump is not drift to heal


async def test_immutable_change_refused_unless_allow_recreate(env: Env) -> None:
    m = manifest("amz", "amazon")
    await env.reconciler().reconcile(load_result([m]))
    old = env.ids()["amz"]
    fr = replace(m, credentials={"sellerId": "A1", "marketplace": "FR"})
    refused = await env.reconciler().reconcile(load_result([fr]))
    assert not refused.converged
    (blocked,) = refused.blocked
    assert blocked.rule == "immutable" and "--allow-recreate" in blocked.reason
    assert env.emu.admin.connection(old)["credentials"]["marketplace"] == "DE"
    done = await env.reconciler(allow_recreate=True).reconcile(load_result([fr]))
    assert done.converged, done.outcomes
    new = env.ids()["amz"]
    assert new != old
    assert env.emu.admin.connection(new)["credentials"]["marketplace"] == "FR"
    assert env.emu.admin.request("GET", f"/api/v1/connections/{old}").status_code == 404


async def test_delete_disables_first_and_follows_the_job(env: Env) -> None:
    ms = [manifest(n) for n in ("keep1", "keep2", "keep3", "gone")]
    rec = env.reconciler()
    await rec.reconcile(load_result(ms))
    gone = env.ids()["gone"]
    with capture_logs() as logs:
        result = await rec.reconcile(load_result(ms[:3]))
    assert result.converged, result.outcomes
    assert env.emu.admin.request("GET", f"/api/v1/connections/{gone}").status_code == 404
    assert "gone" not in env.ids()
    stats = env.emu.admin.stats()
    assert stats["POST /api/v1/connections/disable"] >= 1
    events = [e["event"] for e in logs if e.get("connection") == "gone"]
    assert events == ["connection.disabled", "connection.deleted"]


async def test_deletion_policies_disable_and_orphan(env: Env) -> None:
    ms = [
        manifest("dis", deletion_policy="Disable"),
        manifest("orph", deletion_policy="Orphan"),
        *(manifest(f"k{i}") for i in range(4)),
    ]
    rec = env.reconciler()
    await rec.reconcile(load_result(ms))
    ids = env.ids()
    result = await rec.reconcile(load_result(ms[2:]))
    assert result.converged, result.outcomes
    assert env.emu.admin.connection(ids["dis"])["status"] == "inactive"
    assert "dis" in env.ids()  # kept, managed, disabled
    orphan = env.emu.admin.connection(ids["orph"])
    assert orphan["status"] == "active" and orphan["version"] == 1  # untouched
    assert "orph" not in env.ids()
    again = await rec.reconcile(load_result(ms[2:]))
    assert again.plan.actions == ()
    assert ids["orph"] in {u.connection_id for u in again.plan.unmanaged}


async def test_suspend_does_nothing_at_all(env: Env) -> None:
    m = manifest("sw", settings={"klarna": True})
    rec = env.reconciler()
    await rec.reconcile(load_result([m]))
    cid = env.ids()["sw"]
    env.emu.admin.post("/api/v1/connections/disable", json={"ids": [cid]})
    env.emu.admin.reset_stats()
    suspended = replace(m, suspend=True, settings={"klarna": False})
    result = await rec.reconcile(load_result([suspended]))
    assert result.plan.actions == ()
    assert result.plan.conditions == {"sw": (holding(SUSPENDED),)}
    assert env.writes() == {}
    assert env.emu.admin.connection(cid)["status"] == "inactive"


async def test_ignore_differences_are_reported_not_healed(env: Env) -> None:
    m = manifest(
        "sw",
        settings={"klarna": True, "orders": {"importAboveNumber": "1"}},
        ignore_differences=("/settings/orders",),
    )
    rec = env.reconciler()
    await rec.reconcile(load_result([m]))
    cid = env.ids()["sw"]
    conn = env.emu.admin.connection(cid)
    env.emu.admin.patch(
        f"/api/v1/connections/{cid}",
        {"settings": {"orders": {"importAboveNumber": "99"}}},
        headers={"If-Match": str(conn["version"])},
    )
    plan = await rec.plan(load_result([m]))
    assert [(i.path, i.before, i.after) for i in plan.ignored] == [
        ("/settings/orders/importAboveNumber", "99", "1")
    ]
    # The version moved (someone else wrote), so secrets are re-applied; nothing else.
    assert [c.path for a in plan.actions for c in a.changes] == ["/credentials/secretAccessKey"]
    assert (await rec.reconcile(load_result([m]))).converged
    assert env.emu.admin.connection(cid)["settings"]["orders"] == {"importAboveNumber": "99"}
    assert (await rec.plan(load_result([m]))).actions == ()


async def test_drift_is_detected_and_healed(env: Env) -> None:
    m = manifest("sw", display_name="Shop", settings={"klarna": True})
    rec = env.reconciler()
    await rec.reconcile(load_result([m]))
    cid = env.ids()["sw"]
    conn = env.emu.admin.connection(cid)
    env.emu.admin.patch(
        f"/api/v1/connections/{cid}",
        {"name": "Renamed in UI", "settings": {"klarna": False}},
        headers={"If-Match": str(conn["version"])},
    )
    env.emu.admin.post("/api/v1/connections/disable", json={"ids": [cid]})
    with capture_logs() as logs:
        result = await rec.reconcile(load_result([m]))
    assert result.converged
    healed = env.emu.admin.connection(cid)
    assert (healed["name"], healed["settings"], healed["status"]) == (
        "Shop",
        {"klarna": True},
        "active",
    )
    drift = [e for e in logs if e["event"] == "drift.detected"]
    paths = {c["path"]: c for e in drift for c in e["changes"]}
    assert paths["/enabled"]["after"] is True
    assert paths["/name"]["before"] == "Renamed in UI"
    assert paths["/settings/klarna"]["after"] is True
    # The version moved by someone else: secrets are re-applied, shown as sensitive.
    assert paths["/credentials/secretAccessKey"]["after"] == "(sensitive value)"
    assert (await rec.plan(load_result([m]))).actions == ()


async def test_rotated_secret_is_reapplied(env: Env) -> None:
    m = manifest("sw")
    await env.reconciler().reconcile(load_result([m]))
    assert (await env.reconciler().plan(load_result([m]))).actions == ()
    rotated = env.reconciler(environ={**ENV, "SW_SECRET": "rotated-secret"})
    plan = await rotated.plan(load_result([m]))
    (action,) = plan.actions
    (change,) = action.changes
    assert (change.path, change.sensitive, change.before, change.after) == (
        "/credentials/secretAccessKey",
        True,
        None,
        None,
    )
    assert "rotated-secret" not in str(plan.to_json())
    assert (await rotated.reconcile(load_result([m]))).converged
    assert (await rotated.plan(load_result([m]))).actions == ()


async def test_lost_update_rereads_and_replans(env: Env) -> None:
    m = manifest("sw", settings={"klarna": True})
    rec = env.reconciler()
    await rec.reconcile(load_result([m]))
    cid = env.ids()["sw"]
    edited = replace(m, settings={"klarna": False, "ratepay": True})
    prepared = await rec.prepare(load_result([edited]))
    # Someone writes between our read and our write: If-Match makes that a 412.
    conn = env.emu.admin.connection(cid)
    env.emu.admin.patch(
        f"/api/v1/connections/{cid}",
        {"name": "UI"},
        headers={"If-Match": str(conn["version"])},
    )
    result = await rec.execute(prepared)
    assert result.converged, result.outcomes
    assert env.emu.admin.stats()["PATCH /api/v1/connections/{id}"] >= 3  # 412 then retry
    final = env.emu.admin.connection(cid)
    assert final["settings"] == {"klarna": False, "ratepay": True}


async def test_failed_file_freezes_its_connections(env: Env, tmp_path: Path) -> None:
    root = tmp_path / "connections.d"
    write_manifest(root, "a", settings="    klarna: true\n")
    write_manifest(root, "b")
    rec = env.reconciler()
    load = load_manifests([root])
    assert (await rec.reconcile(load)).converged
    ids = env.ids()
    version = env.emu.admin.connection(ids["a"])["version"]
    (root / "a.yaml").write_text("apiVersion: chanops/v1\nkind: Connection\nspec: [broken\n")
    write_manifest(root, "b", settings="    klarna: true\n")
    load2 = load_manifests([root])
    assert str(root / "a.yaml") in load2.failed_files
    env.emu.admin.reset_stats()
    result = await rec.reconcile(load2)
    (frozen,) = result.plan.conditions["a"]
    assert (frozen.type, frozen.status) == (FROZEN, ConditionStatus.TRUE)
    assert "a.yaml" in frozen.message  # the guard's reason names the file
    assert env.emu.admin.connection(ids["a"])["version"] == version  # untouched, kept
    assert env.emu.admin.connection(ids["b"])["settings"] == {"klarna": True}  # others proceed


async def test_empty_or_unreadable_root_deletes_nothing(env: Env, tmp_path: Path) -> None:
    root = tmp_path / "connections.d"
    write_manifest(root, "a")
    rec = env.reconciler()
    await rec.reconcile(load_manifests([root]))
    (root / "a.yaml").unlink()
    empty = await rec.reconcile(load_manifests([root]))
    assert [b.rule for b in empty.blocked] == ["root-unreadable"]
    missing = await rec.reconcile(load_manifests([tmp_path / "nope"]))
    assert [b.rule for b in missing.blocked] == ["root-unreadable"]
    assert "DELETE /api/v1/connections/{id}" not in env.emu.admin.stats()
    assert "POST /api/v1/connections/disable" not in env.emu.admin.stats()
    assert env.emu.admin.connection(env.ids()["a"])["status"] == "active"


async def test_mass_delete_guard_blocks_every_delete(env: Env) -> None:
    ms = [manifest(f"c{i}") for i in range(8)]
    rec = env.reconciler()
    await rec.reconcile(load_result(ms))
    with capture_logs() as logs:
        result = await rec.reconcile(load_result(ms[:5]))  # 3 deletes > 25% of 8 = 2
    assert not result.converged
    assert {b.rule for b in result.blocked} == {"mass-delete"}
    assert len(env.ids()) == 8
    assert "DELETE /api/v1/connections/{id}" not in env.emu.admin.stats()
    assert any(e["event"] == "guard.blocked" for e in logs)
    allowed = await env.reconciler(max_delete=3).reconcile(load_result(ms[:5]))
    assert allowed.converged and len(env.ids()) == 5


async def test_a_create_in_flight_at_a_crash_is_adopted_not_repeated(env: Env) -> None:
    m = manifest("crashed")
    # What a crash leaves behind: the intent on disk, the create done on the platform,
    # its answer never recorded.
    env.store.put(
        Record(name="crashed", driver="shopware6", intent=Intent("create", idempotency_key="k1"))
    )
    made = env.emu.admin.post(
        "/api/v1/connections",
        json={
            "name": "crashed",
            "driver": "shopware6",
            "credentials": {
                "url": "https://shop.example.com",
                "accessKeyId": "SWIA1",
                "secretAccessKey": "x",
            },
        },
        headers={"Idempotency-Key": "k1"},
    )
    env.emu.admin.reset_stats()
    result = await env.reconciler().reconcile(load_result([m]))
    assert result.converged, result.outcomes
    assert [a.kind for a in result.plan.actions][:1] == [ActionKind.ADOPT]
    assert "in flight" in result.plan.actions[0].reason
    assert "POST /api/v1/connections" not in env.emu.admin.stats()
    assert env.ids() == {"crashed": made["connection"]["id"]}
    assert len(env.emu.admin.connections()) == 1
    assert env.store.get("crashed").intent is None  # type: ignore[union-attr]
