"""`chanops emulator`: serve the bundled platform emulator under uvicorn."""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

import click
import yaml

from chanops.emulator.oauth import OAuthClient, OAuthConfig, parse_client
from chanops.emulator.rules import ALL_DRIVERS
from chanops.manifests.durations import parse_flag_duration
from chanops.rpcprofile import Profile, ProfileError, load_profile

if TYPE_CHECKING:
    import uvicorn

DEFAULT_DB = ".chanops/emulator.db"


class _DropInjectedResets(logging.Filter):
    """uvicorn logs every app exception with a traceback; an injected reset is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ != "ConnectionDropped"


def _clients(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[OAuthClient]:
    clients: list[OAuthClient] = []
    for value in values:
        try:
            client = parse_client(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        if any(c.client_id == client.client_id for c in clients):
            raise click.BadParameter(f"client id {client.client_id!r} is given twice")
        clients.append(client)
    return clients


def _profile(ctx: click.Context, param: click.Parameter, value: str | None) -> Profile | None:
    """The core1 profile with the override in FILE merged over it (None: as shipped)."""
    if value is None:
        return None
    try:
        with open(value, encoding="utf-8") as f:
            override = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
        raise click.BadParameter(f"{value}: cannot read it ({problem})") from None
    try:
        return load_profile(override, source=value)
    except ProfileError as exc:
        raise click.BadParameter(str(exc)) from None


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        seconds = parse_flag_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if param.name == "access_token_ttl" and seconds <= 0:
        raise click.BadParameter("must be positive")
    return seconds


@click.command(name="emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--db",
    default=DEFAULT_DB,
    show_default=True,
    metavar="PATH",
    help="SQLite database holding the platform's state (`:memory:` for throwaway).",
)
@click.option(
    "--token",
    envvar="CHANOPS_EMULATOR_TOKEN",
    metavar="TOKEN",
    help="Bearer token clients must send [env CHANOPS_EMULATOR_TOKEN].",
)
@click.option(
    "--time-scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Job duration factor: 1.0 = seconds-long syncs; tests use 0.01.",
)
@click.option(
    "--faults",
    metavar="SPEC",
    default=None,
    help="Fault injection, e.g. latency=50ms,jitter=20ms,error_rate=0.1,rate_limit=20/s,"
    "reset_rate=0.01,seed=7.",
)
@click.option(
    "--drivers",
    metavar="LIST",
    default=None,
    help=f"Comma-separated installed drivers [default all: {','.join(ALL_DRIVERS)}].",
)
@click.option(
    "--oauth-client",
    "oauth_clients",
    multiple=True,
    envvar="CHANOPS_EMULATOR_OAUTH_CLIENT",
    metavar="ID:SECRET",
    callback=_clients,
    help="Turn on the OAuth 2.0 server (Core1's authorize and token URLs) for this app "
    "registration; repeatable. Its access tokens are accepted beside --token "
    "[env CHANOPS_EMULATOR_OAUTH_CLIENT, space-separated].",
)
@click.option(
    "--access-token-ttl",
    default="1h",
    show_default=True,
    metavar="DURATION",
    callback=_duration,
    help="How long an OAuth access token lives (e.g. 2s, 30m).",
)
@click.option(
    "--rotate-refresh-tokens",
    is_flag=True,
    help="Each refresh returns a new refresh token and retires the one it was given.",
)
@click.option(
    "--refresh-grace",
    default="0s",
    show_default=True,
    metavar="DURATION",
    callback=_duration,
    help="How long a rotated refresh token stays valid after its successor is issued.",
)
@click.option(
    "--rpc-profile",
    metavar="FILE",
    callback=_profile,
    help="YAML merged over the shipped core1 profile (as chanops.yaml's override is): "
    "serve the RPC methods under other names.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--log-format",
    default=None,
    type=click.Choice(["json", "console"]),
    help="Log format on stderr [default: console on a TTY, else json].",
)
def command(
    *,
    host: str,
    port: int,
    db: str,
    token: str | None,
    time_scale: float,
    faults: str | None,
    drivers: str | None,
    oauth_clients: list[OAuthClient],
    access_token_ttl: float,
    rotate_refresh_tokens: bool,
    refresh_grace: float,
    rpc_profile: Profile | None,
    log_level: str,
    log_format: str | None,
) -> None:
    """Serve the bundled platform emulator (the API in schemas/platform-api.yaml).

    It also serves the Core1 RPC methods of the shipped core1 profile over the same
    connections, and with --oauth-client Core1's OAuth 2.0 authorization-code flow.
    State lives in SQLite at --db and survives restarts (OAuth tokens live in memory).
    Requests are logged to stderr.
    """
    import uvicorn

    from chanops.emulator.app import create_app
    from chanops.emulator.faults import parse_faults
    from chanops.observability.logging import configure_logging

    if not token:
        raise click.UsageError("--token (or CHANOPS_EMULATOR_TOKEN) is required")
    try:
        parse_faults(faults)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    driver_list = [d.strip() for d in drivers.split(",") if d.strip()] if drivers else None
    oauth = (
        OAuthConfig(oauth_clients, access_token_ttl, rotate_refresh_tokens, refresh_grace)
        if oauth_clients
        else None
    )
    configure_logging(fmt=log_format, level=log_level, stream=sys.stderr)
    try:
        app = create_app(
            db=db,
            token=token,
            time_scale=time_scale,
            faults=faults,
            drivers=driver_list,
            oauth=oauth,
            profile=rpc_profile,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    logging.getLogger("uvicorn.error").addFilter(_DropInjectedResets())
    log = logging.getLogger("chanops.emulator")
    log.info(
        "emulator starting on http://%s:%d (db %s, time scale %s, faults %s, oauth %s, pid %d)",
        host,
        port,
        db,
        time_scale,
        faults or "none",
        # client ids only: a secret is never logged
        ",".join(c.client_id for c in oauth_clients) or "off",
        os.getpid(),
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    stopped_by = _serve(uvicorn.Server(config))
    if stopped_by is not None:
        log.info("emulator stopped (%s)", stopped_by.name)


def _serve(server: uvicorn.Server) -> signal.Signals | None:
    """Run the uvicorn server until SIGINT or SIGTERM; the signal that stopped it.

    uvicorn shuts down gracefully on either, then raises the signal again for the
    handler that was there before it: by default a KeyboardInterrupt (click's
    "Aborted!", exit 1) or death by SIGTERM. With these handlers in place a stop is a
    clean exit 0, as `chanops run`'s is.
    """
    caught: list[signal.Signals] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        caught.append(signal.Signals(signum))

    stops = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.signal(sig, note) for sig in stops}
    try:
        server.run()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    return caught[0] if caught else None
