"""The state store: records, lock, HMAC key, schema versions, read-only readers."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from chanops.condition import Condition, ConditionStatus, ConditionType
from chanops.errors import StoreError, StoreLocked
from chanops.state.store import SCHEMA_VERSION, Intent, Record, StateStore


def test_records_round_trip_and_forget(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "s" / "state.db") as store:
        rec = Record(
            name="a",
            driver="shopware6",
            connection_id=7,
            source_file="c.d/a.yaml",
            applied_spec={"settings": {"klarna": True}},
            secret_hmacs={"/credentials/x": "ab"},
            version=3,
            conditions=(
                Condition(
                    ConditionType.FROZEN,
                    ConditionStatus.TRUE,
                    "Frozen",
                    "a.yaml fails to load",
                    "2026-12-01T10:00:00Z",
                ),
            ),
            intent=Intent("update"),
        )
        store.put(rec)
        got = store.get("a")
        assert got is not None
        assert replace(got, updated_at="") == rec
        assert store.clear_intent("a").intent is None  # type: ignore[union-attr]
        # A platform id belongs to one name: re-binding it under a new name moves it.
        store.put(Record(name="b", driver="shopware6", connection_id=7))
        assert set(store.records()) == {"b"}
        store.forget("b")
        assert store.records() == {}


def test_hmac_key_is_created_once_with_0600(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path) as store:
        digest = store.hmac("secret")
    key = tmp_path / "state.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "secret" not in key.read_text()
    with StateStore.open(path) as store:
        assert store.hmac("secret") == digest  # same key on reopen
        assert store.hmac("other") != digest
    # Never the secret in the database either.
    with StateStore.open(path) as store:
        store.put(Record(name="a", driver="d", secret_hmacs={"/p": store.hmac("hunter2")}))
    assert b"hunter2" not in path.read_bytes()


def test_second_writer_gets_store_locked_naming_the_pid(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path):
        code = textwrap.dedent(
            f"""
            from chanops.state.store import StateStore
            from chanops.errors import StoreLocked
            try:
                StateStore.open({str(path)!r})
            except StoreLocked as exc:
                print(exc.pid, exc)
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        pid, message = out.split(" ", 1)
        assert int(pid) == os.getpid()
        assert f"process {os.getpid()}" in message
        # Readers need no lock: plan/status work beside a running daemon.
        with StateStore.open(path, readonly=True) as reader:
            assert reader.records() == {}
            with pytest.raises(StoreError):
                reader.put(Record(name="x", driver="d"))
    # Released on close.
    StateStore.open(path).close()


def test_same_process_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path), pytest.raises(StoreLocked):
        StateStore.open(path)


def test_readonly_without_a_store_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none" / "state.db"
    with StateStore.open(path, readonly=True) as store:
        assert store.records() == {}
    assert not path.parent.exists()


def test_schema_is_versioned_and_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore.open(path).close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        StateStore.open(path)


# -- file modes -------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state" / "state.db"
    old = os.umask(0o000)  # the worst case: nothing masked
    try:
        with StateStore.open(path) as store:
            store.put(Record(name="a", driver="shopware6", connection_id=1))
            present = [f for f in StateStore.files(path) if f.exists()]
            assert {f.name for f in present} >= {"state.db", "state.key", "state.db.lock"}
            assert Path(f"{path}-wal").exists()  # WAL mode: written while open
            for f in present:
                assert _mode(f) == 0o600, f
    finally:
        os.umask(old)
    assert _mode(path.parent) == 0o700


def test_looser_modes_are_tightened_at_open_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    import structlog

    from chanops.observability.logging import configure_logging

    path = tmp_path / "state" / "state.db"
    StateStore.open(path).close()
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o644)
    os.chmod(path.with_name("state.key"), 0o640)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging(fmt="json", level="warning")  # process-global: restored below
    try:
        with StateStore.open(path):
            pass
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
    assert _mode(path.parent) == 0o700
    assert _mode(path) == 0o600
    assert _mode(path.with_name("state.key")) == 0o600
    out = capsys.readouterr().out
    assert out.count('"event": "state.mode_tightened"') == 3, out
    assert "0644 -> 0600" in out and "0755 -> 0700" in out


def test_a_store_in_a_shared_sticky_directory_leaves_the_directory_alone(
    tmp_path: Path,
) -> None:
    # `--state /tmp/state.db` once turned /tmp into 0700 (1777 & 0700) for every user.
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    path = shared / "state.db"
    StateStore.open(path).close()
    with StateStore.open(path):
        pass
    assert _mode(shared) == 0o1777
    assert _mode(path) == 0o600
    assert _mode(path.with_name("state.key")) == 0o600


def test_a_reader_changes_no_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.db"
    StateStore.open(path).close()
    os.chmod(path, 0o644)
    with StateStore.open(path, readonly=True):
        pass
    assert _mode(path) == 0o644  # plan writes nothing; the next writer tightens


def test_settings_protect_exactly_the_files_the_store_writes(tmp_path: Path) -> None:
    from chanops.config import state_files

    path = tmp_path / "state.db"
    assert set(state_files(path)) == set(StateStore.files(path)) - {Path(f"{path}.lock")}
