"""The PostgreSQL state store: the same records as SQLite, shared by replicas.

`--state postgresql://...` puts everything the daemon keeps in one database: the
records and their intents (with the idempotency keys of pending creates), the secret
HMAC key (a table instead of the key file), the OAuth token set, the leader lease
(chanops.state.lease), the git webhook deliveries a standby received for the
leader, and the recent event history (chanops.state._history). Connections come from a
psycopg pool; each store operation is one transaction.

Fencing: a store opened for election (`fenced=True`, what `chanops run` does) writes
only while it holds the lease. Every write transaction first calls `chanops_fence`
(holder, epoch), which takes a share lock on the lease row and raises unless that
holder still holds that epoch and the lease has not expired by the server's clock. A
leader paused past its lease (SIGSTOP, a long GC, a partition) that wakes up and writes
gets `Fenced`, whatever its own clock believes: a new leader's acquisition bumped the
epoch, or the lease ran out. The lock also orders an acquisition after any write in
flight, so two epochs never write at once.

A writer that does not elect (`chanops apply`, `chanops sync`) is refused while a live
leader holds the lease, as the SQLite store refuses a second writer.

Migrations have the SQLite store's discipline: versioned, append-only, applied in order
in one transaction each (serialised across replicas by an advisory lock), and a store
of a newer version is refused with one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from chanops.errors import StoreError, StoreLocked
from chanops.state import _history as history
from chanops.state import lease
from chanops.state.store import RECORD_COLUMNS, Record, record_row, row_to_record
from chanops.state.tokens import StoredTokens

T = TypeVar("T")

CONNECT_TIMEOUT = 5  # seconds: a wrong host fails startup in seconds, not minutes
ATTEMPTS = 2  # a body whose connection the server dropped runs once more
# Fenced writes raise this SQLSTATE (class "CH": chanops's own).
FENCED_SQLSTATE = "CH001"
# Serialises migrations of concurrently starting replicas (an arbitrary constant).
MIGRATION_LOCK = 0x636861_6E6F7073

# PG_MIGRATIONS[n] takes the schema from version n to n+1. Never edit a released entry:
# append a new one, so every existing store upgrades in order.
PG_MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE connections (
        name              TEXT PRIMARY KEY,
        connection_id     BIGINT UNIQUE,
        driver            TEXT NOT NULL,
        source_file       TEXT NOT NULL DEFAULT '',
        fingerprint       TEXT NOT NULL DEFAULT '',
        applied_spec      TEXT NOT NULL DEFAULT '{{}}',
        secret_hmacs      TEXT NOT NULL DEFAULT '{{}}',
        version           BIGINT,
        deletion_policy   TEXT NOT NULL DEFAULT 'Delete',
        last_sync_job     BIGINT,
        last_sync_outcome TEXT,
        last_sync_at      TEXT,
        conditions        TEXT NOT NULL DEFAULT '[]',
        intent            TEXT,
        updated_at        TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE hmac_key (
        id  INTEGER PRIMARY KEY CHECK (id = 1),
        key TEXT NOT NULL
    );
    CREATE TABLE oauth_tokens (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        platform_url  TEXT NOT NULL,
        client_id     TEXT NOT NULL,
        access_token  TEXT NOT NULL,
        refresh_token TEXT,
        scope         TEXT NOT NULL DEFAULT '',
        issued_at     DOUBLE PRECISION NOT NULL,
        expires_at    DOUBLE PRECISION NOT NULL,
        generation    BIGINT NOT NULL,
        login         BIGINT NOT NULL DEFAULT 0,
        updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE webhook_requests (
        id          BIGSERIAL PRIMARY KEY,
        received_by TEXT NOT NULL,
        received_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    {lease.LEASE_DDL}
    """,
    history.PG_HISTORY_DDL,  # 1 -> 2: the event history (chanops.state._history)
)
PG_SCHEMA_VERSION = len(PG_MIGRATIONS)

_UPSERT_RECORD = (
    f"INSERT INTO connections ({', '.join(RECORD_COLUMNS)}) "  # noqa: S608 (constants)
    f"VALUES ({', '.join('%s' for _ in RECORD_COLUMNS)}) "
    "ON CONFLICT (name) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in RECORD_COLUMNS if c != "name")
)


def display_dsn(dsn: str) -> str:
    """The DSN without its password: what messages and logs show."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rpartition("@")
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[2]}"))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Fenced(StoreError):
    """A fenced write by a process that no longer holds the lease's epoch."""


class LeaseHeld(StoreLocked):
    """A writer that does not elect, refused while a replica leads: the shared store's
    `StoreLocked` (read-only openers and the token set are still welcome)."""

    def __init__(self, where: str, holder: str, epoch: int) -> None:
        StoreError.__init__(
            self,
            f"state store {where} is in use by the leader {holder} (epoch {epoch}); "
            "is a chanops run replica running?",
        )
        self.path = where
        self.pid = None
        self.holder = holder


class PostgresStore:
    """Open with `PostgresStore.open(dsn)`; see the module docstring for `fenced`."""

    def __init__(
        self, dsn: str, pool: ConnectionPool[Any], key: bytes, *, readonly: bool, fenced: bool
    ) -> None:
        self.dsn = dsn
        self._pool = pool
        self._key = key
        self.readonly = readonly
        self.fenced = fenced
        # Set by the leadership (daemon/leader.py) while it holds the lease; None: no
        # write passes the fence.
        self.fence: lease.Term | None = None
        # How long an operation waits for a pooled connection. The daemon calls the store
        # from its event loop, so its leadership shortens this: a server that went away
        # must not hold the loop (the election, /status) for longer than the lease margin.
        self.wait: float = CONNECT_TIMEOUT * 2

    @property
    def location(self) -> str:
        return display_dsn(self.dsn)

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls, dsn: str, *, readonly: bool = False, fenced: bool = False, pool_size: int = 8
    ) -> PostgresStore:
        where = display_dsn(dsn)
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
                if readonly:
                    _check_version(conn, where)
                else:
                    _migrate(conn, where)
                    if not fenced:
                        _refuse_live_leader(conn, where)
                key = _load_key(conn, create=not readonly)
        except psycopg.Error as exc:
            raise StoreError(f"state store {where}: {first_line(exc)}") from None
        pool: ConnectionPool[Any] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            timeout=CONNECT_TIMEOUT * 2,
            open=False,
            name="chanops-state",
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
        except PoolTimeout:
            pool.close()
            raise StoreError(f"state store {where}: no connection within the timeout") from None
        return cls(dsn, pool, key, readonly=readonly, fenced=fenced)

    # -- reading -------------------------------------------------------------------------

    def hmac(self, value: str) -> str:
        return hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def records(self) -> dict[str, Record]:
        rows = self._run(lambda c: _rows(c, "SELECT * FROM connections", ()))
        return {row["name"]: row_to_record(row) for row in rows}

    def get(self, name: str) -> Record | None:
        rows = self._run(lambda c: _rows(c, "SELECT * FROM connections WHERE name = %s", (name,)))
        return row_to_record(rows[0]) if rows else None

    def get_many(self, names: Iterable[str]) -> dict[str, Record | None]:
        wanted = list(names)
        rows = self._run(
            lambda c: _rows(c, "SELECT * FROM connections WHERE name = ANY(%s)", (wanted,))
        )
        found = {row["name"]: row_to_record(row) for row in rows}
        return {name: found.get(name) for name in wanted}

    # -- writing -------------------------------------------------------------------------

    def put(self, record: Record) -> Record:
        from chanops.state.store import _now

        record = replace(record, updated_at=_now())

        def write(conn: psycopg.Connection[Any]) -> None:
            if record.connection_id is not None:
                # A platform id belongs to one name: a rename of the manifest moves it.
                conn.execute(
                    "DELETE FROM connections WHERE connection_id = %s AND name != %s",
                    (record.connection_id, record.name),
                )
            conn.execute(_UPSERT_RECORD, record_row(record))

        self._write(write)
        return record

    def update(self, name: str, change: Callable[[Record], Record]) -> Record | None:
        current = self.get(name)
        if current is None:
            return None
        return self.put(change(current))

    def clear_intent(self, name: str) -> Record | None:
        return self.update(name, lambda r: replace(r, intent=None))

    def forget(self, name: str) -> None:
        self._write(lambda c: c.execute("DELETE FROM connections WHERE name = %s", (name,)))

    def put_many(self, records: list[Record]) -> None:
        """Insert records in one transaction (`chanops state migrate`)."""

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                cur.executemany(_UPSERT_RECORD, [record_row(r) for r in records])

        self._write(write)

    # -- what replicas share beyond records ----------------------------------------------

    def record_webhook(self, received_by: str) -> None:
        """A standby got a verified git push delivery: the leader fetches (`take_webhooks`)."""
        self._run(
            lambda c: c.execute(
                "INSERT INTO webhook_requests (received_by) VALUES (%s)", (received_by,)
            )
        )

    def take_webhooks(self) -> int:
        """Deliveries recorded by standbys since the last call (consumed, fenced)."""
        counted: list[int] = []

        def take(conn: psycopg.Connection[Any]) -> None:
            cur = conn.execute("DELETE FROM webhook_requests RETURNING id")
            counted.append(len(cur.fetchall()))

        self._write(take)
        return counted[0]

    def append_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Append a batch of the history and trim it (one fenced transaction)."""
        rows = history.encode(events)
        if not rows:
            return

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                cur.executemany(history.PG_APPEND, rows)
            conn.execute(history.PG_TRIM, (history.HISTORY_SIZE,))

        self._write(write)

    def events(self) -> list[dict[str, Any]]:
        """The shared event history, oldest first (what a standby's /status shows)."""
        rows = self._run(lambda c: _rows(c, history.PG_READ, (history.HISTORY_SIZE,)))
        return history.decode(row["event"] for row in rows)

    def is_empty(self) -> bool:
        rows = self._run(lambda c: _rows(c, "SELECT 1 AS one FROM connections LIMIT 1", ()))
        return not rows

    def set_key(self, key: bytes) -> None:
        """Replace the HMAC key (`chanops state migrate` carries SQLite's over)."""
        self._write(
            lambda c: c.execute(
                "INSERT INTO hmac_key (id, key) VALUES (1, %s) "
                "ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key",
                (key.hex(),),
            )
        )
        self._key = key

    # -- the OAuth token set: outside the fence, like SQLite's outside the writer lock ---

    def tokens(self) -> StoredTokens | None:
        rows = self._run(lambda c: _rows(c, "SELECT * FROM oauth_tokens WHERE id = 1", ()))
        if not rows:
            return None
        return StoredTokens.from_row(rows[0])

    def save_tokens(self, tokens: StoredTokens, *, login: bool = False) -> StoredTokens:
        def save(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            with conn.transaction():
                cur = conn.execute(
                    "SELECT generation, login FROM oauth_tokens WHERE id = 1 FOR UPDATE"
                )
                row = cur.fetchone()
                generation = (row[0] if row else 0) + 1
                login_generation = generation if login else (row[1] if row else 0)
                conn.execute(_SAVE_TOKENS, (*_token_values(tokens), generation, login_generation))
            return generation, login_generation

        generation, login_generation = self._run(save)
        return replace(tokens, generation=generation, login=login_generation)

    # -- plumbing --------------------------------------------------------------------------

    def _write(self, body: Callable[[psycopg.Connection[Any]], object]) -> None:
        if self.readonly:
            raise StoreError(f"state store {self.location} is open read-only")

        def transaction(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                if self.fenced:
                    term = self.fence
                    if term is None:
                        raise Fenced(
                            f"state store {self.location}: not the leader; a standby writes nothing"
                        )
                    conn.execute("SELECT chanops_fence(%s, %s)", (term.holder, term.epoch))
                body(conn)

        self._run(transaction)

    def _run(self, body: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`body` on a pooled connection; a connection the server dropped is retried once.

        Each body is idempotent (an upsert, a delete, a read), and a fenced one checks
        the fence again, so running it a second time after a broken connection is safe.
        """
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._pool.connection(timeout=self.wait) as conn:
                    return body(conn)
            except Fenced:
                raise
            except psycopg.OperationalError as exc:
                if attempt == ATTEMPTS or not _connection_lost(exc):
                    raise StoreError(f"state store {self.location}: {first_line(exc)}") from None
                # The server ended sessions (a restart, pg_terminate_backend): the other
                # idle connections are likely dead too; replace them before the retry.
                with contextlib.suppress(psycopg.Error, PoolTimeout):
                    self._pool.check()
            except PoolTimeout:
                raise StoreError(
                    f"state store {self.location}: no database connection available"
                ) from None
            except psycopg.Error as exc:
                kind = Fenced if exc.sqlstate == FENCED_SQLSTATE else StoreError
                raise kind(f"state store {self.location}: {first_line(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SAVE_TOKENS = """
    INSERT INTO oauth_tokens (id, platform_url, client_id, access_token, refresh_token,
        scope, issued_at, expires_at, generation, login, updated_at)
    VALUES (1, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
    ON CONFLICT (id) DO UPDATE SET platform_url = EXCLUDED.platform_url,
        client_id = EXCLUDED.client_id, access_token = EXCLUDED.access_token,
        refresh_token = EXCLUDED.refresh_token, scope = EXCLUDED.scope,
        issued_at = EXCLUDED.issued_at, expires_at = EXCLUDED.expires_at,
        generation = EXCLUDED.generation, login = EXCLUDED.login, updated_at = now()
"""


def _token_values(tokens: StoredTokens) -> tuple[Any, ...]:
    return (
        tokens.platform_url,
        tokens.client_id,
        tokens.access_token,
        tokens.refresh_token,
        tokens.scope,
        tokens.issued_at,
        tokens.expires_at,
    )


def _rows(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> list[Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _connection_lost(exc: psycopg.OperationalError) -> bool:
    """The server ended the session (restart, pg_terminate_backend): worth one retry."""
    sqlstate = getattr(exc, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def _version(conn: psycopg.Connection[Any]) -> int:
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def _newer(where: str, version: int) -> StoreError:
    return StoreError(
        f"state store {where} has schema version {version}, newer than this chanops "
        f"understands ({PG_SCHEMA_VERSION}); upgrade chanops"
    )


def _check_version(conn: psycopg.Connection[Any], where: str) -> None:
    version = _version(conn)
    if version > PG_SCHEMA_VERSION:
        raise _newer(where, version)
    if version < PG_SCHEMA_VERSION:
        raise StoreError(
            f"state store {where} has schema version {version}; a writer (chanops run, "
            "chanops apply) upgrades it first"
        )


def _migrate(conn: psycopg.Connection[Any], where: str) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = _version(conn)
        if version > PG_SCHEMA_VERSION:
            raise _newer(where, version)
        while version < PG_SCHEMA_VERSION:
            conn.execute(PG_MIGRATIONS[version].encode())
            version += 1
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))


def _refuse_live_leader(conn: psycopg.Connection[Any], where: str) -> None:
    view = lease.current(conn)
    if view is not None and view.remaining > 0:
        raise LeaseHeld(where, view.holder or "?", view.epoch)


def _load_key(conn: psycopg.Connection[Any], *, create: bool) -> bytes:
    if create:
        conn.execute(
            "INSERT INTO hmac_key (id, key) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
            (secrets.token_bytes(32).hex(),),
        )
    row = conn.execute("SELECT key FROM hmac_key WHERE id = 1").fetchone()
    if row is None:
        # A read-only reader of a store nothing was written to: no stored HMAC to match.
        return secrets.token_bytes(32)
    return bytes.fromhex(row[0])
