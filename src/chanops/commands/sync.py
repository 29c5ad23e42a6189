"""`chanops sync NAME... [--wait] [--timeout]`: trigger a sync now, optionally follow it.

NAME is a manifest name (looked up in the state store, or the manifest's
`spec.connectionId`). While a sync runs the platform returns the running job rather than
starting a second one. `--wait` follows each job to its end (a progress bar on a TTY,
one line per job otherwise). Exit 0 when every sync was triggered (and, with --wait,
succeeded), 1 otherwise. The store is only read (no lock), so this works beside a
running daemon, which records its own syncs.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from chanops.commands.common import common_options

if TYPE_CHECKING:
    from chanops.manifests.model import Manifest
    from chanops.platform.api import PlatformAPI
    from chanops.platform.models import Job
    from chanops.state.store import Record

POLL_SECONDS = 0.5


@click.command(name="sync")
@common_options
@click.argument("names", nargs=-1, required=True)
@click.option("--wait", is_flag=True, help="Follow each sync job to its end.")
@click.option(
    "--timeout",
    default="45m",
    show_default=True,
    help="With --wait: give up following after this long (e.g. 90s, 10m).",
)
@click.option("--log-level", default="warning", show_default=True, help="Events on stderr.")
def command(
    *, names: tuple[str, ...], wait: bool, timeout: str, log_level: str, **common: Any
) -> None:
    """Trigger a sync of the named connections now."""
    from chanops.commands.session import cli_logging, cli_settings, load, open_session, run_cli
    from chanops.manifests.durations import parse_duration

    settings = cli_settings(**common)
    cli_logging(log_level)
    try:
        limit = parse_duration(timeout)
    except ValueError as exc:
        raise click.ClickException(f"--timeout: {exc}") from None
    result = load(settings)
    by_name = {m.name: m for m in result.manifests}
    tty = sys.stdout.isatty()

    async def body() -> list[tuple[str, Job | None, str]]:
        async with open_session(settings, readonly=True) as session:
            ids = _connection_ids(names, session.store.records(), by_name)
            started, refused = await _trigger(session.client, ids)
            if not wait:
                return [(n, j, j.state) for n, j in started.items()] + refused
            return await follow(session.client, started, limit, tty) + refused

    outcomes = run_cli(body)
    bad = [(n, s) for n, _, s in outcomes if s in ("failed", "timeout")]
    if wait:
        for name, job, state in outcomes:
            if job is None:
                continue
            extra = f": {job.error}" if job is not None and job.error else ""
            click.echo(f"{name}: sync {state}{extra}")
    if bad:
        sys.exit(1)


def _connection_ids(
    names: tuple[str, ...], records: Mapping[str, Record], by_name: Mapping[str, Manifest]
) -> dict[str, int]:
    """Each name's connection id: the state store's, else the manifest's connectionId."""
    ids: dict[str, int] = {}
    for name in names:
        record = records.get(name)
        manifest = by_name.get(name)
        if record is not None and record.connection_id is not None:
            ids[name] = record.connection_id
        elif manifest is not None and manifest.connection_id is not None:
            ids[name] = manifest.connection_id
        else:
            raise click.ClickException(
                f"{name}: no connection known for this name (apply it first, or check the spelling)"
            )
    return ids


async def _trigger(
    client: PlatformAPI, ids: Mapping[str, int]
) -> tuple[dict[str, Job], list[tuple[str, Job | None, str]]]:
    """Trigger every sync at once: the jobs started, and the names whose sync was refused."""
    from chanops.errors import ChanopsError

    async def trigger(cid: int) -> Job | str:
        try:
            return await client.trigger_sync(cid)
        except ChanopsError as exc:  # one refused sync does not stop the others
            return str(exc)

    answers = await asyncio.gather(*(trigger(cid) for cid in ids.values()))
    started: dict[str, Job] = {}
    refused: list[tuple[str, Job | None, str]] = []
    for name, answer in zip(ids, answers, strict=True):
        if isinstance(answer, str):
            click.echo(f"{name}: sync refused: {answer}", err=True)
            refused.append((name, None, "failed"))
        else:
            click.echo(f"{name}: sync job {answer.id} {answer.state}")
            started[name] = answer
    return started, refused


async def follow(
    client: Any, started: dict[str, Any], limit: float, tty: bool
) -> list[tuple[str, Any, str]]:
    """Poll every job until done or `limit` seconds pass; a rich progress bar on a TTY."""
    deadline = time.monotonic() + limit
    current = dict(started)
    progress = None
    tasks: dict[str, Any] = {}
    if tty:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
        )
        progress.start()
        tasks = {n: progress.add_task(n, total=100) for n in current}
    try:
        while time.monotonic() < deadline:
            pending = [n for n, j in current.items() if not j.done]
            if not pending:
                break
            await asyncio.sleep(POLL_SECONDS)
            fresh = await asyncio.gather(*(client.get_job(current[n].id) for n in pending))
            for name, job in zip(pending, fresh, strict=True):
                current[name] = job
                if progress is not None:
                    progress.update(tasks[name], completed=job.progress)
    finally:
        if progress is not None:
            progress.stop()
    return [(n, j, j.state if j.done else "timeout") for n, j in current.items()]
