"""The event history /status and the status page show is kept in the state store
(chanops.state._history): a restarted daemon on SQLite shows the previous run's events.
(The replicas of a PostgreSQL store share it: tests/ha/test_replicas.py.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chanops.daemon._status import EventLog
from chanops.daemon.ui._live import reconciles_shown
from daemon.helpers import DaemonProcess, manifest, wait_until, write_atomic
from support.emulator import start_emulator

SECRET = "s3cr3t-history-1"


def test_a_restarted_daemon_shows_the_previous_runs_events(tmp_path: Path) -> None:
    root = tmp_path / "m"
    write_atomic(root / "a.yaml", manifest("a", secret_env="SECRET_A"))
    with start_emulator(tmp_path / "emu") as emu:
        first = DaemonProcess(
            tmp_path, manifests=root, platform=emu.url, token=emu.token, env={"SECRET_A": SECRET}
        )
        first.start()
        try:
            first.wait_event(lambda e: e["event"] == "connection.created")
        finally:
            assert first.stop() == 0
        db = sqlite3.connect(first.state)
        stored = [row[0] for row in db.execute("SELECT event FROM event_history ORDER BY id")]
        db.close()
        # What /status showed, flushed at the stop (daemon.stopped included); no secret.
        assert any('"connection.created"' in e for e in stored)
        assert '"daemon.stopped"' in stored[-1]
        assert not any(SECRET in e for e in stored)

        again = DaemonProcess(
            tmp_path,
            manifests=root,
            platform=emu.url,
            token=emu.token,
            env={"SECRET_A": SECRET},
            name="again",
        )
        again.start()
        try:
            events = wait_until(lambda: again.http("/status").json()["events"], what="events")
            names = [e["event"] for e in events]
            # The previous run's create, its stop, then this run's start, in time order.
            assert "connection.created" in names
            assert names.index("daemon.stopped") < len(names) - 1
            assert "connection.created" in again.http("/ui/connections/a").text
            assert "connection.created" not in [e["event"] for e in again.events()]
        finally:
            assert again.stop() == 0


def _at(second: int) -> str:
    return f"2026-12-02T05:00:{second:02d}.000000Z"


def test_the_event_log_shows_the_stored_history_with_its_unsaved_events() -> None:
    log = EventLog()
    log({"event": "mine", "connection": "a", "timestamp": _at(2)})
    log.replace([{"event": "stored", "connection": "a", "timestamp": _at(1)}])
    assert [e["event"] for e in log.recent] == ["stored", "mine"]  # in time order
    assert [e["event"] for e in log.by_connection["a"]] == ["stored", "mine"]
    batch = log.take()
    assert [e["event"] for e in batch] == ["mine"] and log.take() == []
    log({"event": "later", "timestamp": _at(3)})
    log.give_back(batch)  # the store refused it: it goes before the newer events
    assert [e["event"] for e in log.take()] == ["mine", "later"]


def test_the_last_reconciles_are_this_replicas_and_the_historys_once_each() -> None:
    own = [{"reconcile_id": "r2", "kind": "partial", "finished": _at(5)[:19] + "Z"}]
    history = [
        {"event": "reconcile.started", "reconcile_id": "r1", "reason": "startup"},
        {"event": "reconcile.completed", "reconcile_id": "r1", "kind": "full",
         "converged": True, "actions": 1, "timestamp": _at(3)},
        {"event": "reconcile.failed", "reconcile_id": "r0", "kind": "full",
         "error": "platform unreachable", "timestamp": _at(1)},
        {"event": "reconcile.completed", "reconcile_id": "r2", "timestamp": _at(5)},
    ]  # fmt: skip
    shown = reconciles_shown(own, history)
    assert [r["reconcile_id"] for r in shown] == ["r0", "r1", "r2"]  # r2 once: this one's
    assert shown[0]["result"] == "failed"
    assert shown[1]["result"] == "converged" and shown[1]["reason"] == "startup"
    assert shown[1]["finished"] == "2026-12-02T05:00:03Z"
    assert shown[2] == own[0]
