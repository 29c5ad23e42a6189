"""Which backend a `--state` value names, and opening it.

`postgresql://...` (or `postgres://...`) is the PostgreSQL store, shared by replicas;
anything else is the path of a SQLite database, the embedded default. psycopg is
imported only when a DSN is given.
"""

from __future__ import annotations

from pathlib import Path

from chanops.state.protocol import Store

SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(SCHEMES)


def open_store(location: str | Path, *, readonly: bool = False, fenced: bool = False) -> Store:
    """The store at `location`. `fenced`: PostgreSQL writes only under the leader lease
    (`chanops run`); a SQLite store ignores it (its file lock admits one writer)."""
    if is_postgres(location):
        from chanops.state.postgres import PostgresStore

        return PostgresStore.open(str(location), readonly=readonly, fenced=fenced)
    from chanops.state.store import StateStore

    return StateStore.open(Path(location), readonly=readonly)
