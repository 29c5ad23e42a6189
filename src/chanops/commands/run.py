"""`chanops run`: the daemon (docs/daemon.md, docs/design.md).

With no flags it reconciles `connections.d` against the embedded local platform
(`local:.chanops/platform.db`), so a new user sees connections appear and the events
stream. Startup order: configure logging, take the state lock (a second daemon on the
same state exits 1 naming the holder), open the platform client, then the daemon
(docs/daemon.md): watch, schedules, the startup resync. This is the composition root:
process-wide policy (the GC, below) is decided here, not in the daemon's modules.

With `--git URL` the manifests come from a git repository instead (docs/git.md): the
daemon follows the source's checkouts (one full resync per new commit), serves
`POST /hooks/git` when `--webhook-secret-file` is given, and keeps running on the last
good checkout while fetches fail. `--once` fetches once (a failed fetch is exit 1).
"""

from __future__ import annotations

import asyncio
import gc
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from chanops.commands.common import common_options
from chanops.commands.git_options import git_options, pop_git_options
from chanops.commands.notify import notifications_from
from chanops.commands.replica import LeaseFlags, fenced, lease_options, pop_lease_flags

if TYPE_CHECKING:
    from chanops.daemon.leader import Leadership
    from chanops.daemon.service import Daemon
    from chanops.daemon.ui import UIOptions
    from chanops.events import EventSink
    from chanops.notify.config import LoadedNotifications
    from chanops.observability.metrics import Metrics
    from chanops.platform.api import PlatformAPI
    from chanops.platform.auth import OAuthSession
    from chanops.sources.git import GitSource
    from chanops.sources.options import GitOptions
    from chanops.state.protocol import Store

LOG_LEVELS = ["debug", "info", "warning", "error"]
SWITCH_INTERVAL_S = 0.0005  # sys.setswitchinterval for the daemon (see `command`)


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from chanops.manifests.durations import parse_flag_duration

    try:
        seconds = parse_flag_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if param.name in ("resync", "min_sync_interval", "auth_recheck") and seconds <= 0:
        raise click.BadParameter("must be longer than 0s, e.g. 5m")
    return seconds


def _header_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", value):
        raise click.BadParameter(f"{value!r} is not a header name, e.g. X-Forwarded-Email")
    return value


@click.command(name="run")
@common_options
@git_options(webhook=True)
@lease_options
@click.option(
    "--listen",
    default="127.0.0.1:9464",
    show_default=True,
    metavar="HOST:PORT",
    help="Address of /healthz, /readyz, /metrics, /status and the /ui/ status page "
    "(loopback unless told otherwise).",
)
@click.option(
    "--resync",
    default="5m",
    show_default=True,
    metavar="DURATION",
    callback=_duration,
    help="Full resync interval: heals drift (UI-side changes).",
)
@click.option("--once", is_flag=True, help="One full reconcile, then exit (0 done, 1 failed).")
@click.option(
    "--log-format",
    type=click.Choice(["json", "console"]),
    default=None,
    help="Log format on stdout [default: console on a TTY, else json].",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
@click.option(
    "--shutdown-timeout",
    default="30s",
    show_default=True,
    metavar="DURATION",
    callback=_duration,
    help="On SIGTERM/SIGINT, how long in-flight calls may take to finish.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Platform calls in flight at once.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Batches of connections reconciled at once (one is kept for edits and retries).",
)
@click.option(
    "--min-sync-interval",
    default="1m",
    show_default=True,
    metavar="DURATION",
    callback=_duration,
    help="Shortest spec.sync.interval a manifest may ask for.",
)
@click.option(
    "--max-delete",
    type=click.IntRange(min=0),
    default=None,
    help="Most deletions one reconcile may make [default: 25% of managed, at least 1].",
)
@click.option(
    "--allow-recreate",
    is_flag=True,
    help="Recreate a connection when an immutable field (driver) changes.",
)
@click.option(
    "--auth-recheck",
    default="5m",
    show_default=True,
    metavar="DURATION",
    callback=_duration,
    help="With --client-id, after the platform refused the refresh token: how often to "
    "try it again (a login is noticed within seconds either way).",
)
@click.option(
    "--ui-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="The status page (/ui/) asks for HTTP basic authentication with this password.",
)
@click.option(
    "--ui-trusted-header",
    default=None,
    metavar="NAME",
    callback=_header_name,
    help="Let in status-page requests carrying this header (set by an authenticating proxy).",
)
@click.option("--no-ui", is_flag=True, help="Serve no status page under /ui/.")
def command(
    *,
    listen: str,
    resync: float,
    once: bool,
    log_format: str | None,
    log_level: str,
    shutdown_timeout: float,
    concurrency: int,
    workers: int,
    min_sync_interval: float,
    max_delete: int | None,
    allow_recreate: bool,
    auth_recheck: float,
    ui_password_file: Path | None,
    ui_trusted_header: str | None,
    no_ui: bool,
    **common: Any,
) -> None:
    """Watch the manifests and keep the platform equal to them (the daemon)."""
    from chanops.commands.session import cli_settings
    from chanops.observability.logging import configure_logging

    git = pop_git_options(common)  # before cli_settings: it takes no git keys
    lease = pop_lease_flags(common)
    settings = cli_settings(**common)  # a bad setting: one line, exit 1 (docs/daemon.md)
    notifications = notifications_from(common.get("config_file"), settings)
    logcfg = configure_logging(fmt=log_format, level=log_level)
    flags = RunFlags(
        listen=None if once else listen,
        resync=resync,
        once=once,
        shutdown_timeout=shutdown_timeout,
        concurrency=concurrency,
        workers=workers,
        min_sync_interval=min_sync_interval,
        max_delete=max_delete,
        allow_recreate=allow_recreate,
        auth_recheck=auth_recheck,
        ui=UIFlags(not no_ui, ui_password_file, ui_trusted_header),
        lease=lease,
        notifications=notifications,
    )
    # The event loop hands the interpreter to the planning threads (a resync batch, an
    # edit's plan) and takes it back after every wait for I/O; at Python's default 5 ms
    # switch interval each take-back can cost 5 ms beside a CPU-bound thread, and an
    # edit makes dozens. Process-wide policy, so decided here, at the composition root.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    sys.exit(asyncio.run(_main(settings, git, logcfg, flags)))


@dataclass(frozen=True, slots=True)
class UIFlags:
    """The status page's flags (docs/ui.md); the password file is read at start."""

    enabled: bool = True
    password_file: Path | None = None
    trusted_header: str | None = None


def _ui_options(flags: UIFlags) -> UIOptions:
    """The status page's options; a password file that cannot be used stops startup."""
    from chanops.daemon.ui import UIOptions
    from chanops.errors import ConfigError

    password = None
    if flags.password_file is not None:
        try:
            password = flags.password_file.read_bytes().strip(b"\r\n")
        except OSError as exc:
            raise ConfigError(
                f"cannot read --ui-password-file {flags.password_file}: {exc.strerror}"
            ) from None
        if not password:
            raise ConfigError(f"--ui-password-file {flags.password_file} is empty")
    return UIOptions(flags.enabled, password, flags.trusted_header)


@dataclass(frozen=True, slots=True)
class RunFlags:
    listen: str | None  # None: no endpoints (--once)
    resync: float
    once: bool
    shutdown_timeout: float
    concurrency: int
    workers: int
    min_sync_interval: float
    max_delete: int | None
    allow_recreate: bool
    auth_recheck: float = 300.0  # --auth-recheck (OAuth, docs/core1.md)
    lease: LeaseFlags | None = None  # replicas on a PostgreSQL store (docs/ha.md)
    ui: UIFlags = UIFlags()
    notifications: LoadedNotifications | None = None


async def _main(settings: Any, git: GitOptions | None, logcfg: Any, flags: RunFlags) -> int:
    """Open the state store and the platform, build the daemon, run it: the exit code."""
    from chanops.commands.platform import oauth_from, open_platform
    from chanops.errors import ChanopsError
    from chanops.events import EventSink
    from chanops.observability.logging import describe_error
    from chanops.observability.metrics import Metrics

    log = _log()
    metrics = Metrics()
    # The process's one event sink: the client, the reconciler and the daemon emit to it;
    # logging consumes it from the start, metrics and /status subscribe in the daemon.
    events = EventSink.logging()
    try:
        store = _open_store(settings)
        try:
            leader = _leader(settings, flags, store=store, events=events, metrics=metrics)
            edge = _edge(flags.listen, git, settings, leader)
        except BaseException:
            store.close()
            raise
    except ChanopsError as exc:
        log.error("daemon.failed", error=str(exc), state=_state_shown(settings))
        return 1
    except OSError as exc:
        log.error("daemon.failed", error=describe_error(exc), state=_state_shown(settings))
        return 1
    try:
        client = open_platform(
            settings.platform.url,
            settings.platform.token,
            concurrency=max(flags.concurrency, 8),
            on_request=metrics.on_request,
            events=events,
            oauth=oauth_from(settings, store, recheck_s=flags.auth_recheck),
            auth_events=events,
            profile=settings.platform.profile,
        )
    except ChanopsError as exc:
        store.close()
        log.error("daemon.failed", error=str(exc))
        return 1
    try:
        async with client:
            daemon = _daemon(
                settings,
                flags,
                edge,
                client=fenced(client, edge.leader),
                store=store,
                metrics=metrics,
                logcfg=logcfg,
                events=events,
                auth=client.auth,
            )
            return await (daemon.once() if flags.once else daemon.run())
    except ChanopsError as exc:
        log.error("daemon.failed", error=str(exc))
        return 1
    finally:
        store.close()


def _log() -> Any:
    import structlog

    return structlog.get_logger("chanops.daemon")


@dataclass(frozen=True, slots=True)
class Edge:
    """What the daemon shows the world: its address, the git source and its webhook."""

    address: tuple[str, int] | None
    source: GitSource | None
    routes: list[Any]
    leader: Leadership | None = None  # a replica's role, on a PostgreSQL store


def _edge(
    listen: str | None, git: GitOptions | None, settings: Any, leader: Leadership | None = None
) -> Edge:
    """The --listen address, the git source and the routes it adds (the push webhook)."""
    from chanops.daemon.http import parse_listen

    address = parse_listen(listen) if listen is not None else None
    source = None
    routes: list[Any] = []
    if git is not None:
        from chanops.sources.webhook import git_webhook_route

        source = git.source(settings.state)
        if git.webhook_secret_file is not None and address is not None:
            # Reads the secret now: a missing or empty file stops startup here.
            # A standby records a push for the leader (docs/ha.md).
            trigger = source.trigger if leader is None else leader.webhook
            routes.append(git_webhook_route(trigger, git.webhook_secret_file))
    if address is not None and address[0] not in ("127.0.0.1", "::1", "localhost"):
        _log().warning(
            "http.not_loopback",
            address=listen,
            message="the endpoints are reachable from other hosts; they expose no secret",
        )
    return Edge(address, source, routes, leader)


def _open_store(settings: Any) -> Store:
    from chanops.commands.replica import open_state

    return open_state(settings)


def _state_shown(settings: Any) -> str:
    """The store for a message: a path, or the DSN without its password."""
    from chanops.commands.replica import state_shown

    return state_shown(settings)


def _leader(
    settings: Any, flags: RunFlags, *, store: Store, events: EventSink, metrics: Metrics
) -> Leadership | None:
    from chanops.commands.replica import leadership

    lease = flags.lease or LeaseFlags()
    return leadership(settings, lease, store=store, events=events, metrics=metrics)


def _daemon(
    settings: Any,
    flags: RunFlags,
    edge: Edge,
    *,
    client: PlatformAPI,
    store: Store,
    metrics: Metrics,
    logcfg: Any,
    events: EventSink,
    auth: OAuthSession | None = None,
) -> Daemon:
    from chanops.daemon.auth import AuthGate
    from chanops.daemon.service import Daemon, DaemonOptions
    from chanops.engine.reconciler import EngineOptions, Reconciler

    engine = EngineOptions(
        max_delete=flags.max_delete,
        allow_recreate=flags.allow_recreate,
        concurrency=flags.concurrency,
        secrets_dirs=settings.secrets_dirs,
    )
    options = DaemonOptions(
        manifests=edge.source.stable_path if edge.source is not None else settings.manifests,
        secrets_dirs=settings.secrets_dirs,
        resync_seconds=flags.resync,
        listen=edge.address,
        shutdown_timeout=flags.shutdown_timeout,
        workers=flags.workers,
        min_sync_interval=flags.min_sync_interval,
        # The manifests, records and caches built by the startup resync live as long as
        # the process: out of the cyclic GC's reach, a full collection takes about 15 ms
        # instead of 100 ms at 10,000 connections. Process-wide policy, so decided here,
        # at the composition root.
        after_startup=gc.freeze,
        notifications=flags.notifications,
        leader=edge.leader,
        ui=_ui_options(flags.ui) if flags.listen is not None else None,  # --once: no page
        auth=AuthGate(auth) if auth is not None else None,
    )
    if edge.source is not None:
        edge.source.events = events  # fetch failures reach notifications and /status
    return Daemon(
        client=client,
        store=store,
        reconciler=Reconciler(client=client, store=store, options=engine, events=events),
        options=options,
        metrics=metrics,
        logging=logcfg,
        source=edge.source,
        routes=edge.routes,
    )
