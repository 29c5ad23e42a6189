"""`chanops state migrate`: move a SQLite state store into an empty PostgreSQL one.

What moves: every record (with its pending intent and the idempotency key of a pending
create), the secret-HMAC key (so no secret reads as changed afterwards) and the OAuth
token set. The source is opened as its writer, so no daemon may run on it meanwhile;
the target must be empty and have no live leader. The source is left as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from chanops.state.factory import is_postgres


@click.group(name="state")
def command() -> None:
    """The state store (docs/ha.md)."""


@command.command(name="migrate")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="The SQLite store to copy from (e.g. .chanops/state.db).",
)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="DSN",
    help="The PostgreSQL store to copy into (postgresql://...); it must be empty.",
)
def migrate(source: Path, target: str) -> None:
    """Copy a SQLite store into an empty PostgreSQL store; exit 1 on any refusal."""
    from chanops.errors import ChanopsError

    try:
        click.echo(move(source, target))
    except ChanopsError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


def move(source: Path, target: str) -> str:
    """Do the copy; the one-line summary. Raises ChanopsError with one line."""
    from chanops.errors import StoreError
    from chanops.state.postgres import PostgresStore, display_dsn
    from chanops.state.store import StateStore

    if not is_postgres(target):
        raise StoreError(f"--to {target!r} is not a PostgreSQL DSN (postgresql://...)")
    if not source.is_file():
        raise StoreError(f"--from {source}: no SQLite state store there")
    with StateStore.open(source) as old:
        records = list(old.records().values())
        tokens = old.tokens()
        history = old.events()  # what /status and the status page showed
        with PostgresStore.open(target) as new:
            if not new.is_empty():
                raise StoreError(
                    f"state store {display_dsn(target)} is not empty: chanops state migrate "
                    "copies into an empty store only (nothing was written)"
                )
            new.set_key(old.export_key())
            new.put_many(records)
            new.append_events(history)
            if tokens is not None:
                new.save_tokens(tokens)
    moved = "the token set, " if tokens is not None else ""
    return (
        f"Copied {len(records)} records, {moved}and the HMAC key from {source} "
        f"to {display_dsn(target)}"
    )
