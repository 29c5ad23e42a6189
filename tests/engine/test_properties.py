"""Property tests: the planner and executor over random desired and observed states.

The platform is `FakePlatform`, a pure in-memory model of its documented semantics, so
hypothesis can run many full reconciles; the store is the real SQLite store.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanops.engine.plan import ActionKind
from chanops.engine.reconciler import EngineOptions, Reconciler
from chanops.manifests.model import Manifest
from chanops.state.store import StateStore
from engine.fake_platform import FakePlatform
from engine.helpers import ENV, load_result, manifest

NAMES = ["a", "b", "c", "d", "e"]
DRIVERS = ["shopware6", "tradebyte", "shopify", "actindo-pos"]
DISPLAY = ["Alpha", "Beta"]

settings_st = st.dictionaries(
    st.sampled_from(["klarna", "ratepay", "orders"]),
    st.one_of(st.booleans(), st.sampled_from(["x", "y"]), st.just({"importAboveNumber": "5"})),
    max_size=2,
)


@st.composite
def manifests_st(draw: Any) -> list[Manifest]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=5))
    out = []
    for name in names:
        driver = draw(st.sampled_from(DRIVERS))
        out.append(
            manifest(
                name,
                driver,
                display_name=draw(st.sampled_from([name, *DISPLAY])),
                enabled=draw(st.booleans()),
                settings=draw(settings_st) if driver == "shopware6" else {},
                deletion_policy=draw(st.sampled_from(["Delete", "Disable", "Orphan"])),
                suspend=draw(st.booleans()) and draw(st.booleans()),
            )
        )
    return out


unmanaged_st = st.lists(
    st.tuples(st.sampled_from(DRIVERS), st.sampled_from([*DISPLAY, "a", "zz"])), max_size=4
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=manifests_st(),
    second=manifests_st(),
    unmanaged=unmanaged_st,
    drift=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(["off", "rename", "set"]))),
    failed=st.lists(st.sampled_from(NAMES), unique=True, max_size=2),
    max_delete=st.one_of(st.none(), st.integers(0, 3)),
    allow_recreate=st.booleans(),
)
def test_apply_converges_and_keeps_the_safety_rules(
    first: list[Manifest],
    second: list[Manifest],
    unmanaged: list[tuple[str, str]],
    drift: list[tuple[str, str]],
    failed: list[str],
    max_delete: int | None,
    allow_recreate: bool,
) -> None:
    platform = FakePlatform()
    for driver, name in unmanaged:
        platform.install(driver, name, credentials={"k": "v"})
    unmanaged_ids = set(platform.rows)
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore.open(Path(tmp) / "state.db")
        options = EngineOptions(
            max_delete=max_delete, allow_recreate=allow_recreate, environ=ENV, job_timeout=1
        )
        rec = Reconciler(client=platform, store=store, options=options)
        ever_managed: set[int] = set()

        def managed_ids() -> dict[str, int]:
            return {
                r.name: r.connection_id
                for r in store.records().values()
                if r.connection_id is not None
            }

        run(rec.reconcile(load_result(first)))
        ever_managed |= set(managed_ids().values())

        # Someone edits connections in the UI.
        for name, what in drift:
            cid = managed_ids().get(name)
            if cid is None or cid not in platform.rows:
                continue
            if what == "off":
                platform.ui_edit(cid, status="inactive")
            elif what == "rename":
                platform.ui_edit(cid, name="renamed-in-ui")
            else:
                platform.ui_edit(cid, settings={"klarna": "ui"})

        # The next revision, with some files failing to load.
        failed_files = {f"{n}.yaml" for n in failed}
        frozen = {
            r.connection_id: platform.rows[r.connection_id].version
            for r in store.records().values()
            if r.source_file in failed_files
            and r.connection_id is not None
            and r.connection_id in platform.rows
        }
        # Files gone while others fail: their connections wait, untouched, too.
        second_files = {f"{m.name}.yaml" for m in second} | failed_files
        if failed_files:
            frozen |= {
                r.connection_id: platform.rows[r.connection_id].version
                for r in store.records().values()
                if r.source_file not in second_files
                and r.connection_id is not None
                and r.connection_id in platform.rows
            }
        before = set(platform.rows)
        writes_before = dict(platform.writes)
        second_names = {m.name for m in second}
        root_has_files = bool(second) or bool(failed_files)  # an empty root forgets nothing
        orphaned = {
            r.connection_id
            for r in store.records().values()
            if root_has_files
            and not failed_files  # a removal waits while any file fails (unhealthy root)
            and r.deletion_policy == "Orphan"
            and r.name not in second_names
            and r.source_file not in failed_files
            and r.connection_id is not None
        }
        load2 = load_result(second, failed=failed_files)
        first_plan = run(rec.plan(load2))
        deletes = [a for a in first_plan.actions if a.kind in (ActionKind.DELETE,)]
        result = run(rec.reconcile(load2))
        ever_managed |= set(managed_ids().values())
        assert not result.failed or result.plan.errors, result.outcomes

        # A second plan right after an apply is empty.
        again = run(rec.plan(load2))
        assert again.actions == (), again.actions

        # Unmanaged connections are never written.
        for cid in unmanaged_ids - ever_managed:
            assert platform.writes.get(cid, 0) == 0

        # An orphaned connection is forgotten without a single write.
        for cid in orphaned:
            assert platform.writes.get(cid, 0) == writes_before.get(cid, 0)
            assert cid not in managed_ids().values() or cid in frozen

        # Frozen connections are not touched.
        for cid, version in frozen.items():
            assert cid in platform.rows
            assert platform.rows[cid].version == version

        # The guard: more deletes than allowed means none at all.
        limit = first_plan.max_delete
        deleted = before - set(platform.rows)
        if (
            len(deletes) + sum(1 for a in first_plan.actions if a.kind == ActionKind.RECREATE)
            > limit
        ):
            assert not deleted
        assert len(deleted) <= max(limit, 0) or not deleted

        # Converged: every active desired manifest has its connection as asked.
        ids = managed_ids()
        for m in load2.manifests:
            if m.suspend or m.name in {e.name for e in result.plan.errors}:
                continue
            if any(b.name == m.name for b in result.plan.blocked):
                continue
            cid = ids.get(m.name)
            if cid is None:
                assert m.driver in ("shopify", "actindo-pos")
                continue
            row = platform.rows[cid]
            assert row.driver == m.driver
            assert row.name == m.display_name
            assert row.status == ("active" if m.enabled else "inactive")
            for key, value in m.settings.items():
                assert row.settings.get(key) == value
        store.close()
