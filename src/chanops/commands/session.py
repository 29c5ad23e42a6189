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
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    # Imported where used: `cli_start_loading` forks the manifest workers before the
    # engine, the client and structlog are imported (about 0.3 s of a `plan`).
    from chanops.config import Settings
    from chanops.engine.reconciler import EngineOptions, Reconciler
    from chanops.manifests.load import LoadJob
    from chanops.manifests.model import LoadResult
    from chanops.platform.api import PlatformAPI
    from chanops.state.protocol import Store

T = TypeVar("T")


@dataclass
class Session:
    settings: Settings
    client: PlatformAPI
    store: Store
    reconciler: Reconciler


def load(settings: Settings) -> LoadResult:
    from chanops.manifests import load_manifests

    # The composition root: forked workers for a large root (never library code's call).
    return load_manifests([settings.manifests], secrets_dirs=settings.secrets_dirs, parallel=True)


def start_load(settings: Settings) -> LoadJob:
    """Begin loading the manifests in worker processes (see `load.start_load`).

    Call before anything starts a thread, then list the platform meanwhile: at 10,000
    connections each of the two takes about a second, and one core did them in turn.
    """
    from chanops.manifests.load import start_load as begin

    return begin([settings.manifests], secrets_dirs=settings.secrets_dirs)


def cli_start_loading(common: dict[str, Any], log_level: str) -> tuple[Settings, LoadJob]:
    """`cli_start` for commands that load every manifest, with the load begun early.

    Local manifests start loading before logging and the engine are even imported, so
    the workers parse while this process starts up; a --git checkout comes first.
    """
    from chanops.commands.common import with_git_checkout
    from chanops.commands.git_options import pop_git_options

    git = pop_git_options(common)
    settings = cli_settings(**common)
    loading = start_load(settings) if git is None else None
    cli_logging(log_level)
    if loading is None:
        settings = with_git_checkout(settings, git)
        loading = start_load(settings)
    return settings, loading


async def loaded(loading: LoadJob) -> LoadResult:
    """The started load's result (waited for off the event loop), diagnostics printed."""
    import asyncio

    import structlog

    result = await asyncio.to_thread(loading.result)
    print_diagnostics(result)
    structlog.get_logger("chanops.manifests").debug(
        "manifests.loaded",
        files=len(result.files),
        manifests=len(result.manifests),
        workers=loading.workers,
    )
    return result


@contextlib.asynccontextmanager
async def open_session(
    settings: Settings,
    *,
    readonly: bool,
    options: EngineOptions | None = None,
    rate_limit: float | None = None,
    on_request: Callable[[str, int, float], None] | None = None,
) -> AsyncIterator[Session]:
    from chanops.commands.platform import oauth_from, open_platform
    from chanops.engine.reconciler import EngineOptions, Reconciler
    from chanops.state.factory import open_store

    opts = options or EngineOptions(secrets_dirs=settings.secrets_dirs)
    store = open_store(settings.state_location, readonly=readonly)
    try:
        client = open_platform(
            settings.platform.url,
            settings.platform.token,
            concurrency=max(opts.concurrency, 8),
            rate_limit=rate_limit,
            on_request=on_request,
            # Read-only commands refresh too: the token set is saved outside the lock.
            oauth=oauth_from(settings, store),
            profile=settings.platform.profile,
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
    from chanops.commands.git_options import pop_git_options

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

    box: list[T] = []

    async def main() -> None:
        box.append(await coro_fn())

    try:
        # The result leaves through `box`, not as the main task's result: on exit Python
        # 3.11's asyncio.run restores the SIGINT handler, and signal.signal() builds an
        # error message holding repr(old handler) -> repr(main task) -> repr(result). A
        # 10,000-manifest LoadResult took 0.2 s to repr, for a message nobody reads.
        asyncio.run(main())
    except ChanopsError as exc:
        raise click.ClickException(str(exc)) from None
    return box[0]


def print_diagnostics(result: LoadResult) -> None:
    import click

    for d in result.diagnostics:
        click.echo(str(d), err=True)
