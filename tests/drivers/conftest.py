"""One emulator process per test module (each test makes connections of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.emulator import EmulatorProcess, start_emulator


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    tmp: Path = tmp_path_factory.mktemp("emu")
    with start_emulator(tmp, time_scale=0.01) as e:
        yield e
