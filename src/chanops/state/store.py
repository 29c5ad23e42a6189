"""The state store: chanops's memory of what it manages (the inventory).

SQLite in WAL mode. One writer at a time, enforced by `fcntl.flock` on a lock file
beside the database (`state.db.lock`, holding the writer's pid); a second writer gets
`StoreLocked` naming that pid. Readers (`chanops plan`, `chanops status`) open the
database read-only without the lock: WAL lets them read a consistent snapshot while a
daemon writes, and they never block it.

Per connection the store keeps: manifest name, platform id, driver, source file,
fingerprint of the last-applied spec, the last-applied *non-secret* spec (the base of
the three-way settings diff), a keyed HMAC per secret pointer (never a secret), the
platform `version` seen after our last write (drift detection), the deletion policy
(needed once the manifest is gone), last sync job and outcome, conditions, and the
pending intent recorded before each write.

The HMAC key is generated once into `state.key` beside the database with mode 0600.

File modes: the store's directory is 0700 and its files (database, -wal, -shm, key,
lock) 0600, whatever the umask: the database names every managed connection and holds
the HMACs of their secrets. The writer creates them so and, at open, tightens looser
ones left by an older chanops or a copy, with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from chanops.condition import Condition, decode_conditions, encode_conditions
from chanops.errors import StoreError, StoreLocked
from chanops.state._history import SQLITE_HISTORY_DDL, HistoryTable
from chanops.state.tokens import OAUTH_TABLE_DDL, TokenTable

# MIGRATIONS[n] takes the schema from version n to n+1. Never edit a released entry:
# append a new one, so every existing store upgrades in order.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE connections (
        name             TEXT PRIMARY KEY,
        connection_id    INTEGER,
        driver           TEXT NOT NULL,
        source_file      TEXT NOT NULL DEFAULT '',
        fingerprint      TEXT NOT NULL DEFAULT '',
        applied_spec     TEXT NOT NULL DEFAULT '{}',
        secret_hmacs     TEXT NOT NULL DEFAULT '{}',
        version          INTEGER,
        deletion_policy  TEXT NOT NULL DEFAULT 'Delete',
        last_sync_job    INTEGER,
        last_sync_outcome TEXT,
        last_sync_at     TEXT,
        conditions       TEXT NOT NULL DEFAULT '[]',
        intent           TEXT,
        updated_at       TEXT NOT NULL DEFAULT ''
    );
    CREATE UNIQUE INDEX connections_id ON connections(connection_id)
        WHERE connection_id IS NOT NULL;
    """,
    OAUTH_TABLE_DDL,  # 1 -> 2: the OAuth token set (chanops.state.tokens)
    SQLITE_HISTORY_DDL,  # 2 -> 3: the event history (chanops.state._history)
)
SCHEMA_VERSION = len(MIGRATIONS)


IntentOp = Literal["create", "update", "delete", "enable", "disable"]


@dataclass(frozen=True, slots=True)
class Intent:
    """A write about to happen, recorded before the call and cleared after it.

    After a crash the next reconcile finds it and resolves it by observing: a create
    whose connection exists is adopted (found by `display_name`, the name it sent),
    otherwise repeated with the same `idempotency_key`, so it is never duplicated.
    """

    op: IntentOp
    connection_id: int | None = None
    idempotency_key: str | None = None  # create: the key the platform deduplicates by
    display_name: str | None = None  # create: the name sent, whatever the manifest says now

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Intent:
        data = json.loads(text)
        return cls(
            op=data["op"],
            connection_id=data.get("connection_id"),
            idempotency_key=data.get("idempotency_key"),
            display_name=data.get("display_name"),
        )


@dataclass(frozen=True, slots=True)
class Record:
    """What the store remembers about one managed connection (pure data)."""

    name: str
    driver: str
    connection_id: int | None = None  # None while a create intent is pending
    source_file: str = ""
    fingerprint: str = ""
    applied_spec: Mapping[str, Any] = field(default_factory=dict)  # non-secret only
    secret_hmacs: Mapping[str, str] = field(default_factory=dict)  # pointer -> HMAC
    version: int | None = None  # platform version after our last write
    deletion_policy: str = "Delete"
    last_sync_job: int | None = None
    last_sync_outcome: str | None = None
    last_sync_at: str | None = None
    conditions: tuple[Condition, ...] = ()  # typed; older stores' strings read as held
    intent: Intent | None = None  # recorded before a write, cleared after
    updated_at: str = ""


def _plain(value: Any) -> Any:
    """Mappings (LazyJSON, MappingProxy) to dicts so json.dumps takes them."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LazyJSON(Mapping[str, Any]):
    """A JSON object decoded on first use.

    A plan of 10,000 converged connections reads every record but, on the planner's
    fast path, never looks at the last-applied body or the HMACs: decoding them lazily
    saves most of the cost of reading the store.
    """

    __slots__ = ("_data", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._data: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self._text) if self._text != "{}" else {}
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return repr(self._decoded())


# The columns of a record, in the order of `record_row`: both backends store the same
# row (chanops.state.postgres reads and writes it with these two functions).
RECORD_COLUMNS = (
    "name",
    "connection_id",
    "driver",
    "source_file",
    "fingerprint",
    "applied_spec",
    "secret_hmacs",
    "version",
    "deletion_policy",
    "last_sync_job",
    "last_sync_outcome",
    "last_sync_at",
    "conditions",
    "intent",
    "updated_at",
)


_INSERT_RECORD = (
    f"INSERT OR REPLACE INTO connections ({', '.join(RECORD_COLUMNS)}) "  # noqa: S608 (constants)
    f"VALUES ({', '.join('?' for _ in RECORD_COLUMNS)})"
)


def record_row(record: Record) -> tuple[Any, ...]:
    """A record as the values of `RECORD_COLUMNS` (JSON text for the structured fields)."""
    return (
        record.name,
        record.connection_id,
        record.driver,
        record.source_file,
        record.fingerprint,
        json.dumps(_plain(record.applied_spec), sort_keys=True),
        json.dumps(_plain(record.secret_hmacs), sort_keys=True),
        record.version,
        record.deletion_policy,
        record.last_sync_job,
        record.last_sync_outcome,
        record.last_sync_at,
        encode_conditions(record.conditions),
        record.intent.to_json() if record.intent is not None else None,
        record.updated_at,
    )


def read_conditions(name: str, text: str, updated_at: str) -> tuple[Condition, ...]:
    """The `conditions` column; an older store's bare names read as held since the row
    was written. A value no type matches (a newer chanops wrote it) names the row."""
    try:
        return decode_conditions(text, legacy_time=updated_at)
    except ValueError as exc:
        raise StoreError(
            f"state store: connection {name!r} has unreadable conditions: {exc}"
        ) from exc


def row_to_record(row: Mapping[str, Any] | sqlite3.Row) -> Record:
    """A row read by either backend (columns by name) as a Record."""
    conditions = row["conditions"]
    return Record(
        name=row["name"],
        driver=row["driver"],
        connection_id=row["connection_id"],
        source_file=row["source_file"],
        fingerprint=row["fingerprint"],
        applied_spec=LazyJSON(row["applied_spec"]),
        secret_hmacs=LazyJSON(row["secret_hmacs"]),
        version=row["version"],
        deletion_policy=row["deletion_policy"],
        last_sync_job=row["last_sync_job"],
        last_sync_outcome=row["last_sync_outcome"],
        last_sync_at=row["last_sync_at"],
        conditions=read_conditions(row["name"], conditions, row["updated_at"]),
        intent=Intent.from_json(row["intent"]) if row["intent"] else None,
        updated_at=row["updated_at"],
    )


def _read_only(path: Path, *, shared_close: bool = False) -> sqlite3.Connection:
    """A read-only connection to the store's database.

    `shared_close`: a worker thread's reader is closed by the owner at `close()`, which
    sqlite3's same-thread check would refuse; it is still used by one thread only.
    """
    conn = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=not shared_close
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _newer(path: Path, version: int) -> StoreError:
    text = f"schema version {version}, newer than this chanops understands ({SCHEMA_VERSION})"
    return StoreError(f"state store {path} has {text}; upgrade chanops")


def _key_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".db") + ".key")


def tighten_modes(path: Path) -> list[str]:
    """Make the store's directory 0700 and its existing files 0600; what was changed.

    A sticky directory such as /tmp is left as it is: it is meant to be shared.

    Each change is logged as a warning (`state.mode_tightened`): a looser mode means
    someone else on the host could have read the store. A directory or file chanops
    may not chmod (another owner) is reported and left as it is.
    """
    changed: list[str] = []
    targets = [(path.parent, 0o700), *((f, 0o600) for f in StateStore.files(path))]
    for target, wanted in targets:
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except OSError:
            continue  # not created yet
        if not mode & 0o077:
            continue
        if target.is_dir() and mode & stat.S_ISVTX:
            # A sticky directory (/tmp) is shared by design: making it 0700 would lock
            # every other user out of it. The store's own files are 0600 regardless.
            continue
        try:
            os.chmod(target, mode & wanted)
            outcome = f"{target}: mode {mode:04o} -> {mode & wanted:04o}"
        except OSError as exc:
            outcome = f"{target}: mode {mode:04o}, cannot tighten: {exc.strerror}"
        changed.append(outcome)
        import structlog  # here: plan imports the store before its workers need structlog

        structlog.get_logger("chanops.state").warning(
            "state.mode_tightened",
            path=str(target),
            message=f"the state store was accessible to other users ({outcome})",
        )
    return changed


class StateStore(TokenTable, HistoryTable):  # tokens, events: state.tokens, state.history
    """Open with `StateStore.open(path)` (writer, locked) or `open(path, readonly=True)`."""

    def __init__(
        self, path: Path, conn: sqlite3.Connection | None, key: bytes, lock_fd: int | None
    ) -> None:
        self.path = path
        # One connection per thread, never shared: `_conn` belongs to the thread that
        # opened the store (the only writer); any other thread that reads (the engine
        # reads memory in a worker thread while the platform is listed) gets its own
        # read-only connection (`_reader`). WAL lets them read while the writer writes.
        self._conn = conn
        self._owner = threading.get_ident()
        self._readers = threading.local()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._key = key
        self._lock_fd = lock_fd
        self.readonly = lock_fd is None

    @property
    def location(self) -> str:
        return str(self.path)

    # -- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, *, readonly: bool = False) -> StateStore:
        path = Path(path)
        if readonly:
            return cls._open_readonly(path)
        try:
            # 0700 for the new directories (mkdir applies the umask on top: never looser).
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create state directory {path.parent}: {exc.strerror}"
            ) from None
        lock_fd = cls._lock(path)
        try:
            tighten_modes(path)
            # Created empty with 0600 before SQLite opens it: SQLite gives the -wal and
            # -shm files it creates later the database file's mode.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            key = cls._load_key(path, create=True)
            conn = sqlite3.connect(path, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode (only an OS crash can
            # lose the last commits), which is the failure the intents protect against.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            cls._migrate(conn, path)
        except sqlite3.Error as exc:
            os.close(lock_fd)
            raise StoreError(f"state store {path}: {exc}") from None
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, conn, key, lock_fd)

    @staticmethod
    def files(path: Path) -> tuple[Path, ...]:
        """The database, its WAL and shared memory, the HMAC key and the lock file."""
        return (
            path,
            Path(f"{path}-wal"),
            Path(f"{path}-shm"),
            _key_path(path),
            path.with_name(path.name + ".lock"),
        )

    @classmethod
    def _open_readonly(cls, path: Path) -> StateStore:
        if not path.exists():
            # Nothing applied yet: empty memory. An ephemeral key is correct here: with
            # no stored HMACs every secret reads as "to be set" whatever the key.
            return cls(path, None, secrets.token_bytes(32), None)
        try:
            key = cls._load_key(path, create=False)
        except StoreError:
            key = secrets.token_bytes(32)
        try:
            conn = _read_only(path)
            version = cls._version(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"state store {path}: {exc}") from None
        if version > SCHEMA_VERSION:
            raise _newer(path, version)
        if version < SCHEMA_VERSION:
            # Migrating needs the writer lock; a read-only caller sees an empty memory
            # rather than misreading an old schema.
            conn.close()
            return cls(path, None, key, None)
        return cls(path, conn, key, None)

    @staticmethod
    def _lock(path: Path) -> int:
        lock_path = path.with_name(path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid_text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                pid = int(pid_text) if pid_text.isdigit() else None
            finally:
                os.close(fd)
            raise StoreLocked(str(path), pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    @staticmethod
    def _load_key(path: Path, *, create: bool) -> bytes:
        key_path = _key_path(path)
        try:
            return bytes.fromhex(key_path.read_text(encoding="ascii").strip())
        except FileNotFoundError:
            if not create:
                raise StoreError(f"no HMAC key at {key_path}") from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read HMAC key {key_path}: {exc}") from None
        key = secrets.token_bytes(32)
        # O_EXCL + 0600 from the start: the key is never readable by others, not even
        # for the instant between create and chmod.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key.hex() + "\n")
        return key

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
        ).fetchone()
        if not exists:
            return 0
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    @classmethod
    def _migrate(cls, conn: sqlite3.Connection, path: Path) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = cls._version(conn)
        if version > SCHEMA_VERSION:
            raise _newer(path, version)
        while version < len(MIGRATIONS):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            version += 1

    # -- reading ---------------------------------------------------------------

    def hmac(self, value: str) -> str:
        """Keyed digest of a secret: comparable across runs, useless to a reader."""
        return hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def export_key(self) -> bytes:
        """The HMAC key itself: `chanops state migrate` carries it to the new store."""
        return self._key

    def records(self) -> dict[str, Record]:
        """Every record by manifest name (the planner's memory)."""
        conn = self._reading()
        if conn is None:
            return {}
        try:
            rows = conn.execute("SELECT * FROM connections").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"state store {self.path}: {exc}") from None
        return {row["name"]: row_to_record(row) for row in rows}

    def get(self, name: str) -> Record | None:
        conn = self._reading()
        if conn is None:
            return None
        row = conn.execute("SELECT * FROM connections WHERE name = ?", (name,)).fetchone()
        return row_to_record(row) if row else None

    def get_many(self, names: Iterable[str]) -> dict[str, Record | None]:
        """The named records (None where none): a local `get` each (PostgreSQL: one query)."""
        return {name: self.get(name) for name in names}

    # -- writing ---------------------------------------------------------------

    def _reading(self) -> sqlite3.Connection | None:
        """This thread's connection for reading: the owner's, or a read-only one of its own."""
        if self._conn is None or threading.get_ident() == self._owner:
            return self._conn
        reader: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if reader is None:
            try:
                reader = _read_only(self.path, shared_close=True)
            except sqlite3.Error as exc:
                raise StoreError(f"state store {self.path}: {exc}") from None
            self._readers.conn = reader
            with self._readers_lock:
                self._all_readers.append(reader)
        return reader

    def _writer(self) -> sqlite3.Connection:
        if self._conn is None or self.readonly:
            raise StoreError(f"state store {self.path} is open read-only")
        return self._conn

    def put(self, record: Record) -> Record:
        """Insert or replace one record (one transaction)."""
        conn = self._writer()
        record = replace(record, updated_at=_now())
        try:
            with self._tx(conn):
                if record.connection_id is not None:
                    # A platform id belongs to one name: a rename of the manifest moves it.
                    conn.execute(
                        "DELETE FROM connections WHERE connection_id = ? AND name != ?",
                        (record.connection_id, record.name),
                    )
                conn.execute(_INSERT_RECORD, record_row(record))
        except sqlite3.Error as exc:
            raise StoreError(f"state store {self.path}: {exc}") from None
        return record

    def update(self, name: str, change: Callable[[Record], Record]) -> Record | None:
        """Store `change(record)` for an existing record; None if there is none.

        `change` is typically `lambda r: dataclasses.replace(r, intent=None)`: typed
        field by field, unlike keyword arguments passed through.
        """
        current = self.get(name)
        if current is None:
            return None
        return self.put(change(current))

    def clear_intent(self, name: str) -> Record | None:
        """The write the intent announced is settled (done, or refused): forget it."""
        return self.update(name, lambda r: replace(r, intent=None))

    def forget(self, name: str) -> None:
        conn = self._writer()
        try:
            with self._tx(conn):
                conn.execute("DELETE FROM connections WHERE name = ?", (name,))
        except sqlite3.Error as exc:
            raise StoreError(f"state store {self.path}: {exc}") from None

    @staticmethod
    @contextlib.contextmanager
    def _tx(conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- closing ---------------------------------------------------------------

    def close(self) -> None:
        with self._readers_lock:
            readers, self._all_readers = self._all_readers, []
        for reader in readers:
            reader.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the fd releases the flock
            self._lock_fd = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
