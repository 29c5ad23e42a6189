"""`chanops apply`: plan, show, confirm (TTY) or --yes, execute.

Exit codes: 0 converged (every action succeeded, nothing blocked or in error), 1
otherwise. `--dry-run` shows the plan and stops (exit 0). The state store is opened
for writing with its lock: a second writer (or a running daemon) is refused with the
holder's pid.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from chanops.commands.common import common_options, terminal_style
from chanops.commands.git_options import git_options
from chanops.commands.plan import filter_options, parse_selector

if TYPE_CHECKING:
    from chanops.engine.reconciler import ReconcileResult


@click.command(name="apply")
@common_options
@git_options()
@filter_options
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Show the plan and stop.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Platform calls in flight at once.",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="N",
    help="Send at most N platform requests per second (pace to the platform's limit).",
)
@click.option("--log-level", default="warning", show_default=True, help="Events on stderr.")
def command(
    *,
    rate_limit: float | None,
    assume_yes: bool,
    dry_run: bool,
    concurrency: int,
    targets: tuple[str, ...],
    selectors: tuple[str, ...],
    max_delete: int | None,
    allow_recreate: bool,
    log_level: str,
    **common: Any,
) -> None:
    """Make the platform equal to the manifests."""
    from chanops.commands.session import cli_start_loading

    selector = parse_selector(selectors)
    # Before any thread, the store's lock or the event loop: the manifests parse in
    # forked workers while this process starts up and lists the platform.
    settings, loading = cli_start_loading(common, log_level)

    from chanops.commands.session import loaded, open_session, run_cli
    from chanops.engine.reconciler import EngineOptions
    from chanops.engine.render import render

    options = EngineOptions(
        max_delete=max_delete,
        allow_recreate=allow_recreate,
        concurrency=concurrency,
        secrets_dirs=settings.secrets_dirs,
    )
    colour = sys.stdout.isatty()

    async def body() -> ReconcileResult | None:
        async with open_session(
            settings, readonly=dry_run, options=options, rate_limit=rate_limit
        ) as session:
            session.reconciler.prefetch()
            result = await loaded(loading)
            prepared = await session.reconciler.prepare(
                result, targets=set(targets) if targets else None, selector=selector
            )
            plan = prepared.plan
            click.echo(render(plan, "text", style=terminal_style(colour)), nl=False)
            if dry_run or (plan.has_changes and not assume_yes and not _confirmed()):
                return None
            return await session.reconciler.execute(prepared)

    try:
        outcome = run_cli(body)
    finally:
        loading.close()
    result = loading.result()
    if outcome is None:
        if result.errors:
            sys.exit(1)
        return
    _report(outcome, colour=colour)
    if not outcome.converged or result.errors:
        sys.exit(1)


def _confirmed() -> bool:
    """The person at the terminal said yes; without a terminal, a usage error."""
    if not sys.stdin.isatty():
        raise click.ClickException(
            "refusing to apply without confirmation: stdin is not a terminal; pass --yes"
        )
    if not click.confirm("Apply these changes?", default=False):
        click.echo("Apply cancelled.")
        return False
    return True


def _report(outcome: ReconcileResult, *, colour: bool) -> None:
    """Each failed or waiting action, then one summary line."""
    for o in outcome.outcomes:
        if not o.ok:
            click.echo(
                click.style("  ! ", fg="red") + f"{o.action} {o.name}: {o.error}",
                err=True,
                color=colour,
            )
        elif o.waiting:
            click.echo(f"  . {o.action} {o.name}: waiting ({o.waiting})")
    ok = sum(1 for o in outcome.outcomes if o.ok)
    failed = len(outcome.outcomes) - ok
    line = f"Apply complete: {ok} succeeded, {failed} failed"
    if outcome.blocked:
        line += f", {len(outcome.blocked)} blocked"
    if outcome.plan.errors:
        line += f", {len(outcome.plan.errors)} in error"
    if outcome.waiting:
        line += f", {len(outcome.waiting)} waiting"
    click.echo(line + ".")
