"""Where the pages' data comes from: the daemon's /status document, caches and engine.

The imperative side of the status page. `UIData.snapshot()` builds the rows of every
connection once per change (the version `LiveFeed` counts), not once per request: at
10,000 connections the document costs tens of milliseconds, a page from the snapshot
a few. Rebuilds are at most `REBUILD_GAP` apart; a page rendered from an older
snapshot says which version it shows, and its script asks again.

Everything shown passed through the same rules as /status (no credentials, events
redacted) or through `fields.py` (secrets masked); the plan is rendered by the engine's
own renderer, which never has a secret value.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chanops.daemon.ui import views
from chanops.daemon.ui.fields import field_rows
from chanops.engine.render import render_text, summary

if TYPE_CHECKING:
    from chanops.daemon.parts import Parts
    from chanops.daemon.status import Status
    from chanops.daemon.ui.live import LiveFeed
    from chanops.manifests.model import LoadResult

REBUILD_GAP = 0.5


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    doc: Mapping[str, Any]
    rows: list[views.Row]
    entries: Mapping[str, Mapping[str, Any]]  # /status connection entries by name
    unmanaged: Mapping[int, Mapping[str, Any]]  # unmanaged platform connections by id
    facets: Mapping[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlanView:
    version: int
    lines: list[str]
    summary: str
    error: str = ""


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
        self._built = 0.0
        self._plan: PlanView | None = None
        self._plan_lock = asyncio.Lock()

    def snapshot(self) -> Snapshot:
        current = self._snapshot
        now = time.monotonic()
        if current is None or (
            current.version != self.feed.version and now - self._built >= REBUILD_GAP
        ):
            current = self._snapshot = self._build()
            self._built = now
        return current

    def _build(self) -> Snapshot:
        version = self.feed.version  # before reading: a change meanwhile rebuilds again
        doc = self.status.document()
        entries = {str(e["name"]): e for e in doc["connections"]}
        managed_ids = {e["observed"]["id"] for e in doc["connections"] if e.get("observed")}
        managed_ids |= {r.connection_id for r in self.parts.records.values()}
        unmanaged = {
            c.id: {"id": c.id, "name": c.name, "driver": c.driver, "status": c.status}
            for c in self.parts.observed.snapshot().connections
            if c.id not in managed_ids
        }
        rows = [views.managed_row(e) for e in entries.values()]
        rows += [views.unmanaged_row(c) for c in unmanaged.values()]
        return Snapshot(version, doc, rows, entries, unmanaged, views.facets(rows))

    def connection(self, name: str) -> dict[str, Any] | None:
        """The connection page of a managed connection; None when there is none."""
        snap = self.snapshot()
        entry = snap.entries.get(name)
        if entry is None:
            return None
        page = views.connection(entry)
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
        records in memory, so reading the page costs the platform nothing.
        """
        async with self._plan_lock:
            version = self.feed.version
            if self._plan is not None and self._plan.version == version:
                return self._plan
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
        return PlanView(version, text.rstrip("\n").split("\n"), scrub(summary(prepared.plan)))


def _driver_fields(driver: str) -> tuple[frozenset[str], Mapping[str, str]]:
    from chanops.manifests.drivers import driver_info

    try:
        info = driver_info(driver)
    except KeyError:
        return frozenset(), {}
    return info.secret_paths, info.labels
