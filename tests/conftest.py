"""Shared fixtures. Area-specific fixtures live beside their tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.emulator import EmulatorProcess, start_emulator
from support.postgres import pytest_terminal_summary  # noqa: F401  (its one skip line)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """A real `chanops emulator` subprocess on a free loopback port (time scale 0.01)."""
    with start_emulator(tmp_path / "emulator") as emu:
        yield emu
