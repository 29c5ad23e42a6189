"""What a daemon batch re-reads from the store after it ran: the rows it wrote.

A resync batch of 1,000 converged names used to read all 1,000 rows back (a fifth of a
resync's CPU). `ReconcileResult.written` names the rows a reconcile wrote; the record
cache must still end up equal to the store, or the next plan of a name would start from
a stale version and fingerprint.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from chanops.daemon._cache import RecordCache
from chanops.engine.reconciler import EngineOptions, Reconciler
from chanops.state.store import StateStore
from engine.fake_platform import FakePlatform
from engine.helpers import ENV, load_result, manifest

NAMES = [f"c{i}" for i in range(6)]


def reconciler(tmp_path: Path) -> tuple[FakePlatform, StateStore, Reconciler]:
    platform = FakePlatform()
    store = StateStore.open(tmp_path / "state.db")
    options = EngineOptions(environ=ENV, job_timeout=1)
    return platform, store, Reconciler(client=platform, store=store, options=options)


def test_written_names_the_rows_a_reconcile_wrote(tmp_path: Path) -> None:
    platform, store, rec = reconciler(tmp_path)
    first = load_result([manifest(n) for n in NAMES])
    created = asyncio.run(rec.reconcile(first))
    assert created.written == frozenset(NAMES)

    # Converged: a partial reconcile of every name writes nothing at all.
    again = asyncio.run(rec.reconcile(first, only=set(NAMES)))
    assert not again.plan.actions
    assert again.written == frozenset()

    # One rename: that row, and only that one.
    second = load_result(
        [manifest(n, display_name=f"{n} renamed" if n == "c2" else n) for n in NAMES]
    )
    renamed = asyncio.run(rec.reconcile(second, only=set(NAMES)))
    assert [a.name for a in renamed.plan.actions] == ["c2"]
    assert renamed.written == frozenset({"c2"})

    # Moved on the platform by someone else (a UI edit): the version is remembered.
    cid = store.get("c4").connection_id  # type: ignore[union-attr]
    assert cid is not None
    platform.ui_edit(cid, status=platform.rows[cid].status)  # a write that changes nothing
    moved = asyncio.run(rec.reconcile(second, only=set(NAMES)))
    assert "c4" in moved.written  # type: ignore[operator]
    store.close()


def test_a_cache_fed_the_written_rows_equals_the_store(tmp_path: Path) -> None:
    _, store, rec = reconciler(tmp_path)
    cache = RecordCache(store)
    load = load_result([manifest(n) for n in NAMES])
    asyncio.run(rec.reconcile(load))
    cache.replace(cache.read_all())
    for step in range(3):
        edited = load_result(
            [manifest(n, display_name=f"{n} v{step}" if n in ("c1", "c5") else n) for n in NAMES]
        )
        prepared = asyncio.run(rec.prepare(edited, only=set(NAMES), memory=cache.snapshot()))
        result = asyncio.run(rec.execute(prepared))
        assert result.written is not None
        cache.apply(cache.read(result.written))
        assert cache.snapshot() == store.records()
    store.close()


def test_a_rotated_secret_is_written_though_the_manifest_object_is_the_same(
    tmp_path: Path,
) -> None:
    """Fingerprints are reused for the same manifest object with the same secret HMACs
    (a resync of unchanged manifests): a new secret value must still be planned."""
    platform = FakePlatform()
    store = StateStore.open(tmp_path / "state.db")
    environ = dict(ENV)
    options = EngineOptions(environ=environ, job_timeout=1)
    rec = Reconciler(client=platform, store=store, options=options)
    load = load_result([manifest(n) for n in NAMES])
    asyncio.run(rec.reconcile(load))
    assert not asyncio.run(rec.reconcile(load, only=set(NAMES))).plan.actions

    environ["SW_SECRET"] = "sw-secret-rotated"
    rotated = asyncio.run(rec.reconcile(load, only={"c3"}))
    assert [(a.name, a.kind.value) for a in rotated.plan.actions] == [("c3", "update")]
    assert [c.path for c in rotated.plan.actions[0].changes] == ["/credentials/secretAccessKey"]
    store.close()
