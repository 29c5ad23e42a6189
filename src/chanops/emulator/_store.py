"""The emulated platform's state and operations, over SQLite.

Jobs have no background worker: a job row stores when it was created and how long its
queued and running phases last (already scaled by --time-scale), and its state and
progress are derived on every read. So state survives restarts and a stopped emulator
"catches up" when it starts again. The effects of finished jobs (a deleted connection
disappearing, the marketplace data model becoming known, price rules locking) are
derived the same way.

Every public method is one SQLite transaction; the app calls them from the event loop
without awaiting in between, so requests never interleave inside one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from chanops.emulator import _account as account
from chanops.emulator import rules
from chanops.emulator._database import open_database
from chanops.emulator._wire import DURATIONS, JobView, connection_wire, encode_json
from chanops.emulator.rules import RuleViolation

__all__ = ["LIST_SQL", "Platform", "Problem", "encode_json", "problem"]

IDEMPOTENCY_TTL_S = 24 * 3600.0

# A page of connections: the columns a wire form is made of, in the order `connection_wire`
# reads them.
LIST_SQL = (
    "SELECT id, name, driver, status, has_order_errors, created_at, updated_at, version, "
    "credentials, settings, automation, authorized FROM connections WHERE id > ? "
    "ORDER BY id LIMIT ?"
)
# Encoded wire forms remembered by `Platform.list_connections_json`; past this many the
# cache starts over (a bound on memory, nothing more).
WIRE_CACHE_MAX = 100_000


class Problem(Exception):
    """A rule violation on its way to becoming an error response."""

    def __init__(self, violation: RuleViolation) -> None:
        super().__init__(violation.message)
        self.violation = violation


def problem(status: int, code: str, message: str, field: str | None = None) -> Problem:
    return Problem(RuleViolation(status, code, message, field))


@dataclass(frozen=True, slots=True)
class _Editable:
    """The fields of a connection a PATCH may change, as stored (decoded JSON)."""

    name: str
    credentials: dict[str, Any]
    settings: dict[str, Any]
    automation: dict[str, Any]


class Platform:
    """The emulated platform over one SQLite database."""

    def __init__(
        self,
        db: str,
        *,
        time_scale: float = 1.0,
        drivers: Sequence[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.time_scale = time_scale
        unknown = [d for d in drivers or () if d not in rules.DRIVERS]
        if unknown:
            raise ValueError(
                f"unknown driver(s) {', '.join(unknown)}; known: {', '.join(rules.ALL_DRIVERS)}"
            )
        self.drivers: tuple[str, ...] = tuple(drivers) if drivers else rules.ALL_DRIVERS
        self.clock = clock
        self.conn = open_database(db)
        account.create_tables(self.conn)
        self._wire_cache: dict[int, tuple[tuple[Any, ...], bytes]] = {}

    def close(self) -> None:
        self.conn.close()

    # -- transactions ---------------------------------------------------------------

    @contextmanager
    def tx(self) -> Iterator[float]:
        """One write transaction; yields `now` and settles finished deletes first."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            now = self.clock()
            self.conn.execute(
                "DELETE FROM connections WHERE gone_at IS NOT NULL AND gone_at <= ?", (now,)
            )
            yield now
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def idempotent(
        self,
        key: str | None,
        request: str,
        run: Callable[[float], tuple[int, Any]],
    ) -> tuple[int, Any, bool]:
        """Run `run` once per key: a repeated key returns the first (status, body).

        Returns (status, body, replayed). Only successful responses are remembered, so
        a request that failed a rule can be corrected and retried with the same key.
        """
        with self.tx() as now:
            if key is not None:
                row = self.conn.execute(
                    "SELECT request, status, body FROM idempotency WHERE key = ?", (key,)
                ).fetchone()
                if row is not None:
                    if row["request"] != request:
                        raise problem(
                            422,
                            "idempotency_key_reused",
                            "this Idempotency-Key was already used for a different request",
                        )
                    return int(row["status"]), json.loads(row["body"]), True
            try:
                status, body = run(now)
            except Problem:
                raise
            if key is not None and status < HTTPStatus.MULTIPLE_CHOICES:
                self.conn.execute(
                    "DELETE FROM idempotency WHERE created_at < ?", (now - IDEMPOTENCY_TTL_S,)
                )
                self.conn.execute(
                    "INSERT INTO idempotency (key, request, status, body, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key, request, status, json.dumps(body), now),
                )
            return status, body, False

    # -- reads ------------------------------------------------------------------------

    def _row(self, cid: int) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM connections WHERE id = ?", (cid,)).fetchone()
        if row is None:
            raise problem(404, "not_found", f"connection {cid} does not exist")
        return row  # type: ignore[no-any-return]

    def _job(self, row: sqlite3.Row, now: float) -> JobView:
        created = float(row["created_at"])
        started = created + float(row["queued_s"])
        return JobView(
            id=int(row["id"]),
            kind=str(row["kind"]),
            connection_id=int(row["connection_id"]),
            created_at=created,
            started_at=started,
            finished_at=started + float(row["running_s"]),
            fails=bool(row["fails"]),
            snapshot=json.loads(row["snapshot"]),
            now=now,
        )

    def _jobs_of(self, cid: int, now: float) -> list[JobView]:
        rows = self.conn.execute(
            "SELECT * FROM jobs WHERE connection_id = ? ORDER BY id", (cid,)
        ).fetchall()
        return [self._job(r, now) for r in rows]

    def _synced(self, cid: int, now: float) -> bool:
        return any(
            j.succeeded for j in self._jobs_of(cid, now) if j.kind in ("initial_sync", "sync")
        )

    def _locked(self, cid: int, driver: str, now: float) -> dict[str, set[str]]:
        locked: dict[str, set[str]] = {}
        for j in self._jobs_of(cid, now):
            if j.kind in ("initial_sync", "sync") and j.succeeded:
                for dotted in rules.DRIVERS[driver].locking_settings:
                    items = j.snapshot.get(dotted)
                    if isinstance(items, list):
                        locked.setdefault(dotted, set()).update(rules.canonical(i) for i in items)
        return locked

    def wire_connection(self, row: sqlite3.Row) -> dict[str, Any]:
        return connection_wire(
            (
                row["id"],
                row["name"],
                row["driver"],
                row["status"],
                row["has_order_errors"],
                row["created_at"],
                row["updated_at"],
                row["version"],
                row["credentials"],
                row["settings"],
                row["automation"],
                row["authorized"],
            )
        )

    def _page(self, after: int, limit: int) -> tuple[list[tuple[Any, ...]], int | None]:
        """One page of raw rows (`LIST_SQL` columns) and the id to continue after, if any."""
        with self.tx():
            cur = self.conn.cursor()
            cur.row_factory = None
            rows: list[tuple[Any, ...]] = cur.execute(LIST_SQL, (after, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (int(rows[-1][0]) if more and rows else None)

    def list_connections(
        self, *, after: int, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        rows, last = self._page(after, limit)
        return [connection_wire(r) for r in rows], last

    def list_connections_json(self, *, after: int, limit: int) -> tuple[list[bytes], int | None]:
        """`list_connections` with each item already encoded (`encode_json`).

        A row's wire form is a pure function of its `LIST_SQL` columns, so the encoded form
        is remembered per id together with the row it was made from, and reused only
        while the row read now is equal to that one: any change to the row (through
        the API or not) makes a fresh encoding.
        """
        rows, last = self._page(after, limit)
        cache = self._wire_cache
        out: list[bytes] = []
        for row in rows:
            hit = cache.get(row[0])
            if hit is not None and hit[0] == row:
                out.append(hit[1])
                continue
            encoded = encode_json(connection_wire(row))
            if len(cache) >= WIRE_CACHE_MAX:
                cache.clear()
            cache[row[0]] = (row, encoded)
            out.append(encoded)
        return out, last

    def get_connection(self, cid: int) -> dict[str, Any]:
        with self.tx():
            return self.wire_connection(self._row(cid))

    def list_jobs(
        self, *, connection_id: int | None, state: str | None, after: int, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        with self.tx() as now:
            sql = "SELECT * FROM jobs WHERE id > ?"
            args: list[Any] = [after]
            if connection_id is not None:
                sql += " AND connection_id = ?"
                args.append(connection_id)
            sql += " ORDER BY id"
            items: list[dict[str, Any]] = []
            last: int | None = None
            # state is derived, so filter in Python; stop one past the page to know if
            # there is a next page
            for row in self.conn.execute(sql, args):
                view = self._job(row, now)
                if state is not None and view.state != state:
                    continue
                if len(items) == limit:
                    return items, last
                items.append(view.wire())
                last = view.id
            return items, None

    def get_job(self, jid: int) -> dict[str, Any]:
        with self.tx() as now:
            row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (jid,)).fetchone()
            if row is None:
                raise problem(404, "not_found", f"job {jid} does not exist")
            return self._job(row, now).wire()

    def list_drivers(self) -> list[dict[str, Any]]:
        out = []
        for name in self.drivers:
            d = rules.DRIVERS[name]
            out.append(
                {
                    "name": d.name,
                    "title": d.title,
                    "creatable": d.creatable,
                    "secret_fields": rules.secret_paths(d.credentials),
                    "immutable_fields": [f.name for f in d.credentials if f.immutable],
                    "oauth_fields": [f.name for f in d.credentials if f.oauth],
                }
            )
        return out

    # -- writes (call inside `idempotent` / `tx`) -------------------------------------

    def _start_job(
        self, cid: int, kind: str, now: float, settings: Mapping[str, Any], creds: Mapping[str, Any]
    ) -> JobView:
        queued, running = DURATIONS[kind]
        snapshot: dict[str, Any] = {}
        row = self.conn.execute("SELECT driver FROM connections WHERE id = ?", (cid,)).fetchone()
        if row is not None:
            for dotted in rules.DRIVERS[str(row["driver"])].locking_settings:
                value = rules.get_path(settings, dotted)
                if value is not None:
                    snapshot[dotted] = value
        fails = kind != "delete" and rules.sync_would_fail(creds)
        cur = self.conn.execute(
            "INSERT INTO jobs (kind, connection_id, created_at, queued_s, running_s, fails, "
            "snapshot) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                cid,
                now,
                queued * self.time_scale,
                running * self.time_scale,
                int(fails),
                json.dumps(snapshot),
            ),
        )
        jid = cur.lastrowid
        assert jid is not None
        return self._job(
            self.conn.execute("SELECT * FROM jobs WHERE id = ?", (jid,)).fetchone(), now
        )

    def _running_sync(self, cid: int, now: float) -> JobView | None:
        for j in reversed(self._jobs_of(cid, now)):
            if j.kind in ("initial_sync", "sync") and not j.done:
                return j
        return None

    def _require_driver(self, driver: str) -> rules.DriverRules:
        if driver not in rules.DRIVERS:
            raise problem(422, "unknown_driver", f"driver {driver!r} does not exist", "driver")
        if driver not in self.drivers:
            raise problem(
                422,
                "driver_not_installed",
                f"driver {driver!r} is not installed in this account; install it from the "
                "Omni-Channel marketplace first",
                "driver",
            )
        return rules.DRIVERS[driver]

    def create(
        self, body: Mapping[str, Any], now: float, *, marketplace: bool = False
    ) -> tuple[int, Any]:
        name = body["name"]
        driver = body["driver"]
        creds = body.get("credentials") or {}
        automation = body.get("automation") or {}
        d = self._require_driver(driver)
        if "settings" in body:
            raise problem(
                422,
                "settings_after_create",
                "settings cannot be sent when creating a connection; set them with PATCH "
                "after it exists",
                "settings",
            )
        if not d.creatable and not marketplace:
            raise problem(422, "not_creatable", d.how_created, "driver")
        bad = rules.check_automation(automation)
        if bad:
            raise Problem(bad)
        if not marketplace:
            bad = rules.oauth_written(driver, creds)
            if bad:
                raise Problem(bad)
            bad = rules.validate_credentials(driver, creds)
            if bad:
                raise Problem(bad)
        bad = account.check(self.conn, driver, creds, None, marketplace=marketplace)
        if bad:
            raise Problem(bad)
        has_oauth = any(f.oauth for f in d.credentials)
        cur = self.conn.execute(
            "INSERT INTO connections (name, driver, status, created_at, updated_at, version, "
            "credentials, settings, automation, authorized) VALUES (?, ?, 'active', ?, ?, 1, ?, "
            "'{}', ?, ?)",
            (
                name,
                driver,
                now,
                now,
                json.dumps(creds),
                json.dumps({**rules.DEFAULT_AUTOMATION, **automation}),
                0 if has_oauth else None,
            ),
        )
        cid = cur.lastrowid
        assert cid is not None
        job = self._start_job(cid, "initial_sync", now, {}, creds)
        return 201, {"connection": self.wire_connection(self._row(cid)), "job": job.wire()}

    def update(
        self, cid: int, patch: Mapping[str, Any], if_match: int | None, now: float
    ) -> tuple[int, Any]:
        row = self._row(cid)
        self._check_updatable(row, patch, if_match)
        before = _Editable(
            name=str(row["name"]),
            credentials=json.loads(row["credentials"]),
            settings=json.loads(row["settings"]),
            automation=json.loads(row["automation"]),
        )
        after = self._patched(cid, str(row["driver"]), before, patch, now)
        if after != before:
            self.conn.execute(
                "UPDATE connections SET name = ?, credentials = ?, settings = ?, automation = ?, "
                "version = version + 1, updated_at = ? WHERE id = ?",
                (
                    after.name,
                    json.dumps(after.credentials),
                    json.dumps(after.settings),
                    json.dumps(after.automation),
                    now,
                    cid,
                ),
            )
            if after.credentials != before.credentials and self._running_sync(cid, now) is None:
                # saving credentials triggers a sync
                self._start_job(cid, "sync", now, after.settings, after.credentials)
        return 200, self.wire_connection(self._row(cid))

    def _check_updatable(
        self, row: sqlite3.Row, patch: Mapping[str, Any], if_match: int | None
    ) -> None:
        """What refuses a PATCH whatever its fields hold: state, version, driver."""
        cid = row["id"]
        if row["status"] == "deleting":
            raise problem(409, "connection_deleting", f"connection {cid} is being deleted")
        if if_match is not None and if_match != int(row["version"]):
            raise problem(
                412,
                "precondition_failed",
                f"connection {cid} is at version {row['version']}, not {if_match}: it changed "
                "since you read it",
            )
        if "driver" in patch and patch["driver"] != str(row["driver"]):
            raise problem(
                422,
                "immutable_field",
                "driver cannot change after the connection is created",
                "driver",
            )

    def _patched(
        self, cid: int, driver: str, before: _Editable, patch: Mapping[str, Any], now: float
    ) -> _Editable:
        """`before` with the merge patch applied, each part checked (credentials first)."""
        credentials = before.credentials
        if "credentials" in patch:
            bad = rules.oauth_written(driver, patch["credentials"])
            if bad:
                raise Problem(bad)
            credentials = rules.merge_patch(before.credentials, patch["credentials"])
            bad = rules.check_immutables(driver, before.credentials, credentials) or (
                rules.validate_credentials(driver, credentials)
                if credentials != before.credentials
                else None
            )
            bad = bad or account.check(self.conn, driver, credentials, cid, marketplace=False)
            if bad:
                raise Problem(bad)
        settings = before.settings
        if "settings" in patch:
            settings = rules.merge_patch(before.settings, patch["settings"])
            bad = (
                rules.check_model_settings(
                    driver, before.settings, settings, self._synced(cid, now)
                )
                or rules.check_locked(driver, settings, self._locked(cid, driver, now))
                or rules.check_locked_unless(driver, settings)
                or rules.check_plugins(
                    driver, before.settings, settings, account.read(self.conn).plugins
                )
            )
            if bad:
                raise Problem(bad)
        automation = before.automation
        if "automation" in patch:
            automation = rules.merge_patch(before.automation, patch["automation"])
            bad = rules.check_automation(automation)
            if bad:
                raise Problem(bad)
            automation = {**rules.DEFAULT_AUTOMATION, **automation}
        name = patch.get("name", before.name)
        return _Editable(name, credentials, settings, automation)

    def account_state(self) -> dict[str, Any]:
        with self.tx():
            return account.read(self.conn).wire()

    def set_account(
        self, plugins: Sequence[str] | None, languages: Sequence[str] | None
    ) -> dict[str, Any]:
        with self.tx():
            return account.write(self.conn, plugins=plugins, languages=languages).wire()

    def set_shop_languages(self, url: str, languages: Sequence[str]) -> dict[str, Any]:
        with self.tx():
            account.set_shop_languages(self.conn, url, languages)
        return {"url": url, "languages": list(languages)}

    def set_status(self, ids: Sequence[int], status: str, now: float) -> tuple[int, Any]:
        rows = [self._row(i) for i in ids]
        for row in rows:
            if row["status"] == "deleting":
                raise problem(
                    409, "connection_deleting", f"connection {row['id']} is being deleted"
                )
        for row in rows:
            if row["status"] != status:
                self.conn.execute(
                    "UPDATE connections SET status = ?, version = version + 1, updated_at = ? "
                    "WHERE id = ?",
                    (status, now, row["id"]),
                )
        return 200, {"items": [self.wire_connection(self._row(i)) for i in ids]}

    def delete(self, cid: int, now: float) -> tuple[int, Any]:
        row = self._row(cid)
        if row["status"] == "deleting":
            for j in reversed(self._jobs_of(cid, now)):
                if j.kind == "delete":
                    return 202, j.wire()
        if row["status"] == "active":
            raise problem(
                409,
                "connection_active",
                f"connection {cid} is active; disable it before deleting it",
            )
        job = self._start_job(cid, "delete", now, {}, {})
        self.conn.execute(
            "UPDATE connections SET status = 'deleting', version = version + 1, updated_at = ?, "
            "gone_at = ? WHERE id = ?",
            (now, job.finished_at, cid),
        )
        return 202, job.wire()

    def sync(self, cid: int, now: float) -> tuple[int, Any]:
        row = self._row(cid)
        if row["status"] != "active":
            raise problem(
                409,
                "connection_inactive" if row["status"] == "inactive" else "connection_deleting",
                f"connection {cid} is {row['status']}; only an active connection can sync",
            )
        running = self._running_sync(cid, now)
        if running is not None:
            return 200, running.wire()
        job = self._start_job(
            cid, "sync", now, json.loads(row["settings"]), json.loads(row["credentials"])
        )
        return 202, job.wire()

    def set_order_errors(self, cid: int, value: bool, now: float) -> tuple[int, Any]:
        row = self._row(cid)
        if bool(row["has_order_errors"]) != value:
            self.conn.execute(
                "UPDATE connections SET has_order_errors = ?, version = version + 1, "
                "updated_at = ? WHERE id = ?",
                (int(value), now, cid),
            )
        return 200, self.wire_connection(self._row(cid))

    def authorize(self, cid: int, now: float) -> tuple[int, Any]:
        row = self._row(cid)
        if row["authorized"] is None:
            raise problem(422, "not_oauth", f"driver {row['driver']} has no authorize (OAuth) flow")
        creds = json.loads(row["credentials"])
        creds["accessToken"] = f"oauth-{cid}-{int(now)}"
        self.conn.execute(
            "UPDATE connections SET authorized = 1, credentials = ?, version = version + 1, "
            "updated_at = ? WHERE id = ?",
            (json.dumps(creds), now, cid),
        )
        return 200, self.wire_connection(self._row(cid))
