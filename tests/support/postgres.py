"""A fresh PostgreSQL database per test, on the server CHANOPS_TEST_POSTGRES_DSN names.

The default is the project machines' server (127.0.0.1:5432, trust authentication).
Outside CI an unreachable server skips the test with one line; with CI=true it fails
the run: a green CI must have run these tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_dsn() -> str:
    return os.environ.get("CHANOPS_TEST_POSTGRES_DSN") or DEFAULT_DSN


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(server_dsn(), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreachable"
        message = f"PostgreSQL at {server_dsn()} is not reachable ({reason})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI needs it", pytrace=False)
        pytest.skip(message)


@contextmanager
def fresh_database(prefix: str = "chanops_test") -> Iterator[str]:
    """CREATE a uniquely named database, yield its DSN, DROP it (FORCE) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_dsn(), name)
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_backends(dsn: str) -> int:
    """pg_terminate_backend every other session on `dsn`'s database: how many."""
    database = urlsplit(dsn).path.lstrip("/")
    with _admin() as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)
