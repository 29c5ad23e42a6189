"""`chanops state migrate`: a SQLite store copied into an empty PostgreSQL store."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from chanops.state.postgres import PostgresStore
from chanops.state.store import Intent, Record, StateStore
from chanops.state.tokens import StoredTokens
from daemon.helpers import chanops_launcher


def _migrate(source: Path, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*chanops_launcher(), "state", "migrate", "--from", str(source), "--to", target],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_copies_records_key_and_tokens_then_refuses_a_non_empty_target(
    tmp_path: Path, pg_dsn: str
) -> None:
    source = tmp_path / "state.db"
    with StateStore.open(source) as old:
        digest = old.hmac("the-secret-value")
        records = [
            Record(name="a", driver="shopware6", connection_id=1, secret_hmacs={"/p": digest}),
            Record(
                name="b",
                driver="amazon",
                intent=Intent("create", idempotency_key="idem-b", display_name="B"),
            ),
        ]
        for record in records:
            old.put(record)
        old.save_tokens(
            StoredTokens("https://p.example", "cid", "at", "rt", "s", 1.0, 2.0), login=True
        )
        old.append_events([{"event": "connection.created", "connection": "a"}])
    done = _migrate(source, pg_dsn)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Copied 2 records, the token set, and the HMAC key from ")
    with PostgresStore.open(pg_dsn) as new:
        assert new.hmac("the-secret-value") == digest  # no secret reads as changed
        moved = new.records()
        assert {n: replace(r, updated_at="") for n, r in moved.items()} == {
            r.name: r for r in records
        }
        assert moved["b"].intent is not None and moved["b"].intent.idempotency_key == "idem-b"
        tokens = new.tokens()
        assert tokens is not None and tokens.refresh_token == "rt"
        assert new.events() == [{"event": "connection.created", "connection": "a"}]

    again = _migrate(source, pg_dsn)
    assert again.returncode == 1
    assert again.stderr.strip().count("\n") == 0
    assert "is not empty" in again.stderr and "nothing was written" in again.stderr


def test_migrate_refuses_a_target_that_is_not_postgresql(tmp_path: Path) -> None:
    source = tmp_path / "state.db"
    StateStore.open(source).close()
    done = _migrate(source, str(tmp_path / "other.db"))
    assert done.returncode == 1
    assert "is not a PostgreSQL DSN" in done.stderr
    assert "Traceback" not in done.stderr
