"""Fixtures for the daemon's end-to-end tests (helpers in daemon/helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.helpers import DaemonProcess
from support.emulator import EmulatorProcess, start_emulator


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with start_emulator(tmp_path / "emulator", time_scale=0.002) as e:
        yield e


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def make(emu: EmulatorProcess, manifests: Path, **kw: Any) -> DaemonProcess:
        d = DaemonProcess(tmp_path, manifests=manifests, platform=emu.url, token=emu.token, **kw)
        started.append(d)
        return d

    yield make
    for d in started:
        d.kill()
