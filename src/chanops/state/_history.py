"""The event history the status page shows, kept in the state store (docs/ha.md).

The daemon keeps its last events in memory (`chanops.daemon._status.EventLog`) for
`/status` and the status page. The writer also appends them to the store in batches
(`chanops.daemon._history`), so a standby on a shared PostgreSQL store, a new leader
after a failover, and a restarted daemon show the same recent history. The table
holds the last `HISTORY_SIZE` events overall, trimmed in the transaction that appends.

Only what `/status` shows is stored: the compact, redacted events (the log redactor
has scrubbed them before the ring sees them), never a secret.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chanops.errors import StoreError

HISTORY_SIZE = 100  # also the in-memory ring's size (chanops.daemon._status)

# Appended to each backend's migrations (the same table, each dialect's serial id).
SQLITE_HISTORY_DDL = """
    CREATE TABLE event_history (
        id    INTEGER PRIMARY KEY AUTOINCREMENT,
        event TEXT NOT NULL
    );
"""
PG_HISTORY_DDL = """
    CREATE TABLE event_history (
        id    BIGSERIAL PRIMARY KEY,
        event TEXT NOT NULL
    );
"""

# Keep the newest HISTORY_SIZE rows (ids only grow; a gap in them changes nothing).
_TRIM = (
    "DELETE FROM event_history WHERE id <= "
    "(SELECT id FROM event_history ORDER BY id DESC LIMIT 1 OFFSET {p})"
)
_READ = "SELECT event FROM event_history ORDER BY id DESC LIMIT {p}"
SQLITE_TRIM, PG_TRIM = _TRIM.format(p="?"), _TRIM.format(p="%s")
SQLITE_READ, PG_READ = _READ.format(p="?"), _READ.format(p="%s")
SQLITE_APPEND = "INSERT INTO event_history (event) VALUES (?)"
PG_APPEND = "INSERT INTO event_history (event) VALUES (%s)"


def encode(events: Sequence[Mapping[str, Any]]) -> list[tuple[str]]:
    """The rows to insert: the newest `HISTORY_SIZE` events as JSON, oldest first."""
    return [
        (json.dumps(dict(e), separators=(",", ":"), default=str),) for e in events[-HISTORY_SIZE:]
    ]


def decode(newest_first: Iterable[str]) -> list[dict[str, Any]]:
    """Stored events, oldest first; a row that is not a JSON object is skipped."""
    out: list[dict[str, Any]] = []
    for text in newest_first:
        with contextlib.suppress(ValueError):
            event = json.loads(text)
            if isinstance(event, dict):
                out.append(event)
    out.reverse()
    return out


class HistoryTable:
    """The history's methods of the SQLite store (`StateStore` inherits them): written
    over the writer's connection, read over this thread's reader."""

    path: Path

    def _writer(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _reading(self) -> sqlite3.Connection | None:
        raise NotImplementedError

    def append_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Append a batch and trim to the newest `HISTORY_SIZE` (one transaction)."""
        rows = encode(events)
        if not rows:
            return
        conn = self._writer()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(SQLITE_APPEND, rows)
                conn.execute(SQLITE_TRIM, (HISTORY_SIZE,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"state store {self.path}: {exc}") from None

    def events(self) -> list[dict[str, Any]]:
        """The stored history, oldest first (at most `HISTORY_SIZE` events)."""
        conn = self._reading()
        if conn is None:
            return []
        try:
            rows = conn.execute(SQLITE_READ, (HISTORY_SIZE,)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"state store {self.path}: {exc}") from None
        return decode(row[0] for row in rows)
