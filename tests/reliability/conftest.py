"""Reliability suite fixtures. After every test, search what chanops left in tmp_path.

Every daemon and CLI run of this suite resolves `helpers.SECRET`; its logs, state
databases (with WAL) and outputs live under tmp_path. The emulator's directories are
the platform's side (it stores credentials by design) and secret files are inputs, so
both are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability.helpers import SECRET, find_leaks

PLATFORM_SIDE = {"emu", "emulator", "secrets"}


@pytest.fixture(autouse=True)
def no_secret_left_behind(tmp_path: Path) -> Iterator[None]:
    yield
    artefacts: dict[str, bytes] = {}
    for path in tmp_path.rglob("*"):
        rel = path.relative_to(tmp_path)
        if rel.parts[0] in PLATFORM_SIDE or not path.is_file() or path.is_symlink():
            continue
        artefacts[str(rel)] = path.read_bytes()
    assert find_leaks([SECRET], artefacts) == []
