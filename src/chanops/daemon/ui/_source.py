"""Where the pages' data comes from: the daemon's state in memory, read per change.

The imperative side of the status page. `UIData.snapshot()` keeps one row per
connection and rebuilds only the rows of the connections that changed since the last
snapshot (the names `LiveFeed` collected from the events); an event that concerns no
single connection (a full resync ended, a manifest failed to load, the platform went
away) rebuilds every row. Rebuilds are at most `REBUILD_GAP` apart; a page rendered
from an older snapshot says which version it shows, and the live script's fetch names
the version it wants, which waits out the rest of the gap (`fresh`).

Rows are built like the /status document (`daemon/_status.py`), from the same sources
but the in-memory ones: the file index's manifests, the record cache, the platform
listing kept by the last resync, the scheduler, the backoff table and the event ring.
The store itself is not read (reading 10,000 rows costs 0.2 s): the last sync comes
from the sync events, or from the record loaded at startup. Nothing shown holds a
secret: desired state without credentials, events already redacted, fields masked by
`_fields.py`; the plan is rendered by the engine's own renderer, which never has a
secret value.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chanops.daemon._scheduler import utc_iso
from chanops.daemon._status import _backoff, _desired, _last_sync, _observed
from chanops.daemon.auth import awaiting_conditions
from chanops.daemon.ui import _views as views
from chanops.daemon.ui._fields import field_rows
from chanops.engine.render import render_text, summary

if TYPE_CHECKING:
    from chanops.daemon._parts import Parts
    from chanops.daemon._status import Status
    from chanops.daemon.ui._live import LiveFeed
    from chanops.manifests.model import LoadResult

REBUILD_GAP = 0.5
MEMO_KEPT = 64  # views kept per snapshot: the overview and a handful of list queries
PLAN_GAP = 10.0  # a plan of 10,000 connections costs seconds of CPU: at most this often


@dataclass(slots=True)
class Snapshot:
    version: int
    doc: Mapping[str, Any]  # the /status document's header: readiness, errors, revision
    rows: list[views.Row]
    entries: Mapping[str, Mapping[str, Any]]  # /status-like connection entries by name
    unmanaged: Mapping[int, Mapping[str, Any]]  # unmanaged platform connections by id
    facets: Mapping[str, list[str]] = field(default_factory=dict)
    cache: dict[Any, Any] = field(default_factory=dict)  # views of this snapshot, by key

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        """A view computed once per snapshot (the overview, a sorted and filtered list)."""
        if key not in self.cache:
            if len(self.cache) >= MEMO_KEPT:
                self.cache.clear()
            self.cache[key] = make()
        return self.cache[key]


@dataclass(frozen=True, slots=True)
class PlanView:
    version: int
    lines: list[str]
    summary: str
    error: str = ""
    at: str = ""


class UIData:
    def __init__(
        self,
        *,
        status: Status,
        parts: Parts,
        load: Callable[[], LoadResult | None],
        feed: LiveFeed,
    ) -> None:
        self.status = status
        self.parts = parts
        self.load = load
        self.feed = feed
        self._snapshot: Snapshot | None = None
        self._entries: dict[str, dict[str, Any]] = {}
        self._rows: dict[str, views.Row] = {}
        self._unmanaged: dict[int, dict[str, Any]] = {}
        self._built = 0.0
        self._plan: PlanView | None = None
        self._planned = float("-inf")
        self._plan_lock = asyncio.Lock()

    # -- the snapshot ----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        current = self._snapshot
        now = time.monotonic()
        if current is None or (
            current.version != self.feed.version and now - self._built >= REBUILD_GAP
        ):
            current = self._snapshot = self._build(full=current is None)
            self._built = now
        return current

    async def fresh(self, want: int) -> None:
        """Wait, at most `REBUILD_GAP`, until a snapshot at version `want` can be built.

        The live script asks for the version its stream announced (`X-Chanops-Want`): a
        fetch that comes inside the gap after a rebuild waits out the rest of it instead
        of getting the older view and asking again. A plain page load never waits.
        """
        current = self._snapshot
        if current is None or current.version >= min(want, self.feed.version):
            return  # shown already, or a version no event has reached (nothing to wait for)
        wait = self._built + REBUILD_GAP - time.monotonic()
        if wait > 0:
            await asyncio.sleep(min(wait, REBUILD_GAP))

    def _build(self, *, full: bool) -> Snapshot:
        version = self.feed.version  # before reading: a change meanwhile rebuilds again
        names, everything = self.feed.take_changes()
        load = self.load()
        manifests = self.status.index.manifests() if load is not None else {}
        if full or everything:
            self._entries.clear()
            self._rows.clear()
            names = set(manifests) | set(self.parts.records)
            self._unmanaged = self._unmanaged_connections()
        frozen = self.status.index.frozen(load) if load is not None else set()
        now = time.monotonic()
        for name in names:
            if name not in manifests and name not in self.parts.records:
                self._entries.pop(name, None)
                self._rows.pop(name, None)
                continue
            entry = self._entry(name, manifests, frozen, now)
            self._entries[name] = entry
            self._rows[name] = views.managed_row(entry)
            observed = entry["observed"]
            if observed is not None:
                self._unmanaged.pop(observed["id"], None)  # adopted since the last listing
        rows = [*self._rows.values(), *map(views.unmanaged_row, self._unmanaged.values())]
        return Snapshot(
            version,
            self._doc(load),
            rows,
            dict(self._entries),
            dict(self._unmanaged),
            views.facets(rows),
        )

    def _entry(
        self, name: str, manifests: Mapping[str, Any], frozen: set[str], now: float
    ) -> dict[str, Any]:
        """One connection as /status shows it, from memory (the store is not read)."""
        m = manifests.get(name)
        r = self.parts.records.get(name)
        cid = r.connection_id if r is not None else (m.connection_id if m else None)
        scheduler = self.parts.scheduler
        return {
            "name": name,
            "file": m.source.file if m else (r.source_file if r else None),
            "frozen": name in frozen,
            "desired": _desired(m),
            "observed": _observed(self.parts.observed.get(cid) if cid is not None else None),
            "conditions": awaiting_conditions(
                self.status.auth, [_condition(c) for c in r.conditions] if r else []
            ),
            "lastSync": self.feed.last_sync.get(name) or _last_sync(r),
            "nextSync": utc_iso(scheduler.next_run(name)),
            "syncing": scheduler.syncing(name),
            "backoff": _backoff(self.parts.queue.backoff.get(name), now),
            "events": self._events(name),
        }

    def _events(self, name: str) -> list[dict[str, Any]]:
        return list(self.status.events.by_connection.get(name, ()))

    def _unmanaged_connections(self) -> dict[int, dict[str, Any]]:
        managed = {r.connection_id for r in self.parts.records.values()}
        return {
            c.id: {"id": c.id, "name": c.name, "driver": c.driver, "status": c.status}
            for c in self.parts.observed.snapshot().connections
            if c.id not in managed
        }

    def _doc(self, load: LoadResult | None) -> dict[str, Any]:
        """The header of the /status document (everything but the connections)."""
        return self.status.header(load)

    # -- pages -------------------------------------------------------------------------

    def connection(self, name: str) -> dict[str, Any] | None:
        """The connection page of a managed connection; None when there is none."""
        snap = self.snapshot()
        entry = snap.entries.get(name)
        if entry is None:
            return None
        # The events as they are now: a standby's refresh replaces them between changes.
        page = views.connection({**entry, "events": self._events(name)})
        manifest = self.status.index.manifest(name)
        record = self.parts.records.get(name)
        cid = record.connection_id if record is not None else None
        if cid is None and manifest is not None:
            cid = manifest.connection_id
        observed = self.parts.observed.get(cid) if cid is not None else None
        driver = manifest.driver if manifest else (record.driver if record else "")
        secret_paths, labels = _driver_fields(driver)
        page["fields"] = [
            r.to_view()
            for r in field_rows(manifest, observed, secret_paths=secret_paths, labels=labels)
        ]
        page["ignoreDifferences"] = list(manifest.ignore_differences) if manifest else []
        page["source"] = (
            # Relative to the manifests root, as the store keeps it (a git checkout's
            # directory changes with every commit).
            {"file": self.status.index.key(manifest.source.file), "line": manifest.source.line}
            if manifest
            else None
        )
        page["version"] = snap.version
        return page

    def unmanaged(self, connection_id: int) -> dict[str, Any] | None:
        snap = self.snapshot()
        if connection_id not in snap.unmanaged:
            return None
        conn = self.parts.observed.get(connection_id)
        secret_paths, labels = _driver_fields(conn.driver if conn else "")
        fields = field_rows(None, conn, secret_paths=secret_paths, labels=labels)
        return {
            "row": views.unmanaged_row(snap.unmanaged[connection_id]).to_view(),
            "fields": [r.to_view() for r in fields],
            "version": snap.version,
        }

    async def plan(self) -> PlanView:
        """What the next full reconcile would do now: planned against the daemon's caches.

        No platform call: the plan uses the listing the last resync kept and the store's
        records in memory, so reading the page costs the platform nothing. Planned again
        after a change, at most every `PLAN_GAP` seconds.
        """
        async with self._plan_lock:
            version = self.feed.version
            fresh = self._plan is not None and self._plan.version == version
            recent = time.monotonic() - self._planned < PLAN_GAP
            if self._plan is not None and (fresh or recent):
                return self._plan
            self._planned = time.monotonic()
            self._plan = await self._make_plan(version)
            return self._plan

    async def _make_plan(self, version: int) -> PlanView:
        load = self.load()
        if load is None or not self.parts.observed.complete:
            return PlanView(version, [], "", "no plan yet: the first resync has not finished")
        prepared = await self.parts.reconciler.prepare(
            load,
            observed=self.parts.observed.snapshot(),
            memory=self.parts.records.snapshot(),
        )
        scrub = self.parts.logging.redactor.scrub
        text = scrub(render_text(prepared.plan))
        at = utc_iso(_utcnow()) or ""
        return PlanView(
            version, text.rstrip("\n").split("\n"), scrub(summary(prepared.plan)), at=at
        )


def _utcnow() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _condition(c: Any) -> Any:
    """A typed condition as /status shows it; a bare name (older stores) as it is."""
    return c.to_json() if hasattr(c, "to_json") else c


def _driver_fields(driver: str) -> tuple[frozenset[str], Mapping[str, str]]:
    from chanops.manifests.drivers import driver_info

    try:
        info = driver_info(driver)
    except KeyError:
        return frozenset(), {}
    return info.secret_paths, info.labels
