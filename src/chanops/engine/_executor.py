"""The executor: carries out a Plan against the platform, recording state as it goes.

Imperative shell. Guarantees:
- Bounded concurrency (a semaphore of `concurrency` calls in flight).
- Per-connection serialisation: one connection's actions run in plan order in one task.
  Phases (docs/engine.md): adopt/create (then settings)/update, then enable,
  then disable, then delete; enable and disable are bulk calls, one per batch.
- An intent is stored before every write and cleared after it, so a crash leaves a
  trace the next plan resolves by observing (a create that happened is adopted).
- Every update carries If-Match; on 412 the connection is re-read, re-diffed and the
  remaining difference written once more.
- One connection failing never stops the others: each action ends in an `Outcome`.
- Retries of transient errors happen in the client; a failed action is retried by the
  next reconcile (the daemon's loop), never in a loop here.

Events (docs/daemon.md, "Logs"): `connection.created|updated|enabled|disabled|deleted|
adopted|orphaned` on success, `drift.detected` with the field-level diff, and one
`connection.failed` event carrying `action` and `error` when an action fails. Secret
values never reach an event: sensitive changes show "(sensitive value)".
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chanops import errors
from chanops.engine import pointers
from chanops.engine._condition_marks import initial_sync_done, intending, waiting_on
from chanops.engine._outcome import (
    ErrorInfo,
    Outcome,
    describe_changes,
    error_text,
    failed_outcome,
)
from chanops.engine._syncjob import run_sync
from chanops.engine.diff import (
    Desired,
    DriverMeta,
    diff,
)
from chanops.engine.plan import (
    AWAITING_AUTHORIZATION,
    AWAITING_INITIAL_SYNC,
    Action,
    ActionKind,
    Cause,
    FieldChange,
    NewState,
)
from chanops.events import EventSink
from chanops.platform.api import PlatformAPI
from chanops.platform.models import Connection, Job
from chanops.state.protocol import Store
from chanops.state.store import Intent, IntentOp, Record

BULK_BATCH = 100
JOB_POLL_SECONDS = 0.2

_PAST = {
    ActionKind.CREATE: "created",
    ActionKind.ADOPT: "adopted",
    ActionKind.UPDATE: "updated",
    ActionKind.ENABLE: "enabled",
    ActionKind.DISABLE: "disabled",
    ActionKind.DELETE: "deleted",
    ActionKind.ORPHAN: "orphaned",
    ActionKind.RECREATE: "created",  # after its own connection.deleted
}


def _settled_at(version: int | None) -> Callable[[Record], Record]:
    """The change that records a finished write: its version (if known), no intent."""

    def change(record: Record) -> Record:
        return replace(record, version=version or record.version, intent=None)

    return change


def _new_state(a: Action) -> NewState:
    if a.new_state is None:  # the planner sets it on every adopt, create, recreate, update
        raise errors.PlanError(f"connection {a.name}: the plan says nothing to remember")
    return a.new_state


@dataclass
class Context:
    """What the executor needs beside the plan (held in memory, never serialised)."""

    desired: Mapping[str, Desired]
    secrets: Mapping[str, Mapping[str, Any]]  # name -> pointer -> resolved value
    drivers: Mapping[str, DriverMeta]
    root: str = ""  # the manifests root: source_file is stored relative to it


class Executor:
    def __init__(
        self,
        client: PlatformAPI,
        store: Store,
        *,
        concurrency: int = 8,
        follow_jobs: bool = True,
        job_timeout: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        events: EventSink | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.events = events or EventSink.logging()
        self.sem = asyncio.Semaphore(max(1, concurrency))
        self.follow_jobs = follow_jobs
        self.job_timeout = job_timeout
        self.clock = clock
        # Set when the client reports the platform gone: the remaining actions are not
        # attempted and run() raises it, so an outage is one reconcile failure (one
        # event, one backoff) instead of a failure event per pending connection.
        self.unavailable: errors.PlatformUnavailable | None = None

    async def run(self, actions: Sequence[Action], ctx: Context) -> list[Outcome]:
        outcomes: list[Outcome] = []
        failed: set[str] = set()
        created: dict[str, int] = {}  # name -> id of a connection made in this run

        # Phase 1: per connection, in plan order: adopt, create(+settings), update, orphan.
        per_name: dict[str, list[Action]] = {}
        for a in actions:
            if a.kind in (
                ActionKind.ADOPT,
                ActionKind.CREATE,
                ActionKind.RECREATE,
                ActionKind.UPDATE,
                ActionKind.ORPHAN,
            ):
                per_name.setdefault(a.name, []).append(a)

        async def one_connection(name: str, steps: list[Action]) -> None:
            for step in steps:
                outcome = await self._guarded(step, ctx, created)
                outcomes.append(outcome)
                if not outcome.ok:
                    failed.add(name)
                    return

        await asyncio.gather(*(one_connection(n, s) for n, s in per_name.items()))

        # Phase 2: bulk enable, then bulk disable (including disable-before-delete).
        def target(a: Action) -> int | None:
            return a.connection_id if a.connection_id is not None else created.get(a.name)

        enables = [a for a in actions if a.kind == ActionKind.ENABLE and a.name not in failed]
        disables = [a for a in actions if a.kind == ActionKind.DISABLE and a.name not in failed]
        for a in actions:
            if a.kind == ActionKind.DELETE and a.disable_first:
                disables.append(a)
        outcomes += await self._bulk(ActionKind.ENABLE, enables, target, failed)
        outcomes += await self._bulk(ActionKind.DISABLE, disables, target, failed)

        # Phase 3: syncs and deletes, per connection, bounded.
        tail = [
            a
            for a in actions
            if a.kind in (ActionKind.SYNC, ActionKind.DELETE) and a.name not in failed
        ]
        results = await asyncio.gather(*(self._guarded(a, ctx, created) for a in tail))
        outcomes += results
        if self.unavailable is not None:
            raise self.unavailable
        return outcomes

    async def _guarded(self, action: Action, ctx: Context, created: dict[str, int]) -> Outcome:
        start = self.clock()
        if self.unavailable is not None:
            return Outcome(
                action.name,
                action.kind.value,
                False,
                "platform unavailable",
                action.connection_id,
                0.0,
                info=ErrorInfo("platform_unavailable", True, False, "platform unavailable"),
            )
        try:
            outcome = await self._do(action, ctx, created)
        except errors.PlatformUnavailable as exc:
            # Not this connection's failure: the intent stays for the next reconcile.
            self.unavailable = exc
            ms = (self.clock() - start) * 1000
            return failed_outcome(action, exc, action.connection_id, ms)
        except Exception as exc:  # one failure never blocks the others
            ms = (self.clock() - start) * 1000
            text = error_text(exc)
            self.events.emit(
                "connection.failed",
                "error",
                connection=action.name,
                driver=action.driver,
                connection_id=action.connection_id,
                action=action.kind.value,
                duration_ms=round(ms, 1),
                error=text,
            )
            refused = isinstance(exc, errors.APIError) and not exc.retryable
            if action.kind == ActionKind.CREATE and refused:
                # The platform refused the create: it did not happen, so the next
                # attempt (after the manifest is fixed) needs a fresh idempotency key.
                self.store.clear_intent(action.name)
            return failed_outcome(action, exc, action.connection_id, ms)
        return outcome

    async def _do(self, a: Action, ctx: Context, created: dict[str, int]) -> Outcome:
        start = self.clock()
        waiting: str | None = None
        cid = a.connection_id
        if a.kind == ActionKind.ADOPT:
            assert cid is not None
            d = ctx.desired[a.name]
            self.store.put(
                Record(
                    name=a.name,
                    driver=a.driver,
                    connection_id=cid,
                    source_file=_new_state(a).source_key,
                    deletion_policy=d.manifest.deletion_policy,
                )
            )
        elif a.kind == ActionKind.CREATE:
            cid, waiting = await self._create(a, ctx)
            created[a.name] = cid
        elif a.kind == ActionKind.RECREATE:
            assert cid is not None
            await self._delete(a.name, cid, disable_first=True)
            self.events.emit(
                "connection.deleted",
                "info",
                connection=a.name,
                driver=a.driver,
                connection_id=cid,
                action=a.kind.value,
                reason=a.reason,
            )
            cid, waiting = await self._create(a, ctx)
            created[a.name] = cid
        elif a.kind == ActionKind.UPDATE:
            assert cid is not None
            waiting = await self._update(a, ctx)
        elif a.kind == ActionKind.ORPHAN:
            self.store.forget(a.name)
        elif a.kind == ActionKind.SYNC:
            return await run_sync(self, a, cid or created.get(a.name), start)
        elif a.kind == ActionKind.DELETE:
            assert cid is not None
            await self._delete(a.name, cid, disable_first=False)
        ms = (self.clock() - start) * 1000
        self.events.emit(
            f"connection.{_PAST[a.kind]}",
            "info",
            connection=a.name,
            driver=a.driver,
            connection_id=cid,
            action=a.kind.value,
            duration_ms=round(ms, 1),
            reason=a.reason,
            **({"changes": describe_changes(a.changes)} if a.kind == ActionKind.UPDATE else {}),
            **({"condition": waiting} if waiting else {}),
        )
        return Outcome(a.name, a.kind.value, True, None, cid, ms, waiting)

    async def _limited(self, coro: Any) -> Any:
        async with self.sem:
            return await coro

    # -- create ----------------------------------------------------------------

    def _patch(self, changes: Sequence[FieldChange], secrets: Mapping[str, Any]) -> dict[str, Any]:
        assignments: list[tuple[str, Any]] = []
        for c in changes:
            if c.op == "remove":
                assignments.append((c.path, None))
            elif c.sensitive:
                assignments.append((c.path, secrets.get(c.path)))
            else:
                assignments.append((c.path, c.after))
        return pointers.build(assignments)

    async def _create(self, a: Action, ctx: Context) -> tuple[int, str | None]:
        d = ctx.desired[a.name]
        new = _new_state(a)
        secrets = ctx.secrets.get(a.name, {})
        body = self._patch(a.changes, secrets)
        # Settings exist only once the connection does: a second step after create.
        settings = body.pop("settings", None)
        key = a.idempotency_key or f"chanops-{a.name}-{uuid.uuid4().hex}"
        previous = self.store.get(a.name)
        base = Record(
            name=a.name,
            driver=a.driver,
            source_file=new.source_key,
            deletion_policy=d.manifest.deletion_policy,
            conditions=previous.conditions if previous else (),
        )
        # The intent goes to disk before the call: after a crash the next plan finds it.
        sent_name = a.display_name or d.manifest.display_name
        # The name goes in the intent too: if the manifest is renamed before the next
        # run, the planner still recognises the connection this create made.
        self.store.put(
            intending(base, Intent("create", idempotency_key=key, display_name=sent_name))
        )
        result = await self._limited(
            self.client.create_connection(
                name=sent_name,
                driver=a.driver,
                credentials=body.get("credentials", {}),
                automation=body.get("automation") or None,
                idempotency_key=key,
            )
        )
        conn: Connection = result.connection
        applied = {k: v for k, v in new.applied_spec.items() if k != "settings"}
        record = self.store.put(
            replace(
                base,
                connection_id=conn.id,
                version=conn.version,
                applied_spec=applied,
                secret_hmacs=dict(d.secret_hmacs),
                last_sync_job=result.initial_job.id if result.initial_job else None,
                last_sync_outcome=result.initial_job.state if result.initial_job else None,
                intent=None,
            )
        )
        waiting: str | None = None
        if settings:
            waiting = await self._settings_after_create(
                a.name, conn, record, settings, result.initial_job
            )
            record = self.store.get(a.name) or record
        if waiting is None:
            self.store.put(
                replace(
                    record,
                    applied_spec=new.applied_spec,
                    fingerprint=new.fingerprint,
                    conditions=initial_sync_done(record.conditions),
                )
            )
        if waiting is None and conn.authorization == "pending":
            waiting = AWAITING_AUTHORIZATION  # Amazon: the OAuth flow sets the token
        return conn.id, waiting

    async def _settings_after_create(
        self,
        name: str,
        conn: Connection,
        record: Record,
        settings: Mapping[str, Any],
        initial_job: Job | None,
    ) -> str | None:
        """Settings are a second step; values mirrored by the first sync wait for it."""
        self.store.put(intending(record, Intent("update", connection_id=conn.id)))
        try:
            updated = await self._limited(
                self.client.update_connection(
                    conn.id, {"settings": settings}, if_match=conn.version
                )
            )
        except errors.UnknownValue:
            if not (self.follow_jobs and initial_job is not None):
                return self._await_initial_sync(record)
            job = await self._follow(initial_job)
            self.store.put(replace(record, last_sync_job=job.id, last_sync_outcome=job.state))
            if job.state != "succeeded":
                return self._await_initial_sync(record)
            current = await self._limited(self.client.get_connection(conn.id))
            updated = await self._limited(
                self.client.update_connection(
                    conn.id, {"settings": settings}, if_match=current.version
                )
            )
        latest = self.store.get(name) or record
        self.store.put(replace(latest, version=updated.version, intent=None))
        return None

    def _await_initial_sync(self, record: Record) -> str:
        latest = self.store.get(record.name) or record
        conditions = waiting_on(latest.conditions, AWAITING_INITIAL_SYNC)
        self.store.put(replace(latest, intent=None, conditions=conditions))
        return AWAITING_INITIAL_SYNC

    # -- update ----------------------------------------------------------------

    async def _update(self, a: Action, ctx: Context) -> str | None:
        assert a.connection_id is not None
        d = ctx.desired[a.name]
        meta = ctx.drivers.get(a.driver, DriverMeta())
        secrets = ctx.secrets.get(a.name, {})
        record = self.store.get(a.name)
        if record is None:
            raise errors.PlanError(f"connection {a.name} is not in the state store")
        if a.cause is Cause.DRIFT:
            self.events.emit(
                "drift.detected",
                "info",
                connection=a.name,
                driver=a.driver,
                connection_id=a.connection_id,
                changes=describe_changes(a.changes),
            )
        changes = list(a.changes)
        version = a.if_match
        waiting: str | None = None
        self.store.put(intending(record, Intent("update", connection_id=a.connection_id)))
        for attempt in range(2):
            patch = self._patch(changes, secrets)
            try:
                updated = await self._limited(
                    self.client.update_connection(a.connection_id, patch, if_match=version)
                )
                break
            except errors.PreconditionFailed:
                if attempt:
                    raise
                # Someone wrote between our read and our write: re-read, re-diff, retry.
                current, changes = await self._rediff(a.name, d, record, meta, a.connection_id)
                version = current.version
                if not changes:
                    updated = current
                    break
            except errors.UnknownValue:
                if attempt or not any(c.path.startswith("/settings") for c in changes):
                    raise
                if await self._initial_sync_succeeded(a.connection_id):
                    # A refusal after the first sync is final, but this one may have
                    # come just before that sync ended: ask once more.
                    continue
                # Values the first sync has not mirrored yet: apply the rest now, the
                # settings once the initial sync has succeeded (a later reconcile).
                waiting = AWAITING_INITIAL_SYNC
                changes = [c for c in changes if not c.path.startswith("/settings")]
                if not changes:
                    self._await_initial_sync(record)
                    return waiting
        new = _new_state(a)
        applied = dict(new.applied_spec)
        latest = self.store.get(a.name) or record
        conditions = initial_sync_done(latest.conditions)
        if waiting:
            applied["settings"] = dict(record.applied_spec.get("settings", {}))
            conditions = waiting_on(conditions, waiting)
        self.store.put(
            replace(
                latest,
                applied_spec=applied,
                secret_hmacs=dict(d.secret_hmacs),
                version=updated.version,
                fingerprint="" if waiting else new.fingerprint,
                source_file=new.source_key,
                deletion_policy=d.manifest.deletion_policy,
                conditions=conditions,
                intent=None,
            )
        )
        return waiting

    async def _rediff(
        self, name: str, d: Desired, record: Record, meta: DriverMeta, cid: int
    ) -> tuple[Connection, list[FieldChange]]:
        """The connection as it is now, and what still differs from the manifest."""
        current: Connection = await self._limited(self.client.get_connection(cid))
        changes, _, immutable = diff(d, current, record, meta)
        if immutable:
            raise errors.PlanError(f"connection {name}: an immutable field changed while applying")
        return current, changes

    async def _initial_sync_succeeded(self, connection_id: int) -> bool:
        jobs: list[Job] = await self._limited(self.client.list_jobs(connection_id=connection_id))
        return any(j.state == "succeeded" and j.kind in ("initial_sync", "sync") for j in jobs)

    # -- enable / disable --------------------------------------------------------

    async def _bulk(
        self,
        kind: ActionKind,
        actions: Sequence[Action],
        target: Callable[[Action], int | None],
        failed: set[str],
    ) -> list[Outcome]:
        """Enable or disable in bulk calls of BULK_BATCH connections each."""
        todo = [(a, cid) for a in actions if (cid := target(a)) is not None]
        outcomes: list[Outcome] = []
        for i in range(0, len(todo), BULK_BATCH):
            outcomes += await self._bulk_batch(kind, todo[i : i + BULK_BATCH], failed)
        return outcomes

    async def _bulk_batch(
        self, kind: ActionKind, batch: Sequence[tuple[Action, int]], failed: set[str]
    ) -> list[Outcome]:
        call = self.client.enable if kind == ActionKind.ENABLE else self.client.disable
        op: IntentOp = "enable" if kind == ActionKind.ENABLE else "disable"
        start = self.clock()
        for a, _ in batch:
            self.store.update(a.name, lambda r: intending(r, Intent(op)))
        try:
            if self.unavailable is not None:
                raise self.unavailable
            conns = await self._limited(call([cid for _, cid in batch]))
        except errors.PlatformUnavailable as exc:
            self.unavailable = exc
            for a, _ in batch:
                failed.add(a.name)
                self.store.clear_intent(a.name)  # the next plan observes status
            return []
        except Exception as exc:
            ms = (self.clock() - start) * 1000
            for a, cid in batch:
                failed.add(a.name)
                self.events.emit(
                    "connection.failed",
                    "error",
                    connection=a.name,
                    driver=a.driver,
                    connection_id=cid,
                    action=kind.value,
                    error=error_text(exc),
                )
                self.store.clear_intent(a.name)
            return [failed_outcome(a, exc, cid, ms, kind) for a, cid in batch]
        ms = (self.clock() - start) * 1000
        versions = {c.id: c.version for c in conns}
        outcomes: list[Outcome] = []
        for a, cid in batch:
            self.store.update(a.name, _settled_at(versions.get(cid)))
            self._bulk_done(kind, a, cid, ms)
            if a.kind == kind:
                outcomes.append(Outcome(a.name, kind.value, True, None, cid, ms))
        return outcomes

    def _bulk_done(self, kind: ActionKind, a: Action, cid: int, ms: float) -> None:
        if a.cause is Cause.DRIFT:
            enabled = kind == ActionKind.ENABLE
            self.events.emit(
                "drift.detected",
                "info",
                connection=a.name,
                driver=a.driver,
                connection_id=cid,
                changes=[{"path": "/enabled", "before": not enabled, "after": enabled}],
            )
        self.events.emit(
            f"connection.{_PAST[kind]}",
            "info",
            connection=a.name,
            driver=a.driver,
            connection_id=cid,
            action=kind.value,
            duration_ms=round(ms, 1),
            reason=a.reason if a.kind == kind else "disable before delete",
        )

    # -- delete ----------------------------------------------------------------

    async def _delete(self, name: str, cid: int, *, disable_first: bool) -> None:
        record = self.store.get(name)
        if record is not None:
            self.store.put(intending(record, Intent("delete", connection_id=cid)))
        if disable_first:
            current = await self._limited(self.client.get_connection(cid))
            if current.status == "active":
                await self._limited(self.client.disable([cid]))
        try:
            job = await self._limited(self.client.delete_connection(cid))
        except errors.Conflict:
            # Enabled again by someone since the plan: disable before delete, once.
            await self._limited(self.client.disable([cid]))
            job = await self._limited(self.client.delete_connection(cid))
        if self.follow_jobs:
            job = await self._follow(job)
            if not job.done:
                return  # still deleting: the next reconcile sees it gone and forgets it
            if job.state != "succeeded":
                raise errors.PlanError(
                    f"delete job {job.id} of connection {cid} failed: {job.error or job.state}"
                )
            self.store.forget(name)

    async def _follow(self, job: Job) -> Job:
        """Poll a job until it ends or `job_timeout` passes (then return it unfinished)."""
        deadline = self.clock() + self.job_timeout
        while not job.done and self.clock() < deadline:
            await asyncio.sleep(JOB_POLL_SECONDS)
            job = await self._limited(self.client.get_job(job.id))
        return job
