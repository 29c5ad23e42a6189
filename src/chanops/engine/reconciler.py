"""The reconciler: one entry point for `plan`, `apply` and the daemon.

Imperative shell around the pure planner: it reads the platform and the store,
resolves secrets into HMACs, calls `make_plan`, and hands the plan to the executor.

    from chanops.engine.reconciler import EngineOptions, Reconciler

    reconciler = Reconciler(client=client, store=store, options=EngineOptions())
    plan = await reconciler.plan(load)              # observes, writes nothing
    result = await reconciler.reconcile(load)       # plan + execute (full)
    result = await reconciler.reconcile(load, only={"shopware-de"})   # partial

`reconcile(load)` lists every platform connection (a full reconcile: drift of every
connection, unmanaged list, deletions). `reconcile(load, only=names)` is what a file
edit needs: it reads just the named connections by id (GET /connections/{id}) and
never deletes or touches anything outside `only`. A name in `only` that the store does
not know and whose manifest has no `spec.connectionId` still needs the full list (to
adopt an existing connection of the same name and driver rather than create a
duplicate), so that case lists the platform.

For `apply` (show, confirm, then execute exactly what was shown) use
`prepare()` then `execute(prepared)`.

The result (`ReconcileResult`) carries the plan, one `Outcome` per executed action,
drift entries, failed names, conditions the connections wait on, blocked actions and
`converged` (every action succeeded and nothing was blocked or in error).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Set
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chanops import errors
from chanops.engine._condition_recorder import ConditionRecorder
from chanops.engine._executor import Context, Executor
from chanops.engine._outcome import Outcome, describe_changes
from chanops.engine._planner import PlanOptions, in_scope, make_plan
from chanops.engine.conditions import is_true
from chanops.engine.diff import Desired, DriverMeta, Observed, fingerprint, source_key
from chanops.engine.plan import AWAITING_INITIAL_SYNC, Blocked, Cause, Plan
from chanops.events import EventSink
from chanops.manifests.model import LoadResult
from chanops.platform.api import PlatformAPI
from chanops.platform.models import Connection
from chanops.state.protocol import Store
from chanops.state.store import Record


@dataclass(frozen=True)
class EngineOptions:
    max_delete: int | None = None  # None = 25% of managed connections, at least 1
    allow_recreate: bool = False
    concurrency: int = 8
    secrets_dirs: tuple[Path, ...] = ()
    environ: Mapping[str, str] | None = None  # None = os.environ (secretRef.env)
    follow_jobs: bool = True  # follow delete jobs (and the initial sync for settings)
    job_timeout: float = 600.0


@dataclass(frozen=True)
class DriftEntry:
    name: str
    connection_id: int | None
    changes: tuple[dict[str, Any], ...]  # field-level, secrets as "(sensitive value)"
    reason: str


@dataclass(frozen=True)
class ReconcileResult:
    plan: Plan
    outcomes: tuple[Outcome, ...] = ()
    drift: tuple[DriftEntry, ...] = ()
    failed: tuple[str, ...] = ()
    waiting: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> types
    blocked: tuple[Blocked, ...] = ()
    # The names whose store records this reconcile wrote, so a caller keeping a copy of
    # the store re-reads just those (None: not known, re-read every planned name).
    written: frozenset[str] | None = None

    @property
    def converged(self) -> bool:
        return not self.failed and not self.blocked and not self.plan.errors


@dataclass
class Prepared:
    """A plan together with what executing it needs (secrets stay in memory only)."""

    plan: Plan
    context: Context
    observed: Observed
    planned: frozenset[str] = frozenset()  # the names this plan decided about
    # The records the plan was made with: `execute` re-reads only those it wrote to.
    memory: Mapping[str, Record] = field(default_factory=dict)


def driver_meta(driver: str) -> DriverMeta:
    """DriverMeta from the manifests package's schema-derived driver table."""
    from chanops.manifests.drivers import driver_info

    try:
        info = driver_info(driver)
    except KeyError:
        return DriverMeta()
    return DriverMeta(
        creatable=info.creatable,
        secret_paths=info.secret_paths,
        immutable_paths=info.immutable_paths,
        oauth_paths=info.oauth_paths,
        sync_after_change=info.sync_after_change,
    )


class Reconciler:
    """Plans and applies manifests against a platform, remembering in a state store.

    `client` is any PlatformAPI; `store` must be open for writing to reconcile (a
    read-only store is enough to plan). Safe to reuse across reconciles, and for
    concurrent partial reconciles whose `only` sets are disjoint (the daemon's workers:
    each writes the records of its own names only).
    """

    def __init__(
        self,
        *,
        client: PlatformAPI,
        store: Store,
        options: EngineOptions,
        events: EventSink | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.options = options
        self.events = events or EventSink.logging()
        self._drivers: dict[str, DriverMeta] = {}
        self._prefetch: asyncio.Future[list[Connection]] | None = None
        # The last load's manifests as not-planned Desired entries (`_desired`).
        self._unresolved: tuple[LoadResult | None, dict[str, Desired]] = (None, {})
        self._fingerprinted: dict[str, Desired] = {}  # the last resolved entry of each name

    # -- public --------------------------------------------------------------

    async def plan(
        self,
        load: LoadResult,
        *,
        only: Set[str] | None = None,
        targets: Set[str] | None = None,
        selector: Mapping[str, str] | None = None,
    ) -> Plan:
        """Observe and plan; writes nothing anywhere."""
        return (await self.prepare(load, only=only, targets=targets, selector=selector)).plan

    async def reconcile(
        self,
        load: LoadResult,
        *,
        only: Set[str] | None = None,
        targets: Set[str] | None = None,
        selector: Mapping[str, str] | None = None,
    ) -> ReconcileResult:
        prepared = await self.prepare(load, only=only, targets=targets, selector=selector)
        return await self.execute(prepared)

    async def prepare(
        self,
        load: LoadResult,
        *,
        only: Set[str] | None = None,
        targets: Set[str] | None = None,
        selector: Mapping[str, str] | None = None,
        observed: Observed | None = None,
        memory: Mapping[str, Record] | None = None,
    ) -> Prepared:
        """Observe (unless given), read the store (unless given), resolve and plan.

        `observed` and `memory` are snapshots the caller already holds, used instead of
        reading the platform and the store: the daemon lists the platform once per resync
        and plans its batches (`only`) against that list, and keeps a copy of the store's
        records (reading 10,000 rows costs about 0.2 s, too much for every batch). A
        snapshot given with `only` must be complete (`Observed.scope` None) if a name in
        `only` may adopt by name, and `memory` must be current for the names in `only`.
        """
        # The full list is I/O-bound (the platform pages it) while reading the store and
        # resolving secrets is CPU-bound: overlap them.
        listing: asyncio.Future[list[Connection]] | None = None
        if only is None and observed is None:
            listing = self._prefetch or asyncio.ensure_future(self.client.list_connections())
        self._prefetch = None
        try:
            if memory is None:
                memory, (desired, secrets) = await asyncio.to_thread(
                    self._memory_and_desired, load, only
                )
            else:
                desired, secrets = await asyncio.to_thread(self._desired, load, only)
            if observed is None and listing is not None:
                observed = Observed(tuple(await listing))
            elif observed is None:
                observed = await self._observe(desired, memory, only)
        except BaseException:
            if listing is not None:
                if listing.done() and not listing.cancelled():
                    listing.exception()  # retrieved: no "exception was never retrieved"
                else:
                    listing.cancel()
            raise
        options = PlanOptions(
            max_delete=self.options.max_delete,
            allow_recreate=self.options.allow_recreate,
            failed_files=frozenset(load.failed_files),
            files=frozenset(load.files),
            root_ok=load.root_ok,
            root=load.root,
            only=frozenset(only) if only is not None else None,
            targets=frozenset(targets) if targets is not None else None,
            selector=dict(selector) if selector else None,
            drivers=self._driver_table(),
        )
        # Pure and O(connections) even for a small `only`: in a thread, so that the event
        # loop (a daemon's watcher and its other batches) keeps turning meanwhile.
        plan, planned = await asyncio.to_thread(_plan, desired, observed, memory, options)
        ctx = Context(desired=desired, secrets=secrets, drivers=options.drivers, root=load.root)
        return Prepared(plan=plan, context=ctx, observed=observed, planned=planned, memory=memory)

    async def execute(self, prepared: Prepared) -> ReconcileResult:
        plan = prepared.plan
        for b in plan.blocked:
            self.events.emit(
                "guard.blocked",
                "warning",
                connection=b.name,
                connection_id=b.connection_id,
                action=b.kind.value,
                rule=b.rule,
                reason=b.reason,
            )
        for e in plan.errors:
            self.events.emit(
                "connection.failed", "error", connection=e.name, action="plan", error=e.message
            )
        executor = Executor(
            self.client,
            self.store,
            concurrency=self.options.concurrency,
            follow_jobs=self.options.follow_jobs,
            job_timeout=self.options.job_timeout,
            events=self.events,
        )
        outcomes = await executor.run(plan.actions, prepared.context)
        records = self._current_records(prepared)
        before = dict(records)
        waiting = ConditionRecorder(self.store, self.events).record(
            plan, outcomes, prepared.memory, records, planned=prepared.planned, ctx=prepared.context
        )
        written = {a.name for a in plan.actions} | self._refresh_memory(prepared, records)
        written |= {name for name, record in records.items() if before.get(name) is not record}
        failed = sorted({o.name for o in outcomes if not o.ok} | {e.name for e in plan.errors})
        drift = tuple(
            DriftEntry(a.name, a.connection_id, tuple(describe_changes(a.changes)), a.reason)
            for a in plan.actions
            if a.cause is Cause.DRIFT
        )
        return ReconcileResult(
            plan=plan,
            outcomes=tuple(outcomes),
            drift=drift,
            failed=tuple(failed),
            waiting=waiting,
            blocked=plan.blocked,
            written=frozenset(written),
        )

    def prefetch(self) -> None:
        """Start listing the platform now, for the next full `prepare`/`plan`/`reconcile`.

        Lets a caller overlap the listing with its own work (the commands load the
        manifests meanwhile). Must be called inside the running event loop.
        """
        if self._prefetch is None:
            self._prefetch = asyncio.ensure_future(self.client.list_connections())

    # -- steps -----------------------------------------------------------------

    def _memory_and_desired(
        self, load: LoadResult, only: Set[str] | None
    ) -> tuple[dict[str, Record], tuple[dict[str, Desired], dict[str, dict[str, Any]]]]:
        return self.store.records(), self._desired(load, only)

    def _desired(
        self, load: LoadResult, only: Set[str] | None
    ) -> tuple[dict[str, Desired], dict[str, dict[str, Any]]]:
        """Manifests with their secrets resolved into HMACs (values kept for execute)."""
        from chanops.manifests.secrets import resolve_secret_values

        values: dict[str, dict[str, Any]] = {}
        # One snapshot: os.environ's per-lookup decoding is measurable at 10,000 manifests.
        environ = dict(os.environ) if self.options.environ is None else self.options.environ
        hmac = self.store.hmac
        # Every manifest is present (a name outside `only` is not "removed"); those not
        # planned need no secrets. Built once per load: a daemon plans one load in many
        # batches, and 10,000 of these per batch would cost more than the batch itself.
        if self._unresolved[0] is not load:
            # A daemon's edit re-reads one file of 10,000: the new load keeps the other
            # manifest objects, and their entries with them.
            kept = self._unresolved[1]
            self._unresolved = (
                load,
                {
                    m.name: d
                    if (d := kept.get(m.name)) is not None and d.manifest is m
                    else Desired(m)
                    for m in load.manifests
                },
            )
        desired = dict(self._unresolved[1])
        planned = (
            load.manifests if only is None else [d.manifest for n in only if (d := desired.get(n))]
        )
        for m in planned:
            if m.suspend:
                continue  # suspended: no secrets read
            try:
                secret_values = resolve_secret_values(
                    m, secrets_dirs=self.options.secrets_dirs, environ=environ
                )
            except errors.SecretResolutionError as exc:
                desired[m.name] = Desired(m, secret_error=str(exc))
                continue
            if not secret_values:
                desired[m.name] = Desired(m)
                continue
            values[m.name] = secret_values
            desired[m.name] = Desired(
                m, secret_hmacs={p: hmac(v) for p, v in secret_values.items()}
            )
        # Fingerprints now: this runs in a thread while the platform list is in flight.
        # The same manifest object with the same secret HMACs keeps the fingerprint it
        # had: a resync plans 10,000 unchanged manifests, and hashing them was most of it.
        last = self._fingerprinted
        for m in planned:
            d = desired[m.name]
            if d.secret_error is not None:
                continue
            same = last.get(m.name)
            if same is not None and same.manifest is m and same.secret_hmacs == d.secret_hmacs:
                desired[m.name] = same
            else:
                desired[m.name] = last[m.name] = replace(d, fingerprint=fingerprint(d))
        return desired, values

    async def _observe(
        self,
        desired: Mapping[str, Desired],
        memory: Mapping[str, Record],
        only: Set[str] | None,
    ) -> Observed:
        if only is None:
            return Observed(tuple(await self.client.list_connections()))
        ids: set[int] = set()
        for name in only:
            record = memory.get(name)
            d = desired.get(name)
            if d is not None and d.manifest.connection_id is not None:
                ids.add(d.manifest.connection_id)
            if record is not None and record.connection_id is not None:
                ids.add(record.connection_id)
            elif d is not None and d.manifest.connection_id is None and not d.manifest.suspend:
                # A name chanops has not bound yet: adoption needs the full list.
                return Observed(tuple(await self.client.list_connections()))
        sem = asyncio.Semaphore(max(1, self.options.concurrency))

        async def read(cid: int) -> Connection | None:
            async with sem:
                try:
                    return await self.client.get_connection(cid)
                except errors.NotFound:
                    return None

        found = await asyncio.gather(*(read(cid) for cid in sorted(ids)))
        return Observed(tuple(c for c in found if c is not None), scope=frozenset(ids))

    def _driver_table(self) -> dict[str, DriverMeta]:
        """Every driver the manifests package knows, built once: not a pass over 10,000
        manifests and records per plan. A driver it does not know gets the default
        DriverMeta wherever the table is read, as `driver_meta` would give it."""
        if not self._drivers:
            from chanops.manifests.drivers import DRIVER_NAMES

            self._drivers = {name: driver_meta(name) for name in DRIVER_NAMES}
        return self._drivers

    def _current_records(self, prepared: Prepared) -> dict[str, Record]:
        """The records of the planned names as they are after the executor ran.

        Since `prepare` read them only the executor wrote, and only for the names it
        acted on: those rows are read again, the others are the plan's own snapshot
        (reading 10,000 rows costs about 0.2 s, which a daemon batch of a one-connection
        edit must not pay).
        """
        acted = {a.name for a in prepared.plan.actions}
        records = {
            name: record
            for name in prepared.planned
            if name not in acted and (record := prepared.memory.get(name)) is not None
        }
        for name in sorted(acted & prepared.planned):
            record = self.store.get(name)
            if record is not None:
                records[name] = record
        return records

    def _refresh_memory(self, prepared: Prepared, records: Mapping[str, Record]) -> set[str]:
        """Remember version and fingerprint of connections found converged.

        So old drift is not re-detected and the planner's fast path (same fingerprint,
        same version: skip the diff) applies from the next plan on. Store writes only;
        returns the names written.
        """
        written: set[str] = set()
        if self.store.readonly:
            return written
        plan = prepared.plan
        acted = {a.name for a in plan.actions} | {b.name for b in plan.blocked}
        acted |= {e.name for e in plan.errors}
        by_id = prepared.observed.by_id()
        desired = prepared.context.desired
        for record in records.values():
            name = record.name
            if name in acted or name not in prepared.planned or record.connection_id is None:
                continue
            conn = by_id.get(record.connection_id)
            if conn is None or record.intent is not None:
                continue
            d = desired.get(name)
            version, fp, source = record.version, record.fingerprint, record.source_file
            if record.version is not None and conn.version != record.version:
                version = conn.version
            if (
                d is not None
                and not d.manifest.suspend
                and d.secret_error is None
                and not is_true(record.conditions, AWAITING_INITIAL_SYNC)
            ):
                fp = d.fingerprint or fingerprint(d)
            if d is not None:
                # Older stores hold the path as discovered; keep the key (source_key) so
                # a moved root (a git checkout per commit) still freezes the right names.
                source = source_key(d.manifest.source.file, prepared.context.root)
            # Compared field by field: a whole Record compares its JSON bodies, decoding
            # them (10,000 converged records per resync).
            if (version, fp, source) != (record.version, record.fingerprint, record.source_file):
                self.store.put(replace(record, version=version, fingerprint=fp, source_file=source))
                written.add(name)
        return written


def _plan(
    desired: Mapping[str, Desired],
    observed: Observed,
    memory: Mapping[str, Record],
    options: PlanOptions,
) -> tuple[Plan, frozenset[str]]:
    """The plan, and the names it decided about."""
    plan = make_plan(desired, observed, memory, options)
    names = (
        set(desired) | set(memory)
        if options.only is None
        else {n for n in options.only if n in desired or n in memory}
    )
    planned = frozenset(n for n in names if in_scope(n, desired, options))
    return plan, planned


__all__ = [
    "DriftEntry",
    "EngineOptions",
    "Prepared",
    "ReconcileResult",
    "Reconciler",
    "driver_meta",
]
