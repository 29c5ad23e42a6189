"""The emulator's SQLite database: its schema, file modes and connection settings."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS connections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    driver TEXT NOT NULL,
    status TEXT NOT NULL,
    has_order_errors INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL,
    credentials TEXT NOT NULL,
    settings TEXT NOT NULL,
    automation TEXT NOT NULL,
    authorized INTEGER,
    gone_at REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    connection_id INTEGER NOT NULL,
    created_at REAL NOT NULL,
    queued_s REAL NOT NULL,
    running_s REAL NOT NULL,
    fails INTEGER NOT NULL DEFAULT 0,
    snapshot TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_by_connection ON jobs (connection_id, id);
-- every transaction settles finished deletes first: without this the DELETE scans the
-- whole table on every request (~1 ms at 10,000 connections)
CREATE INDEX IF NOT EXISTS connections_gone ON connections (gone_at) WHERE gone_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


def open_database(db: str) -> sqlite3.Connection:
    """A connection to `db` (a path, or `:memory:`) in autocommit mode, schema created.

    Transactions are explicit (`Platform.tx`); the app uses the connection from one
    event loop, but the ASGI transport may run it from another thread than created it.
    """
    if db != ":memory:":
        _private_file(db)
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    if db != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(SCHEMA)
    return conn


def _private_file(db: str) -> None:
    """Create `db` 0600, or tighten an existing looser one (and its -wal and -shm).

    The platform's database holds every connection's credentials: 0600 from the start
    (SQLite gives its -wal and -shm files the database's mode).
    """
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(db, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for name in (db, f"{db}-wal", f"{db}-shm"):
        with contextlib.suppress(OSError):  # absent, or not ours to chmod
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
