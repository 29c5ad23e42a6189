"""`chanops run`: the daemon (DESIGN.md section 5, 7).

With no flags it reconciles `connections.d` against the embedded local platform
(`local:.chanops/platform.db`), so a new user sees connections appear and the events
stream. Startup order: configure logging, take the state lock (a second daemon on the
same state exits 1 naming the holder), open the platform client, then the daemon's
first full reconcile, schedules, watch.

With `--git URL` the manifests come from a git repository instead (docs/git.md): the
daemon follows the source's checkouts (one full reconcile per new commit), serves
`POST /hooks/git` when `--webhook-secret-file` is given, and keeps running on the last
good checkout while fetches fail. `--once` fetches once (a failed fetch is exit 1).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

import click

from chanops.commands.common import common_options, settings_from
from chanops.sources.options import git_options, pop_git_options

if TYPE_CHECKING:
    from chanops.sources.options import GitOptions

LOG_LEVELS = ["debug", "info", "warning", "error"]


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from chanops.manifests.durations import parse_duration

    text = value.strip()
    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if param.name == "resync" and seconds <= 0:
        raise click.BadParameter("must be longer than 0s, e.g. 5m")
    return seconds


@click.command(name="run")
@common_options
@git_options(webhook=True)
@click.option(
    "--listen",
    default="127.0.0.1:9464",
    show_default=True,
    metavar="HOST:PORT",
    help="Address of /healthz, /readyz, /metrics and /status (loopback unless told otherwise).",
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
def command(
    listen: str,
    resync: float,
    once: bool,
    log_format: str | None,
    log_level: str,
    shutdown_timeout: float,
    concurrency: int,
    max_delete: int | None,
    allow_recreate: bool,
    **common: Any,
) -> None:
    """Watch the manifests and keep the platform equal to them (the daemon)."""
    from chanops.observability.logging import configure_logging

    git = pop_git_options(common)  # before settings_from: it takes no git keys
    settings = settings_from(**common)
    logcfg = configure_logging(fmt=log_format, level=log_level)
    code = asyncio.run(
        _main(
            settings=settings,
            git=git,
            logcfg=logcfg,
            listen=None if once else listen,
            resync=resync,
            once=once,
            shutdown_timeout=shutdown_timeout,
            concurrency=concurrency,
            max_delete=max_delete,
            allow_recreate=allow_recreate,
        )
    )
    sys.exit(code)


async def _main(
    *,
    settings: Any,
    git: GitOptions | None,
    logcfg: Any,
    listen: str | None,
    resync: float,
    once: bool,
    shutdown_timeout: float,
    concurrency: int,
    max_delete: int | None,
    allow_recreate: bool,
) -> int:
    import structlog

    from chanops.daemon.http import parse_listen
    from chanops.daemon.runner import Daemon, DaemonOptions
    from chanops.engine.reconciler import EngineOptions, Reconciler
    from chanops.errors import ChanopsError
    from chanops.observability.logging import describe_error
    from chanops.observability.metrics import Metrics
    from chanops.platform.client import open_client
    from chanops.state.store import StateStore

    log = structlog.get_logger("chanops.daemon")
    metrics = Metrics()
    source = None
    routes = []
    try:
        address = parse_listen(listen) if listen is not None else None
        if git is not None:
            from chanops.sources.webhook import git_webhook_route

            source = git.source(settings.state)
            if git.webhook_secret_file is not None and address is not None:
                # Reads the secret now: a missing or empty file stops startup here.
                routes.append(git_webhook_route(source.trigger, git.webhook_secret_file))
        if address is not None and address[0] not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "http.not_loopback",
                address=listen,
                message="the endpoints are reachable from other hosts; they expose no secret",
            )
        settings.state.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = StateStore.open(settings.state)
    except ChanopsError as exc:
        log.error("daemon.failed", error=str(exc), state=str(settings.state))
        return 1
    except OSError as exc:
        log.error("daemon.failed", error=describe_error(exc), state=str(settings.state))
        return 1
    try:
        client = open_client(
            settings.platform.url,
            settings.platform.token,
            concurrency=max(concurrency, 8),
            on_request=metrics.on_request,
        )
    except ChanopsError as exc:
        store.close()
        log.error("daemon.failed", error=str(exc))
        return 1
    options = EngineOptions(
        max_delete=max_delete,
        allow_recreate=allow_recreate,
        concurrency=concurrency,
        secrets_dirs=settings.secrets_dirs,
    )
    try:
        async with client:
            reconciler = Reconciler(client=client, store=store, options=options)
            daemon = Daemon(
                client=client,
                store=store,
                reconciler=reconciler,
                options=DaemonOptions(
                    manifests=source.stable_path if source is not None else settings.manifests,
                    secrets_dirs=settings.secrets_dirs,
                    resync_seconds=resync,
                    listen=address,
                    shutdown_timeout=shutdown_timeout,
                ),
                metrics=metrics,
                logging=logcfg,
                source=source,
                routes=routes,
            )
            if once:
                return await daemon.once()
            return await daemon.run()
    except ChanopsError as exc:
        log.error("daemon.failed", error=str(exc))
        return 1
    finally:
        store.close()
