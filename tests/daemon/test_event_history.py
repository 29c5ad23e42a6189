"""The event history /status and the status page show is kept in the state store
(chanops.state.history): a restarted daemon on SQLite shows the previous run's events.
(The replicas of a PostgreSQL store share it: tests/ha/test_replicas.py.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
