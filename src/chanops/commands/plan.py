"""`chanops plan`: desired vs actual, printed like `terraform plan`.

Exit codes: 0 success (with --detailed-exitcode: no changes), 2 changes present
(--detailed-exitcode only), 1 error. Writes nothing: the state store is opened
read-only without its lock, so a plan works beside a running daemon.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import click

from chanops.commands.common import common_options, terminal_style
from chanops.commands.git_options import git_options


def parse_selector(selectors: tuple[str, ...]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for item in selectors:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise click.ClickException(f"--selector {item!r}: expected key=value")
            out[key.strip()] = value.strip()
    return out or None


def filter_options(func: Any) -> Any:
    func = click.option(
        "--selector",
        "selectors",
        multiple=True,
        metavar="KEY=VALUE",
        help="Only manifests whose labels match (repeatable; never plans deletes).",
    )(func)
    func = click.option(
        "--target",
        "targets",
        multiple=True,
        metavar="NAME",
        help="Only this connection (manifest name; repeatable).",
    )(func)
    func = click.option(
        "--max-delete",
        type=click.IntRange(min=0),
        default=None,
        help="Mass-delete guard: most deletes one run may do [default 25% of managed, >= 1].",
    )(func)
    func = click.option(
        "--allow-recreate",
        is_flag=True,
        help="Delete and create again when an immutable field (driver, ...) changes.",
    )(func)
    return func


@click.command(name="plan")
@common_options
@git_options()
@filter_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there are no changes, 2 when there are, 1 on error.",
)
@click.option("--log-level", default="warning", show_default=True, help="Events on stderr.")
def command(
    *,
    fmt: str,
    detailed_exitcode: bool,
    targets: tuple[str, ...],
    selectors: tuple[str, ...],
    max_delete: int | None,
    allow_recreate: bool,
    log_level: str,
    **common: Any,
) -> None:
    """Show what `chanops apply` would do, without doing it."""
    # A short-lived process that keeps what it allocates: the cyclic GC would rescan the
    # growing heap for nothing (10,000 connections: measurably slower).
    gc.disable()
    from chanops.commands.session import cli_start_loading

    selector = parse_selector(selectors)
    # First, before any thread or event loop exists: the manifests parse in forked
    # workers while this process imports the engine and lists the platform.
    settings, loading = cli_start_loading(common, log_level)

    from chanops.commands.session import loaded, open_session, run_cli
    from chanops.engine.reconciler import EngineOptions
    from chanops.engine.render import render

    options = EngineOptions(
        max_delete=max_delete,
        allow_recreate=allow_recreate,
        secrets_dirs=settings.secrets_dirs,
    )

    async def body() -> Any:
        async with open_session(settings, readonly=True, options=options) as session:
            session.reconciler.prefetch()
            result = await loaded(loading)
            return result, await session.reconciler.plan(
                result, targets=set(targets) if targets else None, selector=selector
            )

    try:
        result, plan = run_cli(body)
    finally:
        loading.close()
    colour = fmt == "text" and sys.stdout.isatty()
    click.echo(render(plan, fmt, style=terminal_style(colour)), nl=False)
    if result.errors or plan.errors:
        sys.exit(1)
    if detailed_exitcode and plan.has_changes:
        sys.exit(2)
