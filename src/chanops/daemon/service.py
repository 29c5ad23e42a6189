"""The daemon behind `chanops run`: the process, its signals, and what it supervises.

Read `Daemon.run` top to bottom: start (endpoints, watcher or git follower, scheduler,
the reconcile loop), wait for a stop signal, stop. The reconcile loop is three kinds of
tasks around one work queue of connection names (daemon/_queue.py):

    watcher batch / SIGHUP / git commit --> Intake ------ edited names (urgent) --+
                                            `-- full request --> Resyncer --------+--> WorkQueue
    --resync timer, platform retry -------------------------^    (every name)        |
                                                  workers (--workers) <- batches <----+
                                                  BatchRunner: prepare(only=batch) + execute
                                                  -> Outcomes (backoff, events, metrics)

Events only say *which* names to look at; every batch plans from desired + observed +
memory (docs/design.md), and a name is in one batch at a time.

Supervision: the reconcile loop (intake, resyncer, workers) and the watcher (or git
follower) end only when the daemon stops. If one dies of an exception nothing handled,
the daemon logs `daemon.crashed` (critical), /healthz and /readyz answer 503, and `run`
stops and returns EXIT_CRASHED (70): a supervisor restarts a process that would
otherwise serve /healthz 200 and never reconcile again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from chanops.daemon._backoff import Backoff
from chanops.daemon._cache import ObservedCache, RecordCache
from chanops.daemon._gitsource import GitSourceCollector
from chanops.daemon._history import History
from chanops.daemon._index import FileIndex
from chanops.daemon._intake import Intake, Loads
from chanops.daemon._outcomes import Outcomes, Tally
from chanops.daemon._parts import Parts, Sources
from chanops.daemon._queue import Batch, Lane, WorkQueue
from chanops.daemon._reconcile import BatchRunner, new_id
from chanops.daemon._replica import Terms, latest, stop_follower
from chanops.daemon._resync import Resyncer
from chanops.daemon._scheduler import SyncOutcome, SyncScheduler, Target, utc_iso
from chanops.daemon._status import EventLog, LivenessGate, Status
from chanops.daemon._watcher import ManifestWatcher
from chanops.daemon.auth import AuthGate, auth_readiness, watch_auth, with_auth
from chanops.daemon.http import HttpServer, bind, create_app
from chanops.engine.reconciler import Reconciler, ReconcileResult
from chanops.errors import ChanopsError, StoreError
from chanops.events import Event
from chanops.manifests.schedule import MIN_SYNC_INTERVAL_SECONDS
from chanops.notify.dispatch import start_notifier
from chanops.observability.logging import LogConfig, describe_error
from chanops.observability.metrics import Metrics
from chanops.platform.api import PlatformAPI
from chanops.state.protocol import Store

if TYPE_CHECKING:
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp

    from chanops.daemon.leader import Leadership
    from chanops.daemon.ui import UIOptions
    from chanops.notify.config import LoadedNotifications
    from chanops.sources.git import GitSource


EXIT_CRASHED = 70  # EX_SOFTWARE (sysexits.h): the reconcile loop died of a bug or fault
# Names per resync batch: one plan each. Small enough that an edit arriving while a batch
# plans waits for little of it (docs/daemon.md, "Edits go first").
RESYNC_BATCH = 250


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    manifests: Path
    secrets_dirs: tuple[Path, ...] = ()
    resync_seconds: float = 300.0
    listen: tuple[str, int] | None = ("127.0.0.1", 9464)
    shutdown_timeout: float = 30.0
    watch_step_ms: int = 30
    force_polling: bool | None = None
    workers: int = 4  # batches reconciled at once (one is kept for edits and retries)
    resync_batch: int = RESYNC_BATCH
    min_sync_interval: float = MIN_SYNC_INTERVAL_SECONDS  # the loader's floor for spec.sync
    # Called once the startup resync is done: the composition root's hook for process-wide
    # policy (`chanops run` freezes the heap built by then out of the cyclic GC).
    after_startup: Callable[[], None] | None = None
    # The `notifications:` section of chanops.yaml, read at start (docs/notifications.md).
    notifications: LoadedNotifications | None = None
    # A standby (PostgreSQL store, docs/ha.md) reloads the manifests and re-reads the
    # store's records this often, for /status.
    standby_refresh: float = 5.0
    # This replica's leadership when the store is shared (PostgreSQL); None: SQLite.
    leader: Leadership | None = None
    auth: AuthGate | None = None  # an OAuth client: readiness, /status, resuming (daemon/auth.py)
    # The status page under /ui/ and who may read it (docs/ui.md); None: the defaults.
    ui: UIOptions | None = None


class Daemon:
    def __init__(
        self,
        *,
        client: PlatformAPI,
        store: Store,
        reconciler: Reconciler,
        options: DaemonOptions,
        metrics: Metrics,
        logging: LogConfig,
        source: GitSource | None = None,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        # The one sink of the process, built at the composition root and handed to the
        # reconciler (and the client): the daemon emits to the same one. Logging is one
        # of its consumers; /status and metrics subscribe below.
        self.sink = reconciler.events
        self.client = client
        self.store = store
        self.reconciler = reconciler
        self.options = options
        self.metrics = metrics
        self.logging = logging
        self.source = source
        self.routes = list(routes)
        self.crashed: str | None = None  # what killed a supervised task (`_supervise`)
        self._stop = asyncio.Event()
        self._stop_signal: str | None = None
        self._http: HttpServer | None = None
        # A replica of a shared store (docs/ha.md): it reconciles only while it leads.
        self.leader = options.leader
        self.events = EventLog()  # kept across the terms of a replica
        # The events' history in the store (daemon/_history.py): the writer appends it.
        self.history = History(store, self.events, in_thread=self.leader is not None)
        self._compose()
        self.sink.subscribe(self._remember)
        self.sink.subscribe(metrics.on_event)
        self.notifier = start_notifier(options.notifications, self)  # docs/notifications.md
        if source is not None:
            metrics.registry.register(GitSourceCollector(source))
            # Fetch failures change readiness between reconciles: read it at scrape time.
            metrics.ready.set_function(lambda: 1.0 if self.status.ready() else 0.0)

    def _compose(self) -> None:
        """Build the parts; each concern gets the shared `Parts` and what is its own."""
        opts = self.options
        # Ends the reconcile loop: set on a stop, and when a replica's term ends.
        self._term_end = asyncio.Event()
        parts = Parts(
            client=self.client,
            store=self.store,
            reconciler=self.reconciler,
            metrics=self.metrics,
            logging=self.logging,
            sources=Sources(root=str(opts.manifests), source=self.source),
            index=FileIndex(str(opts.manifests)),
            records=RecordCache(self.store),
            observed=ObservedCache(),
            queue=WorkQueue(backoff=Backoff(), resync_batch=opts.resync_batch),
            scheduler=SyncScheduler(
                self.client,
                lookup=self._sync_target,
                on_outcome=self._sync_outcome,
                events=self.sink,
            ),
            events=self.sink,
        )
        self.parts = parts
        self.queue, self.index, self.observed = parts.queue, parts.index, parts.observed
        self.sources, self.scheduler = parts.sources, parts.scheduler
        auth = opts.auth
        self.outcomes = Outcomes(
            parts,
            ready=lambda: self.status.ready(),
            awaiting_auth=lambda: auth is not None and auth.awaiting,
        )
        self.loads = Loads(
            parts,
            secrets_dirs=opts.secrets_dirs,
            min_sync_interval=opts.min_sync_interval,
            on_root_changed=lambda: self.intake.request_full("root changed"),
        )
        self.intake = Intake(loads=self.loads, queue=self.queue, outcomes=self.outcomes)
        self.runner = BatchRunner(
            parts,
            self.outcomes,
            load=lambda: self.loads.current,
            resync=lambda: self.resyncer.tally,
            on_unreachable=lambda error: self.resyncer.unreachable(error),
            on_success=self._succeeded,
        )
        self.resyncer = Resyncer(
            parts,
            self.outcomes,
            intake=self.intake,
            runner=self.runner,
            interval=opts.resync_seconds,
            stopping=self._term_end,
            after_startup=opts.after_startup,
        )
        self.status = Status(
            parts,
            self.outcomes,
            events=self.events,
            load=lambda: self.loads.current,
            crashed=lambda: self.crashed,
            auth=opts.auth,
        )

    # -- the process ---------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0 on a clean stop, EXIT_CRASHED after a crash."""
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        self._serve_http()
        self._announce()
        self._auth = watch_auth(self.options.auth, self._stop, self.intake.request_full)
        follower: asyncio.Task[None] | None = None
        flushing: asyncio.Task[None] | None = None
        if self.leader is not None:
            reconciling = asyncio.create_task(self._replica(), name="replica")
        else:
            await self.history.load()
            flushing = asyncio.create_task(self.history.run(self._stop), name="history")
            follower = await self._start_following()
            self.scheduler.start()
            reconciling = asyncio.create_task(self._reconcile_loop(), name="reconcile loop")
        reconciling.add_done_callback(self._supervise)
        await self._stop.wait()
        started = time.monotonic()
        self.sink.emit("daemon.stopping", "info", signal=self._stop_signal)
        # Let the batches in flight (and the resync they belong to) finish, up to the timeout.
        done, _ = await asyncio.wait({reconciling}, timeout=self.options.shutdown_timeout)
        if not done:
            self.sink.emit(
                "daemon.shutdown_timeout",
                "warning",
                timeout_s=self.options.shutdown_timeout,
                error="a reconcile was still running; cancelled",
            )
            reconciling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reconciling
        remaining = self.options.shutdown_timeout - (time.monotonic() - started)
        if follower is not None:  # a replica's term stopped its own (`_lead`)
            await self.scheduler.shutdown(grace=min(remaining, 5.0))
            await stop_follower(follower, self.source is not None)
        if self._http is not None:
            await self._http.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        self.sink.emit(
            "daemon.stopped", "info", duration_ms=round((time.monotonic() - started) * 1000)
        )
        if flushing is not None:  # a replica's term flushed its own (`_lead`)
            await flushing
            await self.history.flush()
        if self.notifier is not None:  # deliver what is queued (a crash's message)
            await asyncio.to_thread(self.notifier.close, 5.0)
        return EXIT_CRASHED if self.crashed is not None else 0

    def _serve_http(self) -> None:
        if self.options.listen is None:
            return
        sock = bind(*self.options.listen)
        app = create_app(
            metrics=self.metrics,
            ready=self._readiness,
            status=self._status_document,
            routes=self.routes,
            ui=self._ui(),
        )
        # create_app's /healthz only says "the process runs"; after a crash it still
        # runs for a few seconds while it stops, and must not look alive meanwhile.
        app.add_middleware(LivenessGate, crashed=lambda: self.crashed)
        self._http = HttpServer(app, sock)
        self._http.start()
        host, port = self._http.address
        self.sink.emit("http.listening", "info", address=f"{host}:{port}", port=port)

    def _ui(self) -> ASGIApp | None:
        from chanops.daemon.ui import UIOptions, build_ui

        return build_ui(
            # Late-bound: a replica composes its parts afresh for each term.
            status=latest(lambda: self.status),
            parts=latest(lambda: self.parts),
            load=lambda: self.loads.current,
            options=self.options.ui or UIOptions(),
            host=self.options.listen[0] if self.options.listen else "127.0.0.1",
            resync_seconds=self.options.resync_seconds,
        )

    def _announce(self) -> None:
        git: dict[str, Any] = {}
        if self.source is not None:
            git = {"git": self.source.display_url, "ref": self.source.ref}
        self.sink.emit(
            "daemon.started",
            "info",
            manifests=str(self.options.manifests),
            resync_s=self.options.resync_seconds,
            workers=self.options.workers,
            pid=os.getpid(),
            **git,
        )
        if self.source is None and not self.options.manifests.exists():
            self.sink.emit(
                "manifests.missing",
                "warning",
                manifests=str(self.options.manifests),
                message="the manifests root does not exist yet: nothing will be created or "
                "deleted until it does; create it and add *.yaml manifests (chanops export "
                "writes them for existing connections). It is picked up when it appears.",
            )

    async def _start_following(self) -> asyncio.Task[None]:
        """The watcher (or, with --git, the follower of new commits), supervised."""
        if self.source is not None:
            task = asyncio.create_task(self.intake.follow(), name="git follower")
            task.add_done_callback(self._supervise)
            return task
        watcher = ManifestWatcher(
            self.options.manifests,
            self.intake.on_batch,
            step_ms=self.options.watch_step_ms,
            force_polling=self.options.force_polling,
        )
        task = asyncio.create_task(watcher.run(self._term_end), name="watcher")
        task.add_done_callback(self._supervise)
        # The first load waits for the watch: a change (or a root swap) can never fall
        # between that load and the watch being armed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.armed.wait(), timeout=10)
        return task

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
        if exc is None and (self._stop.is_set() or self._term_end.is_set()):
            return  # a normal end: the daemon is stopping, or a replica's term ended
        if self.crashed is not None:
            return  # the first crash is the one that matters
        error = describe_error(exc) if exc is not None else "ended without a stop signal"
        self.crashed = f"{task.get_name()}: {error}"
        # One line at info (ErrorRenderer turns exc_info into `error`); with
        # --log-level debug the traceback is kept.
        self.sink.emit(
            "daemon.crashed", "critical", task=task.get_name(), error=error, exc_info=exc
        )
        self.metrics.ready.set(0)
        self._request_stop(None)

    # -- the reconcile loop -----------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        """Intake, resyncer and workers; the first of them to fail fails the loop.

        Stopping: the resyncer ends once the resync in flight has no names left, then
        the queue is finished and the workers end after their batch.
        """
        resyncer = asyncio.create_task(self.resyncer.run(), name="resync")
        workers = [
            asyncio.create_task(self._work(), name=f"worker {i}")
            for i in range(max(1, self.options.workers))
        ]
        tasks = [resyncer, *workers]
        if self.source is None:
            tasks.append(asyncio.create_task(self.intake.run(), name="intake"))
        try:
            await _until(tasks, lambda: resyncer.done())
            self.queue.finish()
            await _until(tasks, lambda: all(w.done() for w in workers))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self) -> None:
        while (batch := await self.queue.get()) is not None:
            await self.runner.run(batch, self.resyncer.stamp())

    def _succeeded(self, batch: Batch, result: ReconcileResult, tally: Tally) -> None:
        """Book a batch that ran; a partial reconcile (an urgent batch) ends with it."""
        self.outcomes.batch_done(batch, result, tally)
        if batch.lane is Lane.URGENT:
            self.outcomes.completed(tally)

    # -- one-shot --------------------------------------------------------------------------

    async def once(self) -> int:
        """One full reconcile (one plan): 0 when everything chanops can do is done, else 1.

        With a git source: one fetch first. A failed fetch is exit 1 (like `apply
        --git`): a one-shot run against a stale checkout would report success falsely.
        """
        if self.source is not None:
            from chanops.errors import SourceError
            from chanops.sources.options import checkout_once

            try:
                revision = await checkout_once(self.source)
            except SourceError as exc:
                self.sink.emit("daemon.failed", "error", error=str(exc))
                return 1
            self.sources.revision = revision
            self.loads.switch_root(revision.path)
            self.logging.revision.value = revision.sha
            self.logging.revision.subject = revision.subject
        try:
            if self.leader is not None:
                return await Terms(self, self.leader).once()
            return await self._once()
        except Exception as exc:  # what `_supervise` catches for `run`: not a traceback
            self.sink.emit(
                "daemon.crashed",
                "critical",
                task="reconcile",
                error=describe_error(exc),
                exc_info=exc,
            )
            return EXIT_CRASHED

    async def _once(self) -> int:
        tally = Tally("full", "once", new_id())
        with structlog.contextvars.bound_contextvars(
            reconcile_id=tally.reconcile_id, **self.resyncer.stamp()
        ):
            load = await self.loads.full()
            self.outcomes.started(tally, len(load.manifests))
            try:
                prepared = await self.reconciler.prepare(load)
                self.runner.register_secrets(load, prepared, {m.name for m in load.manifests})
                result = await self.reconciler.execute(prepared)
            except ChanopsError as exc:
                self.outcomes.failed(tally, describe_error(exc))
                return 1
            tally.add(result)
            self.outcomes.completed(tally)
            return 0 if tally.converged else 1

    # -- signals ---------------------------------------------------------------------------

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGTERM, self._request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, lambda: self.intake.on_hup())

    def _request_stop(self, name: str | None) -> None:
        if self._stop.is_set():
            return
        self._stop_signal = name
        self.queue.close()  # no new edit or retry; the resync in flight may finish
        self._term_end.set()
        self._stop.set()

    # -- replicas of a shared store (docs/ha.md) ---------------------------------------------

    async def _replica(self) -> None:
        assert self.leader is not None
        await Terms(self, self.leader).run()

    def _readiness(self) -> tuple[bool, list[str]]:
        if self.leader is not None and self.leader.term is None:
            return True, []  # a standby serves /status and takes webhooks from the start
        return auth_readiness(self.options.auth, self.status.readiness())

    def _status_document(self) -> dict[str, Any]:
        try:
            document = with_auth(self.options.auth, self.status.document())
        except StoreError as exc:
            if self.leader is None:
                raise
            document = {"error": str(exc)}  # the shared store is unreachable for now
        if self.leader is not None:
            document["role"] = self.leader.role
            document["leader"] = self.leader.describe()
        return document

    # -- syncs -----------------------------------------------------------------------------

    def _sync_target(self, name: str) -> Target | None:
        manifest = self.index.manifest(name)
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

    def _remember(self, event: Event) -> None:
        """Keep an event for /status, redacted like a log line and stamped like one."""
        record = {
            "revision": self.logging.revision.value,
            **event.fields,
            "event": event.name,
            "level": event.level,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        self.events(self.logging.redactor.scrub(record))

    def _sync_outcome(self, outcome: SyncOutcome) -> None:
        self.metrics.sync_jobs.labels(outcome=outcome.outcome).inc()
        if outcome.outcome in ("completed", "failed") and outcome.job_id:
            self.metrics.sync_duration.observe(outcome.seconds)
        if outcome.outcome == "stuck":
            return
        at = utc_iso(datetime.now(UTC))
        with contextlib.suppress(ChanopsError):
            self.store.update(
                outcome.name,
                lambda r: replace(
                    r,
                    last_sync_job=outcome.job_id or None,
                    last_sync_outcome=outcome.outcome,
                    last_sync_at=at,
                ),
            )


async def _until(tasks: Sequence[asyncio.Task[None]], done: Callable[[], bool]) -> None:
    """Wait until `done()` holds; the first task to fail raises its exception here."""
    while not done():
        pending = [t for t in tasks if not t.done()]
        if not pending:
            return
        finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
