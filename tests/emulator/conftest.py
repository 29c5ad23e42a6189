"""One emulator process per module for the API rule tests (each test makes its own
connections, so tests do not see each other's writes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.emulator import EmulatorProcess, start_emulator


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    tmp: Path = tmp_path_factory.mktemp("emu")
    # 0.1: jobs last long enough (~0.35 s) to observe "still running" reliably
    with start_emulator(tmp, time_scale=0.1) as e:
        yield e
