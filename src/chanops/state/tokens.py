"""The OAuth token set in the state store: one row, written atomically and durably.

The daemon holds the store's writer lock for as long as it runs, yet `chanops login`
must hand it a new token set, and a read-only `chanops plan` that refreshes an access
token must keep the new refresh token (a rotating server has already invalidated the
old one). So the token row is read and written over a connection of its own, outside
the writer lock: one `BEGIN IMMEDIATE` transaction per write, `synchronous=FULL`, so a
refresh token is on disk before the access token that came with it is used. SQLite
serialises these writes with the daemon's own.

The row lives in the store's database (mode 0600 like its other files) and nowhere
else; nothing here logs a token.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chanops.errors import StoreError

# Appended to the store's migrations (chanops.state.store.MIGRATIONS).
OAUTH_TABLE_DDL = """
    CREATE TABLE oauth_tokens (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        platform_url  TEXT NOT NULL,
        client_id     TEXT NOT NULL,
        access_token  TEXT NOT NULL,
        refresh_token TEXT,
        scope         TEXT NOT NULL DEFAULT '',
        issued_at     REAL NOT NULL,
        expires_at    REAL NOT NULL,
        generation    INTEGER NOT NULL,
        login         INTEGER NOT NULL DEFAULT 0,
        updated_at    TEXT NOT NULL
    );
"""


@dataclass(frozen=True, slots=True)
class StoredTokens:
    """The token set as stored. `generation` grows by one with every save.

    `login` is the generation of the last `chanops login`: a daemon told to
    reauthorize resumes when it grows.
    """

    platform_url: str
    client_id: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    scope: str
    issued_at: float  # unix time
    expires_at: float  # unix time
    generation: int = 0
    login: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredTokens:
        """The set from an `oauth_tokens` row (SQLite's and PostgreSQL's have one shape)."""
        return cls(**{f.name: row[f.name] for f in fields(cls)})


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)  # one call, one thread
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@contextlib.contextmanager
def _connection(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        conn = _connect(path)
    except sqlite3.Error as exc:
        raise StoreError(f"state store {path}: {exc}") from None
    try:
        yield conn
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise StoreError(
                f"state store {path} has no token table yet: run chanops login "
                "(or any writing command) with this chanops version first"
            ) from None
        raise StoreError(f"state store {path}: {exc}") from None
    except sqlite3.Error as exc:
        raise StoreError(f"state store {path}: {exc}") from None
    finally:
        conn.close()


def load_tokens(path: Path) -> StoredTokens | None:
    """The stored token set, or None (no store, no table yet, or never logged in)."""
    if not path.exists():
        return None
    with _connection(path) as conn:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='oauth_tokens'"
        ).fetchone()
        if not exists:
            return None
        row = conn.execute("SELECT * FROM oauth_tokens WHERE id = 1").fetchone()
    if row is None:
        return None
    return StoredTokens.from_row(row)


def save_tokens(path: Path, tokens: StoredTokens, *, login: bool = False) -> StoredTokens:
    """Replace the token set in one durable transaction; the set as saved.

    `login`: a new authorization (chanops login), which a daemon waiting for one
    takes up; a refresh keeps the login generation it had.
    """
    with _connection(path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT generation, login FROM oauth_tokens WHERE id = 1").fetchone()
            generation = (row["generation"] if row else 0) + 1
            login_generation = generation if login else (row["login"] if row else 0)
            conn.execute(
                """INSERT OR REPLACE INTO oauth_tokens (id, platform_url, client_id,
                access_token, refresh_token, scope, issued_at, expires_at, generation,
                login, updated_at) VALUES (1,?,?,?,?,?,?,?,?,?,?)""",
                (
                    tokens.platform_url,
                    tokens.client_id,
                    tokens.access_token,
                    tokens.refresh_token,
                    tokens.scope,
                    tokens.issued_at,
                    tokens.expires_at,
                    generation,
                    login_generation,
                    datetime.now(UTC).isoformat(timespec="seconds"),
                ),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return replace(tokens, generation=generation, login=login_generation)


@contextlib.contextmanager
def refresh_lock(path: Path) -> Iterator[None]:
    """Held by whoever refreshes the token set (blocking): one refresh at a time
    across processes, so two never spend the same rotating refresh token."""
    lock_path = path.with_name(path.name + ".oauth-lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open {lock_path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class TokenTable:
    """The token set's methods of the SQLite store (`StateStore` inherits them): its own
    connection, outside the writer lock, so a read-only store saves a refresh too."""

    path: Path

    def tokens(self) -> StoredTokens | None:
        return load_tokens(self.path)

    def save_tokens(self, tokens: StoredTokens, *, login: bool = False) -> StoredTokens:
        """Durable before it returns, read-only store or not."""
        return save_tokens(self.path, tokens, login=login)
