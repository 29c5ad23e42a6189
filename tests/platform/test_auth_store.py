"""The OAuth token set in the state store: atomic, durable, beside a daemon's writer lock."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from chanops.errors import StoreError
from chanops.state.store import SCHEMA_VERSION, StateStore
from chanops.state.tokens import StoredTokens, load_tokens, save_tokens


def _tokens(access: str = "at-1", refresh: str | None = "rt-1") -> StoredTokens:
    now = time.time()
    return StoredTokens(
        platform_url="https://ws.example.com",
        client_id="chanops",
        access_token=access,
        refresh_token=refresh,
        scope="api",
        issued_at=now,
        expires_at=now + 3600,
    )


def test_a_new_store_has_the_token_table_and_no_tokens(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.db") as store:
        assert SCHEMA_VERSION >= 2
        assert store.tokens() is None


def test_save_then_load_round_trips_and_counts_generations(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path) as store:
        first = store.save_tokens(_tokens(), login=True)
        second = store.save_tokens(_tokens("at-2", "rt-2"))
        loaded = store.tokens()
    assert (first.generation, first.login) == (1, 1)
    assert (second.generation, second.login) == (2, 1)  # a refresh keeps the login
    assert loaded == second
    assert loaded is not None and loaded.refresh_token == "rt-2"


def test_tokens_are_written_beside_a_daemon_holding_the_writer_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path):  # the daemon: holds the lock for as long as it runs
        reader = StateStore.open(path, readonly=True)
        try:
            saved = reader.save_tokens(_tokens("at-login"), login=True)
        finally:
            reader.close()
        assert load_tokens(path) == saved


def test_the_repr_of_a_token_set_holds_no_token() -> None:
    text = repr(_tokens("access-SECRET", "refresh-SECRET"))
    assert "SECRET" not in text
    assert "chanops" in text


def test_the_token_table_stays_in_the_0600_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path) as store:
        store.save_tokens(_tokens("at-mode", "rt-mode"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for extra in path.parent.iterdir():
        assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0, extra


def test_no_store_means_no_tokens_and_saving_needs_the_table(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    assert load_tokens(missing) is None
    import sqlite3

    bare = tmp_path / "bare.db"
    sqlite3.connect(bare).close()
    with pytest.raises(StoreError, match="no token table yet"):
        save_tokens(bare, _tokens())
