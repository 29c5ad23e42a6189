"""Property tests: the planner and executor over random desired and observed states.

The platform is `FakePlatform`, a pure in-memory model of its documented semantics, so
hypothesis can run many full reconciles; the store is the real SQLite store.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanops.engine.plan import ActionKind
from chanops.engine.reconciler import EngineOptions, Reconciler, ReconcileResult
from chanops.manifests.model import LoadResult, Manifest
from chanops.state.store import StateStore
from engine.fake_platform import FakePlatform
from engine.helpers import ENV, load_result, manifest

NAMES = ["a", "b", "c", "d", "e"]
DRIVERS = ["shopware6", "tradebyte", "shopify", "actindo-pos"]
DISPLAY = ["Alpha", "Beta"]
DELETING = (ActionKind.DELETE, ActionKind.RECREATE)

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


@dataclass
class World:
    """One platform, one store, one reconciler: the property test's universe."""

    platform: FakePlatform
    store: StateStore
    rec: Reconciler
    ever_managed: set[int] = field(default_factory=set)

    def managed_ids(self) -> dict[str, int]:
        return {
            r.name: r.connection_id
            for r in self.store.records().values()
            if r.connection_id is not None
        }

    def reconcile(self, load: LoadResult) -> ReconcileResult:
        result: ReconcileResult = run(self.rec.reconcile(load))
        self.ever_managed |= set(self.managed_ids().values())
        return result

    def edit_in_the_ui(self, drift: list[tuple[str, str]]) -> None:
        for name, what in drift:
            cid = self.managed_ids().get(name)
            if cid is None or cid not in self.platform.rows:
                continue
            if what == "off":
                self.platform.ui_edit(cid, status="inactive")
            elif what == "rename":
                self.platform.ui_edit(cid, name="renamed-in-ui")
            else:
                self.platform.ui_edit(cid, settings={"klarna": "ui"})

    def held_back(self, second: list[Manifest], failed_files: set[str]) -> dict[int, int]:
        """Connection id -> version of every connection the next reconcile must not touch.

        Those of files that fail to load, and (while any file fails) those whose file is
        gone: an unhealthy root holds removals back.
        """
        present = {f"{m.name}.yaml" for m in second} | failed_files
        return {
            r.connection_id: self.platform.rows[r.connection_id].version
            for r in self.store.records().values()
            if r.connection_id is not None
            and r.connection_id in self.platform.rows
            and (r.source_file in failed_files or (failed_files and r.source_file not in present))
        }

    def orphaned(self, second: list[Manifest], failed_files: set[str]) -> set[int]:
        """Connections whose removed manifest says Orphan: forgotten, never written."""
        if failed_files or not second:  # a removal waits; an empty root forgets nothing
            return set()
        names = {m.name for m in second}
        return {
            r.connection_id
            for r in self.store.records().values()
            if r.deletion_policy == "Orphan" and r.name not in names and r.connection_id is not None
        }

    def assert_converged(self, load: LoadResult, result: ReconcileResult) -> None:
        """Every active desired manifest has its connection as asked."""
        ids = self.managed_ids()
        skipped = {e.name for e in result.plan.errors} | {b.name for b in result.plan.blocked}
        for m in load.manifests:
            if m.suspend or m.name in skipped:
                continue
            cid = ids.get(m.name)
            if cid is None:
                assert m.driver in ("shopify", "actindo-pos")
                continue
            row = self.platform.rows[cid]
            assert row.driver == m.driver
            assert row.name == m.display_name
            assert row.status == ("active" if m.enabled else "inactive")
            for key, value in m.settings.items():
                assert row.settings.get(key) == value


@dataclass(frozen=True)
class Story:
    """What hypothesis draws: two revisions of the manifests and what happens between."""

    first: list[Manifest]
    second: list[Manifest]
    unmanaged: list[tuple[str, str]]
    drift: list[tuple[str, str]]
    failed: list[str]
    max_delete: int | None
    allow_recreate: bool


stories = st.builds(
    Story,
    first=manifests_st(),
    second=manifests_st(),
    unmanaged=unmanaged_st,
    drift=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(["off", "rename", "set"]))),
    failed=st.lists(st.sampled_from(NAMES), unique=True, max_size=2),
    max_delete=st.one_of(st.none(), st.integers(0, 3)),
    allow_recreate=st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(story=stories)
def test_apply_converges_and_keeps_the_safety_rules(story: Story) -> None:
    platform = FakePlatform()
    for driver, name in story.unmanaged:
        platform.install(driver, name, credentials={"k": "v"})
    unmanaged_ids = set(platform.rows)
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore.open(Path(tmp) / "state.db")
        options = EngineOptions(
            max_delete=story.max_delete,
            allow_recreate=story.allow_recreate,
            environ=ENV,
            job_timeout=1,
        )
        world = World(platform, store, Reconciler(client=platform, store=store, options=options))
        world.reconcile(load_result(story.first))
        world.edit_in_the_ui(story.drift)

        # The next revision, with some files failing to load.
        failed_files = {f"{n}.yaml" for n in story.failed}
        frozen = world.held_back(story.second, failed_files)
        orphaned = world.orphaned(story.second, failed_files)
        before = set(platform.rows)
        writes_before = dict(platform.writes)
        load2 = load_result(story.second, failed=failed_files)
        first_plan = run(world.rec.plan(load2))
        result = world.reconcile(load2)
        assert not result.failed or result.plan.errors, result.outcomes

        # A second plan right after an apply is empty.
        again = run(world.rec.plan(load2))
        assert again.actions == (), again.actions

        # Unmanaged connections are never written.
        for cid in unmanaged_ids - world.ever_managed:
            assert platform.writes.get(cid, 0) == 0

        # An orphaned connection is forgotten without a single write.
        for cid in orphaned:
            assert platform.writes.get(cid, 0) == writes_before.get(cid, 0)
            assert cid not in world.managed_ids().values() or cid in frozen

        # Frozen connections are not touched.
        for cid, version in frozen.items():
            assert cid in platform.rows
            assert platform.rows[cid].version == version

        # The guard: more deletes than allowed means none at all.
        limit = first_plan.max_delete
        deleted = before - set(platform.rows)
        deleting = [a for a in first_plan.actions if a.kind in DELETING]
        if len(deleting) > limit:
            assert not deleted
        assert len(deleted) <= max(limit, 0) or not deleted

        world.assert_converged(load2, result)
        store.close()
