"""The daemon: watcher + scheduler + reconcile loop + HTTP endpoints, in one event loop.

Read `Daemon.run` top to bottom: start (endpoints, first full reconcile, schedules,
watch), loop, stop. The loop is an interruptible sleep (kopf): it waits until the next
deadline (the periodic resync, or the earliest per-connection retry) unless something
cuts the wait short (a batch of file changes, SIGHUP, a stop signal). Events only say
*when* to reconcile; every reconcile plans from desired + observed + memory (DESIGN.md
section 5), and reconciles never overlap.

- Full reconcile: at startup, every `--resync`, on SIGHUP, when the root is swapped or a
  directory moved, and while the platform is unreachable (retried with backoff).
- Partial reconcile: a batch of changed files reconciles `only` the names those files
  define now or defined last time (store record or previous load), plus connections
  whose retry is due. The engine reads just those connections by id.
- Per-connection backoff (1 s doubling to 5 min) after a failed action; visible in
  /status; reset by a change to the connection's file or by success.
- Preemption: manifest edits that arrive while a full reconcile is still reading (load,
  list, resolve; nothing written yet) abandon that read once, run their partial
  reconcile, then run the full reconcile again under the same reconcile_id (`_full`).
  Once the full reconcile writes, edits wait for it.
- Git source (`--git`): no file watcher. Each checkout `GitSource.updates()` yields
  (the current one first, then every new commit) becomes the root of the next full
  reconcile, switched only between reconciles; its SHA and subject are on every event.
  Checkouts are immutable directories, so a reconcile always reads one whole commit.

Files are keyed relative to the manifests root (`source_key`, as the engine stores
them), so the names a file defined survive a root that moves with every commit.

Supervision: the reconcile loop and the watcher (or git follower) end only when the
daemon stops. If either dies of an exception nothing handled, the daemon logs
`daemon.crashed` (critical), /healthz and /readyz answer 503, and `run` stops and
returns EXIT_CRASHED (70): a supervisor restarts a process that would otherwise serve
/healthz 200 and never reconcile again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog
from starlette.responses import JSONResponse

from chanops.daemon.backoff import Backoff
from chanops.daemon.gitsource import GitSourceCollector, git_status, readiness_reasons
from chanops.daemon.http import HttpServer, bind, create_app
from chanops.daemon.loader import IncrementalLoader
from chanops.daemon.revision import RevisionReader
from chanops.daemon.scheduler import SyncOutcome, SyncScheduler, Target, utc_iso
from chanops.daemon.watcher import Batch, ManifestWatcher
from chanops.engine.plan import Guard
from chanops.engine.planner import source_key
from chanops.engine.reconciler import Prepared, Reconciler, ReconcileResult
from chanops.errors import APIError, ChanopsError, NotFound, PlatformError
from chanops.manifests.model import Diagnostic, LoadResult, Manifest
from chanops.observability.logging import LogConfig, describe_error
from chanops.observability.metrics import Metrics
from chanops.platform.api import PlatformAPI
from chanops.platform.models import Connection
from chanops.state.store import Record, StateStore

if TYPE_CHECKING:
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp, Receive, Scope, Send

    from chanops.sources.git import GitSource, Revision

log = structlog.get_logger("chanops.daemon")

FULL = "(full reconcile)"  # backoff key of a full reconcile that could not reach the platform
SETTLE_SECONDS = 0.25
OUTAGE_RETRY_CAP_S = 30.0  # platform unreachable: retry the reconcile at least this often
REFRESH_BY_LIST = 50  # more written connections than this: re-list instead of GET each
EVENTS_PER_CONNECTION = 20
RECENT_EVENTS = 100
EXIT_CRASHED = 70  # EX_SOFTWARE (sysexits.h): the reconcile loop died of a bug or fault
_EVENT_FIELDS = (
    "event",
    "timestamp",
    "level",
    "action",
    "error",
    "duration_ms",
    "reconcile_id",
    "revision",
    "job_id",
    "condition",
    "reason",
    "changes",
)

Kind = Literal["full", "partial"]


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    manifests: Path
    secrets_dirs: tuple[Path, ...] = ()
    resync_seconds: float = 300.0
    listen: tuple[str, int] | None = ("127.0.0.1", 9464)
    shutdown_timeout: float = 30.0
    watch_step_ms: int = 30
    force_polling: bool | None = None


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(slots=True)
class FullRun:
    """One full reconcile request that manifest edits may preempt once (`Daemon._full`).

    Preempted while it only reads (load, list the platform, resolve secrets), it runs
    again after the edits' partial reconcile as the same reconcile: same id, same reason,
    one `reconcile.started` and one `reconcile.completed` (or `failed`) in all.
    """

    reason: str
    reconcile_id: str = field(default_factory=_new_id)
    preemptible: bool = True
    preempted: bool = False  # the read phase was abandoned for file changes
    announced: bool = False  # `reconcile.started` was logged
    loud: bool = False  # ... at info: its end is logged at info or above too
    noted: bool = False  # its load's diagnostics were logged (`_note_load`)


_CANONICAL: dict[str, str] = {}


def canonical(path: str) -> str:
    """The real path, memoised: thousands of manifest paths are compared per edit.

    The memo is cleared on every full reconcile (`forget_canonical`), which is also what
    a root swap or directory move triggers, so a stale answer cannot outlive a layout
    change.
    """
    real = _CANONICAL.get(path)
    if real is None:
        if len(_CANONICAL) > 200_000:
            _CANONICAL.clear()
        real = _CANONICAL[path] = os.path.realpath(path)
    return real


def forget_canonical() -> None:
    _CANONICAL.clear()


class Daemon:
    def __init__(
        self,
        *,
        client: PlatformAPI,
        store: StateStore,
        reconciler: Reconciler,
        options: DaemonOptions,
        metrics: Metrics,
        logging: LogConfig,
        source: GitSource | None = None,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.client = client
        self.store = store
        self.reconciler = reconciler
        self.options = options
        self.metrics = metrics
        self.logging = logging
        self.backoff = Backoff()
        self.revision = RevisionReader(options.manifests)
        self.loader = IncrementalLoader(options.manifests, secrets_dirs=options.secrets_dirs)
        self.root = str(options.manifests)  # what the loader reports as LoadResult.root
        self.source = source
        self.routes = list(routes)
        self.git_revision: Revision | None = None  # the checkout the last load read
        self._next_revision: Revision | None = None  # ... and the one to switch to
        self._have_revision = asyncio.Event()
        if source is not None:
            metrics.registry.register(GitSourceCollector(source))
            # Fetch failures change readiness between reconciles: read it at scrape time.
            metrics.ready.set_function(lambda: 1.0 if self.readiness()[0] else 0.0)
        self.scheduler = SyncScheduler(
            client, lookup=self._sync_target, on_outcome=self._sync_outcome
        )
        self.load: LoadResult | None = None
        self.observed: dict[int, Connection] = {}
        self.first_done = False
        self.platform_ok = False
        self.outage_since: float | None = None
        self.last_reconcile: dict[str, Any] = {}
        self.events: dict[str, deque[dict[str, Any]]] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self._files_to_names: dict[str, set[str]] = {}
        # name -> managed connection, and file -> names, from the store after the last
        # reconcile (the store changes only during reconciles).
        self._records: dict[str, Record] = {}
        # Removals the planner held back while the root was unhealthy: planned again by
        # the first partial reconcile whose load is clean.
        self._held: set[str] = set()
        self._record_files: dict[str, set[str]] = {}
        self._logged_diagnostics: set[tuple[str, int, int, str]] = set()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._files_changed = asyncio.Event()  # set whenever _pending_files gains files
        self._pending_files: set[str] = set()
        self._pending_full: str | None = None
        self._stop_signal: str | None = None
        self._http: HttpServer | None = None
        self.crashed: str | None = None  # what killed a supervised task (`_supervise`)
        logging.tap.subscribe(self._remember_event)
        logging.tap.subscribe(metrics.on_event)

    # -- the process ---------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0 on a clean stop."""
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        if self.options.listen is not None:
            sock = bind(*self.options.listen)
            app = create_app(
                metrics=self.metrics,
                ready=self.readiness,
                status=self.status,
                routes=self.routes,
            )
            # create_app's /healthz only says "the process runs"; after a crash it still
            # runs for a few seconds while it stops, and must not look alive meanwhile.
            app.add_middleware(LivenessGate, crashed=lambda: self.crashed)
            self._http = HttpServer(app, sock)
            self._http.start()
            host, port = self._http.address
            log.info("http.listening", address=f"{host}:{port}", port=port)
        git: dict[str, Any] = {}
        if self.source is not None:
            git = {"git": self.source.display_url, "ref": self.source.ref}
        log.info(
            "daemon.started",
            manifests=str(self.options.manifests),
            resync_s=self.options.resync_seconds,
            pid=os.getpid(),
            **git,
        )
        if self.source is None and not self.options.manifests.exists():
            log.warning(
                "manifests.missing",
                manifests=str(self.options.manifests),
                message="the manifests root does not exist yet: nothing will be created or "
                "deleted until it does; create it and add *.yaml manifests (chanops export "
                "writes them for existing connections). It is picked up when it appears.",
            )
        if self.source is None:
            watcher = ManifestWatcher(
                self.options.manifests,
                self._on_batch,
                step_ms=self.options.watch_step_ms,
                force_polling=self.options.force_polling,
            )
            watch_task = asyncio.create_task(watcher.run(self._stop), name="watcher")
            watch_task.add_done_callback(self._supervise)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watcher.armed.wait(), timeout=10)
        else:
            watch_task = asyncio.create_task(self._follow(self.source), name="git follower")
            watch_task.add_done_callback(self._supervise)
        self.scheduler.start()
        loop_task = asyncio.create_task(self._loop(), name="reconcile loop")
        loop_task.add_done_callback(self._supervise)
        await self._stop.wait()
        started = time.monotonic()
        log.info("daemon.stopping", signal=self._stop_signal)
        # Let the reconcile in flight finish its API calls, up to the timeout.
        done, _ = await asyncio.wait({loop_task}, timeout=self.options.shutdown_timeout)
        if not done:
            log.warning(
                "daemon.shutdown_timeout",
                timeout_s=self.options.shutdown_timeout,
                error="a reconcile was still running; cancelled",
            )
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loop_task
        remaining = self.options.shutdown_timeout - (time.monotonic() - started)
        await self.scheduler.shutdown(grace=min(remaining, 5.0))
        if self.source is not None:
            watch_task.cancel()  # the fetch loop never ends by itself
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(watch_task, timeout=3)
        if self._http is not None:
            await self._http.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        log.info("daemon.stopped", duration_ms=round((time.monotonic() - started) * 1000))
        return EXIT_CRASHED if self.crashed is not None else 0

    def _supervise(self, task: asyncio.Task[None]) -> None:
        """Done callback of the long-lived tasks: one that ends before a stop crashed.

        Expected failures (platform, store, manifests) are handled inside a reconcile;
        what escapes is a bug or a fault nothing foresaw, and the state it left is
        unknown. Carrying on would leave a daemon that looks alive and does nothing, so
        stop and exit non-zero: a restart begins again from the store and the manifests.
        """
        if task.cancelled():
            return  # only the shutdown cancels them
        exc = task.exception()  # retrieved here: no "exception was never retrieved"
        if exc is None and self._stop.is_set():
            return  # a normal end: the daemon is stopping
        if self.crashed is not None:
            return  # the first crash is the one that matters
        error = describe_error(exc) if exc is not None else "ended without a stop signal"
        self.crashed = f"{task.get_name()}: {error}"
        # One line at info (ErrorRenderer turns exc_info into `error`); with
        # --log-level debug the traceback is kept.
        log.critical("daemon.crashed", task=task.get_name(), error=error, exc_info=exc)
        self.metrics.ready.set(0)
        self._stop.set()
        self._wake.set()

    async def once(self) -> int:
        """One full reconcile: 0 when everything chanops can do is done, else 1.

        With a git source: one fetch first. A failed fetch is exit 1 (like `apply
        --git`): a one-shot run against a stale checkout would report success falsely.
        """
        if self.source is not None:
            from chanops.errors import SourceError
            from chanops.sources.options import checkout_once

            try:
                self._next_revision = await checkout_once(self.source)
            except SourceError as exc:
                log.error("daemon.failed", error=str(exc))
                return 1
        self._snapshot_records()
        try:
            result = await self.reconcile("full", None, reason="once")
        except Exception as exc:  # what `_supervise` catches for `run`: not a traceback
            log.critical(
                "daemon.crashed", task="reconcile", error=describe_error(exc), exc_info=exc
            )
            return EXIT_CRASHED
        if result is None:
            return 1
        return 0 if result.converged else 1

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGTERM, self._on_stop_signal, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._on_stop_signal, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, name: str) -> None:
        if self._stop.is_set():
            return
        self._stop_signal = name
        self._stop.set()
        self._wake.set()

    def _on_hup(self) -> None:
        log.info("signal.received", signal="SIGHUP", action="full reconcile")
        self._pending_full = self._pending_full or "SIGHUP"
        self._wake.set()
        if self.source is not None:
            self.source.trigger()  # and fetch now: a new commit becomes the next reconcile

    def _on_batch(self, batch: Batch) -> None:
        if batch.rescan:
            self._pending_full = self._pending_full or batch.reason
        self._pending_files |= {canonical(f) for f in batch.files}
        if self._pending_files:
            self._files_changed.set()
        self._wake.set()

    def request_full(self, reason: str) -> None:
        self._pending_full = self._pending_full or reason
        self._wake.set()

    async def _follow(self, source: GitSource) -> None:
        """Each new checkout asks for a full reconcile; the loop switches to it.

        `updates()` swallows fetch failures itself; anything else escaping it would
        silently end the following, so it is logged and the loop starts again.
        """
        while True:
            try:
                async for revision in source.updates():
                    self._next_revision = revision
                    self._have_revision.set()
                    self.request_full(f"git revision {revision.short}")
            except Exception as exc:
                log.error("git.follow_failed", error=describe_error(exc))
                await asyncio.sleep(min(source.interval, 30.0))

    def _switch_root(self) -> None:
        """Between reconciles: load the next reconcile from the newest checkout."""
        revision, self._next_revision = self._next_revision, None
        if revision is None or (
            self.git_revision is not None and revision.path == self.git_revision.path
        ):
            return
        self.git_revision = revision
        self.root = str(revision.path)
        self.loader = IncrementalLoader(revision.path, secrets_dirs=self.options.secrets_dirs)

    def _key(self, path: str) -> str:
        """A manifest path as the engine stores it: relative to the root (source_key).

        Loader paths carry the root as given; watcher paths are real paths; store
        records are keys already (or, from older stores, paths as discovered).
        """
        key = source_key(path, self.root)
        if key != path or not os.path.isabs(path):
            return key
        real, root = canonical(path), canonical(self.root)
        if real.startswith(root + os.sep):
            return real[len(root) + 1 :]
        return path

    # -- the loop ------------------------------------------------------------------------

    async def _loop(self) -> None:
        self._snapshot_records()
        if self.source is not None and self._next_revision is None:
            # No checkout yet (first start, remote down): nothing to load, nothing to
            # delete. /readyz says why; the first fetch that works starts the loop.
            waiter = asyncio.create_task(self._have_revision.wait())
            stopper = asyncio.create_task(self._stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if self._stop.is_set():
                return
        if self.source is not None:
            self._pending_full = None  # the startup reconcile covers the checkout so far
        await self.reconcile("full", None, reason="startup")
        next_resync = time.monotonic() + self.options.resync_seconds
        while not self._stop.is_set():
            now = time.monotonic()
            deadline = min(next_resync, self._next_retry())
            if not self._wake.is_set() and deadline > now:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=deadline - now)
            if self._stop.is_set():
                return
            self._wake.clear()
            now = time.monotonic()
            files, self._pending_files = self._pending_files, set()
            reason, self._pending_full = self._pending_full, None
            if reason is None and now >= next_resync:
                reason = "resync"
            if reason is None and FULL in self.backoff.due(now):
                reason = "platform retry"
            if reason is not None:
                # Taken, not forgotten: the failure count keeps growing during an outage.
                self.backoff.postpone_due([FULL])
                await self._full(reason, files)
                next_resync = time.monotonic() + self.options.resync_seconds
                continue
            # During an outage the full reconcile's retry covers every name.
            due = self.backoff.due(now) - {FULL} if self.outage_since is None else set()
            if files or due:
                await self._partial(files, due)

    async def _full(self, reason: str, files: set[str]) -> None:
        """A full reconcile that manifest edits may preempt once, while it only reads.

        Edits (`_pending_files`) arriving before `execute` begins abandon the read phase
        (nothing has been written to the platform or the store yet): their partial
        reconcile runs at once, then this full reconcile runs again from the start (a
        fresh load and listing, same reconcile_id and reason), now not preemptible, so a
        stream of edits cannot postpone it twice. Not with a git source (no watcher, a
        commit is one whole full reconcile) and not during an outage (the full reconcile
        is the platform retry; a partial could not reach the platform either).
        """
        if self.source is not None or self.outage_since is not None:
            await self.reconcile("full", None, reason=reason, changed=files)
            return
        run = FullRun(reason=reason)
        await self.reconcile("full", None, reason=reason, changed=files, run=run)
        if not run.preempted or self._stop.is_set():
            return
        edited, self._pending_files = self._pending_files, set()
        if edited:
            await self._partial(edited, set())
        if self._stop.is_set():
            return  # stopping: the next start reconciles everything anyway
        # Edits that arrived meanwhile are covered by the run that starts now (forced
        # re-read), as in `_loop`. Full requests (SIGHUP, root changed) stay pending: they
        # get their own reconcile, with its own reconcile.started, after this one.
        again = self._pending_files | (set() if run.noted else files)
        self._pending_files = set()
        run.preemptible = False
        await self.reconcile("full", None, reason=reason, changed=again, run=run)

    async def _files_arrive(self) -> None:
        """Return once manifest changes are pending (at once if some already are)."""
        while not self._pending_files:
            self._files_changed.clear()
            await self._files_changed.wait()

    def _next_retry(self) -> float:
        if self.outage_since is not None:
            full = self.backoff.get(FULL)
            return full.due if full is not None else float("inf")
        return self.backoff.next_due() or float("inf")

    async def _partial(self, files: set[str], due: set[str]) -> None:
        if any(_empty(f) for f in files):
            # An editor saving in place truncates first: an empty file for a moment would
            # read as "its connections were removed". Let the write land, then look.
            await asyncio.sleep(SETTLE_SECONDS)
            files |= self._pending_files
            self._pending_files = set()
        load = await self._load(files)
        changed = self._names_in(files, load)
        self.backoff.reset(changed)  # a manifest change resets its backoff
        self.backoff.postpone_due(due)
        released: set[str] = set()
        if load.root_ok and not load.failed_files:
            released, self._held = self._held, set()
        only = changed | due | released
        if due:
            self.metrics.retries.labels(kind="reconcile").inc(len(due))
        await self.reconcile(
            "partial",
            only,
            reason="retry" if due and not files else "files changed",
            changed=files,
            load=load,
        )

    def _names_in(self, files: set[str], load: LoadResult) -> set[str]:
        """Names defined in `files` now (this load) or last time (previous load, store)."""
        names: set[str] = set()
        for m in load.manifests:
            if canonical(m.source.file) in files:
                names.add(m.name)
        for file in files:
            names |= self._files_to_names.get(self._key(file), set())
            names |= self._record_files.get(self._key(file), set())
        return names

    # -- one reconcile -------------------------------------------------------------------

    async def _load(self, changed: Iterable[str] = ()) -> LoadResult:
        # Every safety rule is the planner's (a path that became a directory or a FIFO
        # is a failed file the loader reports): the daemon adds none of its own.
        return await asyncio.to_thread(self.loader.load, set(changed))

    async def reconcile(
        self,
        kind: Kind,
        only: set[str] | None,
        *,
        reason: str,
        changed: Iterable[str] = (),
        load: LoadResult | None = None,
        run: FullRun | None = None,
    ) -> ReconcileResult | None:
        """One reconcile; None when it failed, was skipped or was preempted (`run`)."""
        reconcile_id = run.reconcile_id if run is not None else _new_id()
        if kind == "full":
            forget_canonical()
            self._held = set()  # a full reconcile plans every name anyway
            if self.source is not None:
                self._switch_root()
        subject: str | None = None
        if self.git_revision is not None:
            revision: str | None = self.git_revision.sha
            subject = self.git_revision.subject
        else:
            revision = await self.revision.read()
        self.logging.revision.value = revision
        self.logging.revision.subject = subject
        started = time.monotonic()
        stamp: dict[str, Any] = {"reconcile_id": reconcile_id}
        if subject is not None:
            stamp |= {"revision": revision, "subject": subject}
        # A root behind a symlink (git-sync) can be swapped while this reconcile reads
        # it. The watcher reports a swap only when the link resolves to a target other
        # than the one it reported last, so swaps during a reconcile that end on that
        # same target go unreported although the load may have read another one.
        target = self._root_target()
        try:
            with structlog.contextvars.bound_contextvars(**stamp):
                read = self._read(kind, only, reason=reason, changed=changed, load=load, run=run)
                if run is not None and run.preemptible:
                    ready = await self._read_or_preempt(read, run)
                else:
                    ready = await read
                if ready is None:
                    return None  # skipped, or preempted (`run.preempted`)
                load, prepared = ready
                # A rerun announced before an outage began (in the preempting partial)
                # ends as loudly as it started: one end event per reconcile.started.
                loud = run is not None and run.loud
                try:
                    if isinstance(prepared, ChanopsError):
                        raise prepared
                    result = await self.reconciler.execute(prepared)
                except PlatformError as exc:
                    self._failed(kind, only, exc, started, loud=loud)
                    return None
                except ChanopsError as exc:
                    self._failed(kind, only, exc, started, platform=False, loud=loud)
                    return None
                self._snapshot_records(only)
                self._succeeded(kind, only, load, result, prepared.observed.connections, started)
                await self._refresh_observed(result)
                return result
        finally:
            if target is not None and self._root_target() != target:
                self.request_full("root changed")

    async def _read(
        self,
        kind: Kind,
        only: set[str] | None,
        *,
        reason: str,
        changed: Iterable[str],
        load: LoadResult | None,
        run: FullRun | None,
    ) -> tuple[LoadResult, Prepared | ChanopsError] | None:
        """The read phase: load, log, observe and plan. Writes nothing to the platform or
        the store, so it may be abandoned (`_read_or_preempt`). None: nothing to do.

        A failure of `prepare` is returned, not raised, so that the caller handles it
        exactly like a failure of `execute`.
        """
        if load is None:
            load = await self._load(changed)
        self._note_load(load, changed)
        if run is not None:
            run.noted = True
        if only is not None and not only:
            # A change that defines nothing (an empty file, comments): nothing to do.
            log.debug("reconcile.skipped", reason=reason, kind=kind)
            return None
        if run is None or not run.announced:
            quiet = self.outage_since is not None
            (log.debug if quiet else log.info)(
                "reconcile.started",
                kind=kind,
                reason=reason,
                connections=len(only) if only is not None else len(load.manifests),
            )
            if run is not None:
                run.announced, run.loud = True, not quiet
        try:
            prepared = await self.reconciler.prepare(load, only=only)
            self._register_secrets(load, prepared.context.secrets, only)
        except ChanopsError as exc:
            return load, exc
        return load, prepared

    async def _read_or_preempt(
        self,
        read: Coroutine[Any, Any, tuple[LoadResult, Prepared | ChanopsError] | None],
        run: FullRun,
    ) -> tuple[LoadResult, Prepared | ChanopsError] | None:
        """Run the read phase unless manifest edits arrive first: then abandon it.

        Abandoning is safe: the loader serialises its (uncancellable) worker thread, and
        a cancelled `prepare` cancels its platform listing. A stop signal never preempts:
        the reconcile in flight finishes, as without edits.
        """
        task = asyncio.ensure_future(read)
        edits = asyncio.ensure_future(self._files_arrive())
        try:
            await asyncio.wait({task, edits}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and self._stop.is_set():
                await asyncio.wait({task})  # stopping: finish the read, execute as usual
        except BaseException:
            task.cancel()  # the loop itself is cancelled (shutdown timeout)
            raise
        finally:
            edits.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: a late result or error of an abandoned read
        run.preempted = True
        log.info(
            "reconcile.preempted",
            kind="full",
            reason=run.reason,
            files=len(self._pending_files),
        )
        return None

    def _root_target(self) -> str | None:
        """Where the root resolves now (None for a git source: its roots never move)."""
        return None if self.source is not None else os.path.realpath(self.root)

    def _snapshot_records(self, only: Iterable[str] | None = None) -> None:
        """Refresh the copy of the store's records (only the `only` names after a partial)."""
        if only is not None:
            for name in only:
                old = self._records.pop(name, None)
                if old is not None and old.source_file:
                    self._record_files.get(self._key(old.source_file), set()).discard(name)
                record = self.store.get(name)
                if record is not None:
                    self._records[name] = record
                    if record.source_file:
                        key = self._key(record.source_file)
                        self._record_files.setdefault(key, set()).add(name)
            return
        self._records = self.store.records()
        files: dict[str, set[str]] = {}
        for record in self._records.values():
            if record.source_file:
                files.setdefault(self._key(record.source_file), set()).add(record.name)
        self._record_files = files

    async def _refresh_observed(self, result: ReconcileResult) -> None:
        """Re-read the connections this reconcile wrote, so /status and the scheduler see
        their state now rather than at the next resync (one GET per written connection)."""
        ids: set[int] = set()
        for o in result.outcomes:
            cid = o.connection_id
            if cid is None:
                record = self.store.get(o.name)
                cid = record.connection_id if record is not None else None
            if cid is not None:
                ids.add(cid)

        async def read(cid: int) -> None:
            try:
                self.observed[cid] = await self.client.get_connection(cid)
            except NotFound:
                self.observed.pop(cid, None)
            except PlatformError as exc:
                log.debug("status.refresh_failed", connection_id=cid, error=describe_error(exc))

        if len(ids) > REFRESH_BY_LIST:
            # Many writes (a first start, a big merge): one paged list is cheaper.
            try:
                listed = await self.client.list_connections()
            except PlatformError as exc:
                log.debug("status.refresh_failed", error=describe_error(exc))
                return
            self.observed = {c.id: c for c in listed}
        elif ids:
            await asyncio.gather(*(read(cid) for cid in sorted(ids)))
        if ids and self.load is not None:
            self._count_connections(self.load)

    def _note_load(self, load: LoadResult, changed: Iterable[str]) -> None:
        """Log new manifest errors (once each; again when their file changes)."""
        changed_set = set(changed)
        errors = [d for d in load.diagnostics if d.severity == "error"]
        current = {_diag_key(d) for d in errors}
        self._logged_diagnostics &= current
        for d in errors:
            key = _diag_key(d)
            if key in self._logged_diagnostics and canonical(d.file) not in changed_set:
                continue
            self._logged_diagnostics.add(key)
            log.error(
                "manifest.invalid",
                file=d.file,
                line=d.line,
                column=d.column,
                field=d.path or None,
                code=d.code or None,
                error=d.message,
                frozen=sorted(self._files_to_names.get(self._key(d.file), set())),
            )
        self.metrics.manifest_errors.set(len(errors))
        # Remember which names each file defines (kept for files that fail now, so a
        # later fix or deletion still maps to the names they defined last time).
        mapping: dict[str, set[str]] = {}
        for m in load.manifests:
            mapping.setdefault(self._key(m.source.file), set()).add(m.name)
        for failed in load.failed_files:
            path = self._key(failed)
            if path in self._files_to_names:
                mapping.setdefault(path, set()).update(self._files_to_names[path])
        self._files_to_names = mapping
        self.load = load

    def _register_secrets(
        self, load: LoadResult, resolved: Mapping[str, Any], only: set[str] | None
    ) -> None:
        """Teach the log redactor every secret value this reconcile may write or echo."""
        from chanops.manifests.secrets import iter_secret_refs

        values: list[str] = []
        for by_pointer in resolved.values():
            values.extend(str(v) for v in by_pointer.values() if v is not None)
        for m in load.manifests:
            if only is not None and m.name not in only:
                continue  # unchanged since the reconcile that scanned it
            for _, ref in iter_secret_refs(m):
                if isinstance(ref, str):  # a literal secret in a manifest (validate warns)
                    values.append(ref)
        self.logging.redactor.add(values)

    def _succeeded(
        self,
        kind: Kind,
        only: set[str] | None,
        load: LoadResult,
        result: ReconcileResult,
        observed: Iterable[Connection],
        started: float,
    ) -> None:
        elapsed = time.monotonic() - started
        self._held |= {b.name for b in result.blocked if b.rule == Guard.UNHEALTHY_ROOT}
        for conn in observed:
            self.observed[conn.id] = conn
        if kind == "full":
            seen = {c.id for c in observed}
            self.observed = {i: c for i, c in self.observed.items() if i in seen}
        now = time.monotonic()
        failed = set(result.failed)
        errors = {e.name: e.message for e in result.plan.errors}
        errors.update({o.name: o.error or "failed" for o in result.outcomes if not o.ok})
        for name in sorted(failed):
            error = errors.get(name, "failed")
            if is_refusal(error):
                self.backoff.park(name, error)
                log.info("connection.parked", connection=name, reason="until the manifest changes")
                continue
            retry = self.backoff.fail(name, now, error)
            (log.debug if self.outage_since is not None else log.info)(
                "connection.requeued",
                connection=name,
                retry_in_s=retry.delay,
                failures=retry.failures,
            )
        names = {m.name for m in load.manifests} | set(self._records)
        settled = (names if only is None else set(only)) - failed
        self.backoff.reset(settled)
        self.metrics.backoff.set(len(self._backoff_names()))
        outcome = "success" if result.converged else "failed"
        self.metrics.reconciles.labels(outcome=outcome, kind=kind).inc()
        self.metrics.reconcile_duration.labels(kind=kind).observe(elapsed)
        if result.converged:
            self.metrics.last_success.set(time.time())
        if kind == "full":
            self.backoff.reset([FULL])
            if self.outage_since is not None:
                log.info(
                    "platform.reachable",
                    outage_ms=round((now - self.outage_since) * 1000),
                )
                self.outage_since = None
            self.platform_ok = True
        self.first_done = True
        self.metrics.ready.set(1 if self.readiness()[0] else 0)
        self._count_connections(load)
        frozen = {n for f in load.failed_files for n in self._files_to_names.get(self._key(f), ())}
        self.scheduler.update(load.manifests, frozen=frozen)
        self.last_reconcile = {
            "kind": kind,
            "finished_at": utc_iso(_now_utc()),
            "duration_ms": round(elapsed * 1000),
            "converged": result.converged,
            "actions": len(result.outcomes),
            "failed": sorted(failed),
            "blocked": [b.name for b in result.blocked],
            "waiting": {k: list(v) for k, v in result.waiting.items()},
        }
        log_method = log.info if result.converged else log.warning
        if self.outage_since is not None and not result.converged:
            log_method = log.debug  # still the same failure streak
        log_method(
            "reconcile.completed",
            kind=kind,
            duration_ms=round(elapsed * 1000),
            actions=len(result.outcomes),
            failed=len(failed),
            blocked=len(result.blocked),
            waiting=len(result.waiting),
            drift=len(result.drift),
            converged=result.converged,
        )

    def _failed(
        self,
        kind: Kind,
        only: set[str] | None,
        exc: ChanopsError,
        started: float,
        *,
        platform: bool = True,
        loud: bool = False,
    ) -> None:
        elapsed = time.monotonic() - started
        now = time.monotonic()
        with contextlib.suppress(ChanopsError):
            self._snapshot_records()  # the engine may have written some before failing
        self.metrics.reconciles.labels(outcome="failed", kind=kind).inc()
        self.metrics.reconcile_duration.labels(kind=kind).observe(elapsed)
        error = describe_error(exc)
        in_outage = self.outage_since is not None
        # One event per failure streak: the first failure is loud, the retries during
        # the same outage are logged at debug (and counted in /metrics).
        failed_log = log.debug if in_outage and not loud else log.error
        failed_log("reconcile.failed", kind=kind, duration_ms=round(elapsed * 1000), error=error)
        if platform:
            # Unreachable: one full reconcile is retried with backoff, not each name.
            self.platform_ok = False
            keys = [FULL]
        else:
            keys = [FULL] if kind == "full" else sorted(only or ())
        # While the platform is down the whole reconcile is retried, capped lower than a
        # connection's backoff: one failed list call per OUTAGE_RETRY_CAP_S costs nothing,
        # and the daemon converges soon after the platform returns, however long it was gone.
        cap = OUTAGE_RETRY_CAP_S if platform else None
        delays = [self.backoff.fail(key, now, error, cap=cap).delay for key in keys]
        retry_in = min(delays) if delays else None
        if platform and not in_outage:
            self.outage_since = now
            log.error("platform.unreachable", error=error, retry_in_s=retry_in)
        elif delays:
            (log.debug if in_outage else log.info)(
                "reconcile.requeued", kind=kind, retry_in_s=retry_in
            )
        self.metrics.ready.set(1 if self.readiness()[0] else 0)
        self.metrics.backoff.set(len(self._backoff_names()))

    def _backoff_names(self) -> list[str]:
        names = {m.name for m in self.load.manifests} if self.load else set()
        names |= set(self._records)
        return [n for n in names if n in self.backoff]

    def _count_connections(self, load: LoadResult) -> None:
        frozen = {n for f in load.failed_files for n in self._files_to_names.get(self._key(f), ())}
        counts: dict[str, int] = {}
        for record in self._records.values():
            if record.name in frozen:
                status = "frozen"
            elif record.connection_id is None or record.connection_id not in self.observed:
                status = "missing"
            else:
                status = self.observed[record.connection_id].status
            counts[status] = counts.get(status, 0) + 1
        self.metrics.set_connections(counts)

    # -- syncs ---------------------------------------------------------------------------

    def _manifest(self, name: str) -> Manifest | None:
        if self.load is None:
            return None
        for m in self.load.manifests:
            if m.name == name:
                return m
        return None

    def _sync_target(self, name: str) -> Target | None:
        manifest = self._manifest(name)
        record = self.store.get(name)
        if manifest is None or record is None or record.connection_id is None:
            return None
        observed = self.observed.get(record.connection_id)
        active = manifest.enabled if observed is None else observed.status == "active"
        return Target(
            connection_id=record.connection_id,
            driver=manifest.driver,
            active=active,
            suspended=manifest.suspend,
        )

    def _sync_outcome(self, outcome: SyncOutcome) -> None:
        self.metrics.sync_jobs.labels(outcome=outcome.outcome).inc()
        if outcome.outcome in ("completed", "failed") and outcome.job_id:
            self.metrics.sync_duration.observe(outcome.seconds)
        if outcome.outcome == "stuck":
            return
        with contextlib.suppress(ChanopsError):
            self.store.update(
                outcome.name,
                lambda r: replace(
                    r,
                    last_sync_job=outcome.job_id or None,
                    last_sync_outcome=outcome.outcome,
                    last_sync_at=utc_iso(_now_utc()),
                ),
            )

    # -- endpoints -----------------------------------------------------------------------

    def readiness(self) -> tuple[bool, list[str]]:
        reasons: list[str] = []
        if not self.first_done:
            reasons.append("first reconcile not finished")
        if self.crashed is not None:
            reasons.append(f"crashed ({self.crashed}); stopping")
        if not self.platform_ok:
            reasons.append("platform not reachable in the last resync")
        if self.source is not None:
            reasons += readiness_reasons(self.source, self.git_revision or self._next_revision)
        return not reasons, reasons

    def status(self) -> dict[str, Any]:
        records = self.store.records()
        manifests = {m.name: m for m in self.load.manifests} if self.load else {}
        frozen_files = {self._key(f) for f in self.load.failed_files} if self.load else set()
        now = time.monotonic()
        connections = []
        for name in sorted(set(manifests) | set(records)):
            m = manifests.get(name)
            r = records.get(name)
            cid = r.connection_id if r is not None else (m.connection_id if m else None)
            obs = self.observed.get(cid) if cid is not None else None
            retry = self.backoff.get(name)
            file = m.source.file if m else (r.source_file if r else None)
            connections.append(
                {
                    "name": name,
                    "file": file,
                    "frozen": bool(file and self._key(file) in frozen_files),
                    "desired": _desired(m),
                    "observed": _observed(obs),
                    "conditions": list(r.conditions) if r else [],
                    "lastSync": (
                        {
                            "job": r.last_sync_job,
                            "outcome": r.last_sync_outcome,
                            "at": r.last_sync_at,
                        }
                        if r and r.last_sync_outcome
                        else None
                    ),
                    "nextSync": utc_iso(self.scheduler.next_run(name)),
                    "syncing": self.scheduler.syncing(name),
                    "backoff": (
                        {
                            "failures": retry.failures,
                            "retryInSeconds": max(0.0, round(retry.due - now, 1))
                            if retry.due != float("inf")
                            else 0.0,
                            "delaySeconds": retry.delay,
                            "untilManifestChanges": retry.terminal,
                            "error": retry.error,
                        }
                        if retry
                        else None
                    ),
                    "events": list(self.events.get(name, ())),
                }
            )
        ready, reasons = self.readiness()
        errors = [
            {
                "file": d.file,
                "line": d.line,
                "column": d.column,
                "field": d.path,
                "error": d.message,
            }
            for d in (self.load.errors if self.load else ())
        ]
        return {
            "ready": ready,
            "reasons": reasons,
            "revision": self.logging.revision.value,
            "manifests": self.root,
            "git": git_status(self.source, self.git_revision) if self.source else None,
            "lastReconcile": self.last_reconcile,
            "platformRetry": (
                {"failures": pr.failures, "delaySeconds": pr.delay, "error": pr.error}
                if (pr := self.backoff.get(FULL))
                else None
            ),
            "manifestErrors": self.logging.redactor.scrub(errors),
            "connections": connections,
            "events": list(self.recent),
        }

    def _remember_event(self, event: MutableMapping[str, Any]) -> None:
        name = event.get("connection")
        compact = {k: event[k] for k in _EVENT_FIELDS if k in event}
        if isinstance(name, str):
            self.events.setdefault(name, deque(maxlen=EVENTS_PER_CONNECTION)).append(compact)
            compact = {"connection": name, **compact}
        self.recent.append(compact)


class LivenessGate:
    """ASGI middleware: /healthz answers 503 once the daemon has crashed (`_supervise`).

    Between the crash and the exit the process still serves: a liveness probe must not
    read that as alive. The error itself stays in the log (it may quote anything).
    """

    def __init__(self, app: ASGIApp, *, crashed: Callable[[], str | None]) -> None:
        self.app = app
        self.crashed = crashed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz" and self.crashed():
            response = JSONResponse(
                {"status": "crashed", "reason": "see the daemon.crashed event; exiting"},
                status_code=503,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _refusal_codes() -> tuple[str, ...]:
    """Error codes of platform refusals: 4xx other than 409/412/429 (DESIGN.md section 5)."""
    found: set[str] = set()
    stack: list[type[APIError]] = [APIError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if 400 <= cls.status < 500 and cls.status not in (409, 412, 429):
            found.add(cls.code)
    return tuple(sorted(found))


REFUSAL_CODES = _refusal_codes()


def is_refusal(error: str) -> bool:
    """Whether an outcome's error text (`code: message`, from APIError) is a refusal.

    The engine reports outcomes as text; the executor formats APIError as its code
    first, so the code prefix is the stable part to classify by.
    """
    return error.startswith(tuple(f"{code}:" for code in REFUSAL_CODES))


def _empty(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def _diag_key(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.file, d.line, d.column, d.message)


def _now_utc() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _desired(m: Manifest | None) -> dict[str, Any] | None:
    if m is None:
        return None  # removed from git: the engine applies its deletionPolicy
    return {
        "driver": m.driver,
        "displayName": m.display_name,
        "enabled": m.enabled,
        "suspend": m.suspend,
        "deletionPolicy": m.deletion_policy,
        "connectionId": m.connection_id,
        "labels": dict(m.labels),
        "sync": (
            {
                "interval_s": m.sync.interval_seconds,
                "cron": m.sync.cron,
                "jitter_s": m.sync.jitter_seconds,
                "timeout_s": m.sync.timeout_seconds,
            }
            if m.sync
            else None
        ),
    }


def _observed(c: Connection | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "id": c.id,
        "name": c.name,
        "driver": c.driver,
        "status": c.status,
        "version": c.version,
        "hasOrderErrors": c.has_order_errors,
        "authorization": c.authorization,
        "updatedAt": c.updated_at,
    }
