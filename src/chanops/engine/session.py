"""Wiring for the commands: settings -> manifests, platform client, state store, reconciler.

Imperative shell shared by `plan`, `apply`, `status`, `sync` and `export`.
Read-only commands (`plan`, `status`) open the store read-only and take no lock, so
they work while a daemon holds it; writers (`apply`, `sync`) take the lock and fail
with StoreLocked naming the holder's pid.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from chanops.config import Settings
from chanops.engine.reconciler import EngineOptions, Reconciler
from chanops.manifests.model import LoadResult
from chanops.platform.api import PlatformAPI
from chanops.state.store import StateStore

T = TypeVar("T")


@dataclass
class Session:
    settings: Settings
    client: PlatformAPI
    store: StateStore
    reconciler: Reconciler


def load(settings: Settings) -> LoadResult:
    from chanops.manifests import load_manifests

    return load_manifests([settings.manifests], secrets_dirs=settings.secrets_dirs)


@contextlib.asynccontextmanager
async def open_session(
    settings: Settings,
    *,
    readonly: bool,
    options: EngineOptions | None = None,
    rate_limit: float | None = None,
    on_request: Callable[[str, int, float], None] | None = None,
) -> AsyncIterator[Session]:
    from chanops.platform.client import open_client

    opts = options or EngineOptions(secrets_dirs=settings.secrets_dirs)
    store = StateStore.open(settings.state, readonly=readonly)
    try:
        client = open_client(
            settings.platform.url,
            settings.platform.token,
            concurrency=max(opts.concurrency, 8),
            rate_limit=rate_limit,
            on_request=on_request,
        )
        async with client:
            yield Session(
                settings, client, store, Reconciler(client=client, store=store, options=opts)
            )
    finally:
        store.close()


def cli_settings(**common: object) -> Settings:
    """settings_from() for the engine's commands; a bad option exits 1, not click's 2.

    `plan --detailed-exitcode` gives 2 the meaning "changes present", so a usage error
    must not share it.
    """
    import click

    from chanops.commands.common import settings_from

    try:
        return settings_from(**common)  # type: ignore[arg-type]
    except click.UsageError as exc:
        raise click.ClickException(exc.message) from None


def cli_start(common: dict[str, Any], log_level: str) -> Settings:
    """The start of every one-shot engine command: settings, logging, then --git.

    Logging is configured before the git checkout so its events go to stderr and
    stdout keeps only the command's output (a JSON plan stays parseable).
    """
    from chanops.commands.common import with_git_checkout
    from chanops.sources.options import pop_git_options

    git = pop_git_options(common)
    settings = cli_settings(**common)
    cli_logging(log_level)
    return with_git_checkout(settings, git)


def cli_logging(level: str = "warning") -> None:
    """Events to stderr, so stdout carries only the command's own output (plans, JSON)."""
    import sys

    from chanops.observability.logging import configure_logging

    configure_logging(level=level, stream=sys.stderr)


def run_cli(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async command body; a ChanopsError becomes one line and exit 1."""
    import asyncio

    import click

    from chanops.errors import ChanopsError

    try:
        return asyncio.run(coro_fn())
    except ChanopsError as exc:
        raise click.ClickException(str(exc)) from None


def print_diagnostics(result: LoadResult) -> None:
    import click

    for d in result.diagnostics:
        click.echo(str(d), err=True)
