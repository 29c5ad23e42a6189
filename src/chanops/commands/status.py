"""`chanops status`: one row per connection chanops knows or the manifests ask for.

Columns: name, driver, id, desired state (from the manifest), actual state (from the
platform), last sync and its outcome, Ready; then a second table with one line per
condition: type, status, reason, age (since its last transition) and message.
Read-only: the state store is opened without its lock, so status works beside a
running daemon. `--format json` prints the same rows as a JSON list, each condition as
its full object.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from chanops.commands.common import common_options
from chanops.condition import Condition, ConditionType
from chanops.engine.conditions import holding


def status_rows(
    manifests: dict[str, Any],
    records: dict[str, Any],
    connections: dict[int, Any],
    jobs: dict[int, Any] | None = None,
) -> list[dict[str, Any]]:
    """Pure: the status table's rows from manifests, store records and platform connections."""
    rows: list[dict[str, Any]] = []
    for name in sorted(set(manifests) | set(records)):
        m = manifests.get(name)
        r = records.get(name)
        cid = r.connection_id if r is not None and r.connection_id is not None else None
        if cid is None and m is not None:
            cid = m.connection_id
        conn = connections.get(cid) if cid is not None else None
        if m is None:
            desired = "removed"
        elif m.suspend:
            desired = "suspended"
        else:
            desired = "active" if m.enabled else "inactive"
        conditions: list[Condition] = list(r.conditions) if r is not None else []
        job = (jobs or {}).get(cid) if cid is not None else None
        last_job = job.id if job is not None else (r.last_sync_job if r is not None else None)
        last_outcome = job.state if job is not None else (r.last_sync_outcome if r else None)
        last_at = (job.finished_at or job.started_at or job.created_at) if job else None
        if (
            m is not None
            and m.suspend
            and all(c.type != ConditionType.SUSPENDED for c in conditions)
        ):
            # Suspended in the manifest since the last reconcile: no time known yet.
            conditions.append(holding(ConditionType.SUSPENDED))
        rows.append(
            {
                "name": name,
                "driver": (m.driver if m is not None else r.driver if r is not None else ""),
                "id": cid,
                "desired": desired,
                "actual": conn.status if conn is not None else ("missing" if cid else "absent"),
                "managed": r is not None and r.connection_id is not None,
                "last_sync_job": last_job,
                "last_sync": last_at or (r.last_sync_at if r is not None else None),
                "last_sync_outcome": last_outcome,
                "conditions": [c.to_json() for c in conditions],
                "pending_intent": r.intent.op if r is not None and r.intent is not None else None,
            }
        )
    return rows


def age(since: str, now: datetime) -> str:
    """How long ago `since` (RFC 3339) was, in its largest unit: `45s`, `12m`, `3h`, `2d`."""
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        return "-"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def ready_cell(conditions: list[dict[str, str]]) -> str:
    """Pure: the READY column: `True`, or the status with its reason."""
    ready = next((c for c in conditions if c["type"] == ConditionType.READY), None)
    if ready is None:
        return "-"
    return (
        ready["status"] if ready["status"] == "True" else f"{ready['status']} ({ready['reason']})"
    )


def condition_lines(rows: list[dict[str, Any]], now: datetime) -> list[list[str]]:
    """Pure: one line per condition: name, type, status, reason, age, message."""
    return [
        [
            row["name"],
            c["type"],
            c["status"],
            c["reason"],
            age(c["lastTransitionTime"], now),
            c["message"],
        ]
        for row in rows
        for c in row["conditions"]
    ]


@click.command(name="status")
@common_options
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--log-level", default="warning", show_default=True, help="Events on stderr.")
def command(fmt: str, log_level: str, **common: Any) -> None:
    """Show every connection's desired and actual state, last sync and conditions."""
    from chanops.commands.session import cli_logging, cli_settings, load, open_session, run_cli

    settings = cli_settings(**common)
    cli_logging(log_level)
    result = load(settings)

    async def body() -> list[dict[str, Any]]:
        async with open_session(settings, readonly=True) as session:
            records = session.store.records()
            connections = {c.id: c for c in await session.client.list_connections()}
            # The latest sync job per connection, from one (paged) list of jobs.
            jobs: dict[int, Any] = {}
            for job in await session.client.list_jobs():
                if job.kind != "delete" and (
                    job.connection_id not in jobs or job.id > jobs[job.connection_id].id
                ):
                    jobs[job.connection_id] = job
        manifests = {m.name: m for m in result.manifests}
        return status_rows(manifests, dict(records), connections, jobs)

    rows = run_cli(body)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    _print_tables(rows)
    if result.errors:
        click.echo(f"{len(result.errors)} manifest error(s); run chanops validate", err=True)


def _print_tables(rows: list[dict[str, Any]]) -> None:
    """The connections, then every condition of each with its age (rows of their own,
    so a long message wraps without pulling the connections' columns apart)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=200 if not sys.stdout.isatty() else None)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "DRIVER", "ID", "DESIRED", "ACTUAL", "LAST SYNC", "READY"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        sync = "-"
        if row["last_sync_job"] is not None:
            sync = f"job {row['last_sync_job']} {row['last_sync_outcome'] or ''}".strip()
            if row["last_sync"]:
                sync += f" ({row['last_sync']})"
        cells = (row["name"], row["driver"], str(row["id"] or "-"), row["desired"], row["actual"])
        table.add_row(*cells, sync, ready_cell(row["conditions"]))
    console.print(table)
    lines = condition_lines(rows, datetime.now(UTC))
    if not lines:
        return
    conditions = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "CONDITION", "STATUS", "REASON", "AGE", "MESSAGE"):
        conditions.add_column(column, no_wrap=column != "MESSAGE")
    for line in lines:
        conditions.add_row(*line)
    console.print()
    console.print(conditions)
