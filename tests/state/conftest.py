"""The store's tests run against both backends: `store_location` is a SQLite path or a
fresh PostgreSQL database (tests/support/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.postgres import fresh_database


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    with fresh_database() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    if request.param == "sqlite":
        yield tmp_path / "state" / "state.db"
        return
    with fresh_database() as dsn:
        yield dsn
