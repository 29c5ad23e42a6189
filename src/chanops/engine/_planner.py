"""The planner: desired + observed + memory -> Plan.

Pure function, no I/O: no network, no files, no clock, no randomness (idempotency
keys derive from the manifest name and the memory). The shell (`reconciler`) loads
manifests, resolves secrets into HMACs, reads the platform and the store, and calls
`make_plan`; the same inputs always give the same plan.

Rules (docs/engine.md, "Reconcile rules"), in the order `make_plan` applies them:
- Ownership: only connections in memory (created or adopted) are touched; every other
  observed connection is listed as unmanaged.
- Adoption: `spec.connectionId`, or exactly one unmanaged connection with the same
  name and driver; more than one is an error naming the candidate ids.
- A pending create intent (a crash between the create call and recording its result)
  resolves by observing: the created connection matches by name+driver and is adopted;
  if none matches, the create is planned again with the same idempotency key.
- Create when nothing matches; non-creatable drivers get AwaitingMarketplaceSetup.
- Field-level diff, three-way for settings/credentials/automation: chanops manages the
  keys the manifest sets, and removes keys it applied before that the manifest has since
  dropped (like `kubectl apply`'s last-applied annotation). Keys set only in the UI and
  never in a manifest are left alone.
- Secrets compare by HMAC against memory; a changed HMAC, no HMAC (adoption), or a
  platform `version` moved by someone else (a secret may have been rotated in the UI,
  and reads never show secrets) re-applies them.
- Immutable fields (driver; per-driver such as Amazon's marketplace) are refused unless
  `allow_recreate`, which plans delete + create.
- `spec.suspend`: nothing at all, condition Suspended.
- `spec.ignoreDifferences`: matching differences are reported as ignored, not healed.
- Safety guards (`Guard`, in this order): immutable fields; connections defined last
  time by a file that now fails to load are frozen; an unreadable or empty root
  deletes nothing; a connection whose file is gone is deleted only while every other
  file loads (unhealthy root); the mass-delete guard blocks every delete of a plan with
  more deletes than `max_delete`. Files are compared by `source_key`: the path relative
  to the manifests root, so a root that moves (a git checkout per commit) still matches
  what the store remembers. These are the only safety rules: `plan`, `apply` and the
  daemon all take their decisions from here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from chanops.engine._found import SETTLED, UNKNOWN, Adopt, Create, Found, Managed
from chanops.engine._guards import (
    RootFacts,
    blocked_condition,
    default_max_delete,
    mass_delete,
    removal,
)
from chanops.engine._procedures import sync_actions
from chanops.engine.conditions import Condition, ConditionType, holding
from chanops.engine.diff import (
    Desired,
    DriverMeta,
    Observed,
    create_changes,
    desired_doc,
    diff,
    fingerprint,
    source_key,
)
from chanops.engine.plan import (
    AWAITING_AUTHORIZATION,
    AWAITING_MARKETPLACE_SETUP,
    SECRET_UNRESOLVED,
    SUSPENDED,
    Action,
    ActionKind,
    Blocked,
    Cause,
    FieldChange,
    Guard,
    Ignored,
    NewState,
    Plan,
    PlanProblem,
    Unmanaged,
)
from chanops.manifests.model import Manifest
from chanops.platform.models import Connection
from chanops.state.store import Record

# Order of work (docs/engine.md): create (then settings), update, enable;
# disable before delete.
PHASE: Mapping[ActionKind, int] = {
    ActionKind.ADOPT: 0,
    ActionKind.CREATE: 1,
    ActionKind.RECREATE: 1,
    ActionKind.UPDATE: 2,
    ActionKind.ENABLE: 3,
    ActionKind.SYNC: 4,
    ActionKind.DISABLE: 5,
    ActionKind.DELETE: 6,
    ActionKind.ORPHAN: 7,
}


@dataclass(frozen=True, slots=True)
class PlanOptions:
    max_delete: int | None = None  # None = 25% of managed, at least 1
    allow_recreate: bool = False
    failed_files: frozenset[str] = frozenset()
    # Every manifest file the load found, loaded or not (LoadResult.files): a record
    # whose file is not among them had its file removed (the unhealthy-root guard).
    files: frozenset[str] = frozenset()
    root_ok: bool = True
    root: str = ""  # LoadResult.root: files are compared relative to it (source_key)
    only: frozenset[str] | None = None  # plan just these names (a partial reconcile)
    targets: frozenset[str] | None = None  # --target: act only on these names
    selector: Mapping[str, str] | None = None  # --selector: manifests with these labels
    drivers: Mapping[str, DriverMeta] = field(default_factory=dict)


def idempotency_key(record: Record | None) -> str | None:
    """A pending create intent's key, so a create retried after a crash is not repeated.

    None means "a new create": the executor draws a fresh random key (a plan stays a
    pure function of its inputs) and records it in the intent before the call.
    """
    if record is not None and record.intent is not None and record.intent.idempotency_key:
        return record.intent.idempotency_key
    return None


def make_plan(
    desired: Mapping[str, Desired],
    observed: Observed,
    memory: Mapping[str, Record],
    options: PlanOptions,
) -> Plan:
    """Decide every action; see the module docstring for the rules. No I/O."""
    planner = _Planner(desired, observed, memory, options)
    return planner.run()


def in_scope(name: str, desired: Mapping[str, Desired], options: PlanOptions) -> bool:
    """Whether `only`, `--target` and `--selector` let the plan decide about `name`."""
    if options.only is not None and name not in options.only:
        return False
    if options.targets is not None and name not in options.targets:
        return False
    if options.selector:
        d = desired.get(name)
        if d is None:
            # Deletions carry no labels: a plan with a selector never deletes.
            return False
        labels = d.manifest.labels
        return all(labels.get(k) == v for k, v in options.selector.items())
    return True


class _Planner:
    def __init__(
        self,
        desired: Mapping[str, Desired],
        observed: Observed,
        memory: Mapping[str, Record],
        options: PlanOptions,
    ) -> None:
        self.options = options
        self.observed = observed
        self.memory = memory
        self.by_id = observed.by_id()
        self.managed = sum(1 for r in memory.values() if r.connection_id is not None)
        self.actions: list[Action] = []
        self.blocked: list[Blocked] = []
        self.ignored: list[Ignored] = []
        self.errors: list[PlanProblem] = []
        self.conditions: dict[str, list[Condition]] = {}
        self.claimed: set[int] = set()  # ids adopted in this plan
        # Failed files by key; store records are keys already (older stores held the
        # path as discovered: `frozen_file` accepts both).
        self.failed = frozenset(source_key(f, options.root) for f in options.failed_files)
        # A manifest from a file that failed is not desired: its connections are frozen.
        # (Without a failed file nothing is filtered, and 10,000 keys are not computed.)
        self.desired = (
            {
                n: d
                for n, d in desired.items()
                if source_key(d.manifest.source.file, options.root) not in self.failed
            }
            if self.failed
            else desired
        )

    # A daemon edit plans one name among 10,000: what only some plans need is computed
    # on first use, not per plan.

    @functools.cached_property
    def owner(self) -> dict[int, str]:
        """Connection id -> the name whose record holds it."""
        return {r.connection_id: r.name for r in self.memory.values() if r.connection_id}

    @functools.cached_property
    def facts(self) -> RootFacts:
        """The root as the removal guards see it (a key per file: only for removals)."""
        o = self.options
        return RootFacts.of(o.root, o.failed_files, o.files, o.root_ok, len(self.desired))

    def new_state(self, d: Desired, meta: DriverMeta) -> NewState:
        """What the store will remember once this manifest's write succeeded."""
        m = d.manifest
        return NewState(
            applied_spec=desired_doc(m, meta.secret_paths | set(d.secret_hmacs)),
            fingerprint=d.fingerprint or fingerprint(d),
            source_key=source_key(m.source.file, self.options.root),
        )

    def meta(self, driver: str) -> DriverMeta:
        return self.options.drivers.get(driver, DriverMeta())

    def in_scope(self, name: str) -> bool:
        return in_scope(name, self.desired, self.options)

    def cond(self, name: str, kind: ConditionType, message: str = "") -> None:
        """`kind` holds for `name` (the first message given for it is kept)."""
        held = self.conditions.setdefault(name, [])
        if all(c.type != kind for c in held):
            held.append(holding(kind, message))

    def run(self) -> Plan:
        # A partial plan (a daemon edit of one name among 10,000) walks just its names.
        only = self.options.only
        desired = sorted(self.desired) if only is None else sorted(only & self.desired.keys())
        remembered = sorted(self.memory) if only is None else sorted(only & self.memory.keys())
        for name in desired:
            if self.in_scope(name):
                self.plan_desired(self.desired[name])
        for name in remembered:
            if name not in self.desired and self.in_scope(name):
                self.plan_removed(self.memory[name])
        self.actions += sync_actions(self.actions, self.desired, self.meta)
        self.guard()
        unmanaged: tuple[Unmanaged, ...] = ()
        if self.observed.scope is None and self.options.only is None:
            unmanaged = tuple(
                Unmanaged(c.id, c.name, c.driver, c.status)
                for c in sorted(self.observed.connections, key=lambda c: c.id)
                if c.id not in self.owner and c.id not in self.claimed
            )
        actions = sorted(
            enumerate(self.actions), key=lambda ia: (PHASE[ia[1].kind], ia[1].name, ia[0])
        )
        max_delete = self._max_delete()
        return Plan(
            actions=tuple(a for _, a in actions),
            blocked=tuple(self.blocked),
            unmanaged=unmanaged,
            ignored=tuple(self.ignored),
            errors=tuple(self.errors),
            conditions={k: tuple(v) for k, v in sorted(self.conditions.items())},
            managed=self.managed,
            max_delete=max_delete,
        )

    # -- a manifest that exists ---------------------------------------------------

    def plan_desired(self, d: Desired) -> None:
        m = d.manifest
        meta = self.meta(m.driver)
        record = self.memory.get(m.name)
        if m.suspend:
            self.cond(m.name, SUSPENDED)
            return
        if d.secret_error:
            self.cond(m.name, SECRET_UNRESOLVED, d.secret_error)
            self.errors.append(PlanProblem(m.name, d.secret_error))
            return
        match self.find(d, record):
            case Managed(conn):
                self.plan_existing(d, conn, record, meta)
            case Adopt(conn, why):
                self.claimed.add(conn.id)
                self.actions.append(
                    Action(
                        ActionKind.ADOPT,
                        m.name,
                        m.driver,
                        why,
                        connection_id=conn.id,
                        cause=Cause.ADOPTION,
                        new_state=self.new_state(d, meta),
                    )
                )
                # Nothing applied by us yet: every field and secret is written.
                self.plan_existing(d, conn, None, meta)
            case Create(why):
                self.plan_create(d, record, meta, why)
            case _:
                pass  # not read in this partial reconcile, or settled by find

    def find(self, d: Desired, record: Record | None) -> Found:
        """The connection a manifest means, and how it was found (see `Found`).

        Where the answer is an error or a person's step, the error or condition is
        recorded here and SETTLED returned: nothing more to plan for this name.
        """
        m = d.manifest
        if (
            record is not None
            and record.connection_id is not None
            and (m.connection_id is None or m.connection_id == record.connection_id)
        ):
            return self._find_remembered(m, record.connection_id)
        if m.connection_id is not None:
            return self._find_by_id(m, m.connection_id)
        if self.observed.scope is not None:
            return UNKNOWN  # adoption by name needs the complete list
        return self._find_by_name(m, record)

    def problem(self, name: str, message: str) -> Found:
        """Record why the planner cannot decide for `name`; nothing more to plan."""
        self.errors.append(PlanProblem(name, message))
        return SETTLED

    def _find_remembered(self, m: Manifest, cid: int) -> Found:
        """The connection chanops created or adopted for this manifest."""
        conn = self.by_id.get(cid)
        if conn is not None:
            # Being deleted: wait for the delete job.
            return UNKNOWN if conn.status == "deleting" else Managed(conn)
        if not self.observed.saw(cid):
            return UNKNOWN
        # Remembered but gone: someone deleted it on the platform.
        if m.connection_id is not None:
            return self.problem(
                m.name, f"spec.connectionId {m.connection_id} does not exist on the platform"
            )
        return Create(f"connection {cid} no longer exists on the platform")

    def _find_by_id(self, m: Manifest, cid: int) -> Found:
        """The connection `spec.connectionId` names, to adopt."""
        conn = self.by_id.get(cid)
        if conn is None:
            if not self.observed.saw(cid):
                return UNKNOWN
            if not self.meta(m.driver).creatable:
                # The marketplace app (or POS store) has not made it yet: a person's
                # step, not an error to retry.
                self.cond(m.name, AWAITING_MARKETPLACE_SETUP)
                return SETTLED
            return self.problem(m.name, f"spec.connectionId {cid} does not exist on the platform")
        other = self.owner.get(conn.id)
        if other is not None and other != m.name:
            return self.problem(
                m.name, f"spec.connectionId {conn.id} is already managed by manifest {other}"
            )
        if conn.driver != m.driver:
            return self.problem(
                m.name,
                f"spec.connectionId {conn.id} is a {conn.driver} connection, not {m.driver}",
            )
        return Adopt(conn, f"adopt connection {conn.id} named by spec.connectionId")

    def _find_by_name(self, m: Manifest, record: Record | None) -> Found:
        """Exactly one unmanaged connection of this name and driver is adopted.

        A pending create intent (a crash between the create call and recording its
        answer) also matches by the name that create sent, so a manifest renamed since
        still finds what its create made.
        """
        intent = record.intent if record is not None else None
        pending = intent is not None and intent.op == "create"
        sent = (intent.display_name or "") if intent is not None and pending else ""
        names = {m.display_name, sent} - {""}
        candidates = [
            c
            for c in self.observed.connections
            if c.name in names
            and c.driver == m.driver
            and c.id not in self.owner
            and c.id not in self.claimed
            and c.status != "deleting"
        ]
        ours = [c for c in candidates if c.name == sent]
        if len(ours) == 1:
            candidates = ours  # what the interrupted create made, whatever else matches
        if len(candidates) > 1:
            ids = ", ".join(str(c.id) for c in sorted(candidates, key=lambda c: c.id))
            return self.problem(
                m.name,
                f"{len(candidates)} unmanaged {m.driver} connections are named "
                f"{m.display_name!r} (ids {ids}); set spec.connectionId to choose one",
            )
        if candidates:
            why = (
                "a create was in flight when chanops stopped; adopt what it made"
                if pending
                else "adopt the unmanaged connection with the same name and driver"
            )
            return Adopt(candidates[0], f"{why} (id {candidates[0].id})")
        return Create("no connection with this name and driver exists")

    def plan_create(self, d: Desired, record: Record | None, meta: DriverMeta, why: str) -> None:
        m = d.manifest
        if not meta.creatable:
            # A condition, not an error: the operator has to act in the marketplace.
            self.cond(m.name, AWAITING_MARKETPLACE_SETUP)
            return
        self.actions.append(
            Action(
                ActionKind.CREATE,
                m.name,
                m.driver,
                why,
                changes=tuple(create_changes(d, meta)),
                display_name=m.display_name,
                idempotency_key=idempotency_key(record),
                deletion_policy=m.deletion_policy,
                cause=Cause.NEW,
                new_state=self.new_state(d, meta),
            )
        )
        if not m.enabled:
            self.actions.append(
                Action(ActionKind.DISABLE, m.name, m.driver, "spec.enabled is false")
            )

    def plan_existing(
        self, d: Desired, conn: Connection, record: Record | None, meta: DriverMeta
    ) -> None:
        m = d.manifest
        if conn.authorization == "pending":
            self.cond(m.name, AWAITING_AUTHORIZATION)
        fp = d.fingerprint or fingerprint(d)
        drift = record is not None and record.fingerprint == fp
        if (
            drift
            and record is not None
            and record.version == conn.version
            and conn.driver == m.driver
            and not m.ignore_differences
        ):
            # Fast path: the manifest is what we applied and nobody wrote since.
            changes: list[FieldChange] = []
            immutable: list[FieldChange] = []
        else:
            changes, ignored, immutable = diff(d, conn, record, meta)
            self.ignored.extend(ignored)
        if immutable:
            self.plan_recreate(d, conn, meta, immutable)
            return
        cause = Cause.DRIFT if drift else Cause.MANIFEST
        if changes:
            reason = (
                "drift: changed on the platform since the last apply"
                if drift
                else "manifest differs from the platform"
            )
            if record is not None and record.version not in (None, conn.version):
                reason += f" (version {record.version} -> {conn.version} moved by someone else)"
            self.actions.append(
                Action(
                    ActionKind.UPDATE,
                    m.name,
                    m.driver,
                    reason,
                    connection_id=conn.id,
                    changes=tuple(changes),
                    if_match=conn.version,
                    cause=cause,
                    new_state=self.new_state(d, meta),
                )
            )
        self.plan_enabled(m, conn, cause)

    def plan_enabled(self, m: Manifest, conn: Connection, cause: Cause) -> None:
        """Enable or disable so the platform's status matches `spec.enabled`."""
        if m.enabled == (conn.status == "active") or conn.status not in ("active", "inactive"):
            return
        drift = cause is Cause.DRIFT
        if m.enabled:
            kind = ActionKind.ENABLE
            reason = "drift: disabled on the platform" if drift else "spec.enabled is true"
        else:
            kind = ActionKind.DISABLE
            reason = "drift: enabled on the platform" if drift else "spec.enabled is false"
        self.actions.append(
            Action(kind, m.name, m.driver, reason, connection_id=conn.id, cause=cause)
        )

    def plan_recreate(
        self, d: Desired, conn: Connection, meta: DriverMeta, immutable: list[FieldChange]
    ) -> None:
        """An immutable field changed: blocked, or delete and create with --allow-recreate."""
        m = d.manifest
        what = ", ".join(f"{c.path.lstrip('/')} {c.before!r} -> {c.after!r}" for c in immutable)
        if not self.options.allow_recreate:
            self.blocked.append(
                Blocked(
                    ActionKind.RECREATE,
                    m.name,
                    f"cannot change immutable {what} of connection {conn.id}; "
                    "rerun with --allow-recreate to delete and create it again",
                    connection_id=conn.id,
                    rule=Guard.IMMUTABLE,
                )
            )
            return
        if not meta.creatable:
            self.problem(m.name, f"cannot recreate a {m.driver} connection ({what})")
            return
        self.actions.append(
            Action(
                ActionKind.RECREATE,
                m.name,
                m.driver,
                f"immutable {what} changed; --allow-recreate",
                connection_id=conn.id,
                changes=tuple(create_changes(d, meta)),
                display_name=m.display_name,
                idempotency_key=None,
                deletion_policy=m.deletion_policy,
                cause=Cause.IMMUTABLE,
                new_state=self.new_state(d, meta),
            )
        )
        if not m.enabled:
            self.actions.append(
                Action(ActionKind.DISABLE, m.name, m.driver, "spec.enabled is false")
            )

    # -- a manifest that is gone --------------------------------------------------

    def plan_removed(self, record: Record) -> None:
        decided = removal(record, self.observed, self.by_id, self.facts)
        if isinstance(decided, Blocked):
            condition = blocked_condition(decided)
            if condition is not None:
                self.cond(record.name, condition, decided.reason)
            self.blocked.append(decided)
        elif decided is not None:
            self.actions.append(decided)

    # -- safety ---------------------------------------------------------------

    def _max_delete(self) -> int:
        if self.options.max_delete is not None:
            return max(0, self.options.max_delete)
        return default_max_delete(self.managed)

    def _deletes_outside_only(self) -> int:
        """Deletes a full plan would make for removed names outside `only` (see mass_delete).

        Only names whose connection the observation covers count: a partial read
        cannot know the others.
        """
        if self.options.only is None:
            return 0
        decided = (
            removal(record, self.observed, self.by_id, self.facts)
            for name, record in self.memory.items()
            if name not in self.desired and not self.in_scope(name)
        )
        return sum(1 for d in decided if isinstance(d, Action) and d.kind == ActionKind.DELETE)

    def guard(self) -> None:
        self.actions, blocked = mass_delete(
            self.actions,
            managed=self.managed,
            limit=self._max_delete(),
            elsewhere=self._deletes_outside_only() if self.actions else 0,
        )
        self.blocked.extend(blocked)


__all__ = [
    "PHASE",
    # The planner's inputs, re-exported: they are what a caller of make_plan builds.
    "Desired",
    "DriverMeta",
    "Observed",
    "PlanOptions",
    "default_max_delete",
    "idempotency_key",
    "in_scope",
    "make_plan",
    "source_key",
]
