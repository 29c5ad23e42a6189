"""Crash chaos (issue 7): the daemon SIGKILLed mid-reconcile never loses or doubles a connection.

The quick form kills 5 times; the long form (30 kills) is benchmarks/chaos.py and the
`slow` test below. The deterministic test pins the crash window the chaos run found:
a create whose answer was lost when the process died, followed by a manifest edit.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from chanops.state.store import Intent, StateStore
from daemon.helpers import manifest, write_atomic
from reliability.chaos import crash_chaos
from reliability.helpers import SECRET, SECRET_ENV, find_leaks, run_once
from support.emulator import EmulatorProcess


def _assert_clean(report_ok: bool, summary: object, outputs: list[str]) -> None:
    assert report_ok, summary
    assert not find_leaks([SECRET], {f"output{i}": o.encode() for i, o in enumerate(outputs)})
    for out in outputs:
        assert "Traceback" not in out


def test_five_sigkills_lose_and_double_nothing(tmp_path: Path) -> None:
    report = crash_chaos(tmp_path, connections=300, kills=5, seed=7)
    _assert_clean(report.ok, report.summary(), report.outputs)
    assert report.check is not None
    assert len(report.check.by_name) == 300 + 3  # the manifests plus the UI-made ones


@pytest.mark.slow
def test_thirty_sigkills_lose_and_double_nothing(tmp_path: Path) -> None:
    report = crash_chaos(tmp_path, connections=300, kills=30, seed=11)
    _assert_clean(report.ok, report.summary(), report.outputs)


def test_create_lost_in_a_crash_is_adopted_after_a_rename(
    tmp_path: Path, emulator: EmulatorProcess
) -> None:
    """The create landed, the process died before recording its id, then the file changed.

    The pending intent remembers the name the create sent, so the next reconcile adopts
    the connection it made (and renames it) instead of creating a second one.
    """
    root, state = tmp_path / "m", tmp_path / "state" / "state.db"
    write_atomic(root / "a.yaml", manifest("a", secret_env=SECRET_ENV))
    code, _, out = run_once(emulator, root, state)
    assert code == 0, out
    [made] = emulator.admin.connections()
    # Rewind the store to "intent recorded, create sent, answer never recorded".
    store = StateStore.open(state)
    try:
        record = store.get("a")
        assert record is not None and record.connection_id == made["id"]
        store.put(
            replace(
                record,
                connection_id=None,
                version=None,
                intent=Intent("create", idempotency_key="lost-answer", display_name="a"),
            )
        )
    finally:
        store.close()
    write_atomic(root / "a.yaml", manifest("a", display="a renamed", secret_env=SECRET_ENV))
    code, _, out = run_once(emulator, root, state)
    assert code == 0, out
    after = emulator.admin.connections()
    assert [(c["id"], c["name"]) for c in after] == [(made["id"], "a renamed")], out
    assert SECRET not in out
