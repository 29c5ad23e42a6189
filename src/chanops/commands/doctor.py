"""`chanops doctor`: check the token and every read operation against this platform.

Read-only. With `--profile core1` it is how a user confirms, in one command, that the
profile's method names and answer layouts fit their own Core1 instance (which
generates its API from the modules installed, so names can differ): each mapped read
operation is called and reported `ok` or `FAIL` with the reason. Exit 0 when all
answered as expected, 1 otherwise. An OAuth access token is refreshed as needed, and
a new refresh token stored like any command's; no token is ever printed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from chanops.commands.common import common_options

if TYPE_CHECKING:
    from chanops.config import Settings
    from chanops.platform.client import PlatformClient


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    where: str  # the method or path it calls
    ok: bool
    detail: str


def _where(client: PlatformClient, operation: str, rest_path: str) -> str:
    profile = getattr(client, "profile", None)
    if profile is None:
        return rest_path
    return f"POST {profile.operation(operation).path}"


async def _check(
    client: PlatformClient,
    operation: str,
    rest_path: str,
    call: Callable[[], Awaitable[Any]],
    describe: Callable[[Any], str],
) -> tuple[Check, Any]:
    from chanops.errors import ChanopsError

    where = _where(client, operation, rest_path)
    try:
        result = await call()
    except ChanopsError as exc:
        return Check(operation, where, False, str(exc)), None
    return Check(operation, where, True, describe(result)), result


async def diagnose(settings: Settings) -> list[Check]:
    """The token first, then each read operation; stops after a token failure."""
    from chanops.commands.platform import oauth_from, open_platform
    from chanops.state.factory import open_store

    store = open_store(settings.state_location, readonly=True)
    try:
        client = open_platform(
            settings.platform.url,
            settings.platform.token,
            oauth=oauth_from(settings, store),
            profile=settings.platform.profile,
            max_retries=1,
        )
        async with client:
            token = await _token(client)
            if not token.ok:
                return [token]
            return [token, *await _reads(client)]
    finally:
        store.close()


async def _token(client: PlatformClient) -> Check:
    from chanops.errors import ChanopsError

    if client.auth is None:
        return Check("token", "static", True, "a static bearer token (--token/--token-file)")
    try:
        await client.auth.bearer()
    except ChanopsError as exc:
        return Check("token", "OAuth", False, str(exc))
    tokens = client.auth.current
    left = round(tokens.expires_at - time.time()) if tokens is not None else 0
    return Check(
        "token",
        "OAuth",
        True,
        f"client {client.auth.client_id}: an access token valid {left}s more, "
        f"{'a' if tokens and tokens.refresh_token else 'no'} refresh token",
    )


async def _reads(client: PlatformClient) -> list[Check]:
    checks: list[Check] = []
    check, _ = await _check(
        client, "list_drivers", "GET /api/v1/drivers", client.list_drivers, _count("driver")
    )
    checks.append(check)
    check, connections = await _check(
        client,
        "list_connections",
        "GET /api/v1/connections",
        client.list_connections,
        _count("connection"),
    )
    checks.append(check)
    if connections:
        first = connections[0].id
        check, _ = await _check(
            client,
            "get_connection",
            f"GET /api/v1/connections/{first}",
            lambda: client.get_connection(first),
            lambda c: f"connection {c.id} ({c.driver}, {c.status})",
        )
        checks.append(check)
    check, jobs = await _check(
        client, "list_jobs", "GET /api/v1/jobs", client.list_jobs, _count("job")
    )
    checks.append(check)
    if jobs:
        last = jobs[-1].id
        check, _ = await _check(
            client,
            "get_job",
            f"GET /api/v1/jobs/{last}",
            lambda: client.get_job(last),
            lambda j: f"job {j.id} ({j.kind}, {j.state})",
        )
        checks.append(check)
    return checks


def _count(noun: str) -> Callable[[Any], str]:
    return lambda items: f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def render(checks: list[Check], profile: str) -> tuple[str, int]:
    """The report (one line per check, then a verdict) and the exit code (pure)."""
    width = max(len(c.name) for c in checks)
    lines = [
        f"{'ok  ' if c.ok else 'FAIL'}  {c.name.ljust(width)}  {c.where}: {c.detail}"
        for c in checks
    ]
    failed = [c for c in checks if not c.ok]
    if not failed:
        lines.append(f"All {len(checks)} checks answered as expected ({profile} profile).")
        return "\n".join(lines), 0
    hint = (
        " The method names of the core1 profile follow the vendor's conventions; this "
        "instance may name them differently: override them under core1Profile in "
        "chanops.yaml (docs/core1.md)."
        if profile == "core1" and checks[0].ok
        else ""
    )
    lines.append(f"{len(failed)} of {len(checks)} checks failed.{hint}")
    return "\n".join(lines), 1


@click.command(name="doctor")
@common_options
def command(**common: Any) -> None:
    """Check the token, then call each read operation and say which answered as expected."""
    import asyncio

    from chanops.commands.session import cli_logging, cli_settings
    from chanops.errors import ChanopsError

    settings = cli_settings(**common)
    cli_logging("error")
    try:
        checks = asyncio.run(diagnose(settings))
    except ChanopsError as exc:
        raise click.ClickException(str(exc)) from None
    profile = "core1" if settings.platform.profile is not None else "rest"
    report, code = render(checks, profile)
    click.echo(report)
    raise SystemExit(code)
