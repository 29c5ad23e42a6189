"""Fixtures for the replica tests: an emulator, a fresh PostgreSQL database, replicas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ha.helpers import Replicas
from support.emulator import EmulatorProcess, start_emulator
from support.postgres import fresh_database


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    with fresh_database("chanops_ha") as dsn:
        yield dsn


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with start_emulator(tmp_path / "emulator", time_scale=0.002) as e:
        yield e


@pytest.fixture
def replicas(tmp_path: Path, emu: EmulatorProcess, pg_dsn: str) -> Iterator[Replicas]:
    root = tmp_path / "connections.d"
    root.mkdir()
    group = Replicas(tmp_path, emu, pg_dsn, root, env={"SW_SECRET": "s3cr3t-ha-1"})
    yield group
    group.kill_all()
