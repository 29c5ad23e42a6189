"""An edit made while a full resync runs is written before the resync finishes, once.

`chanops run` as a real subprocess against the real emulator. The daemon converges on a
fast emulator, which is then restarted (same port and database) with `latency=1s` on
every request, so a resync's listing lasts a second. The test edits once the emulator
has received the listing request (its request counters are taken before the latency),
so the edit lands inside the resync without any timed assertion; everything asserted is
the ORDER of events and the platform's state. In-process tests of the same guarantee
with the edited name waiting in, or running in, a resync batch: test_workers.py.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.helpers import DaemonProcess, manifest, wait_until, write_atomic
from reliability.helpers import metric
from support.emulator import EmulatorProcess

SECRET = "sw-secret-resync-1"
LIST = "GET /api/v1/connections"
PATCH = "PATCH /api/v1/connections/{id}"
NAMES = ("alpha", "bravo", "charlie")

Event = dict[str, Any]


def _index(events: list[Event], pred: Callable[[Event], bool], what: str) -> int:
    for i, e in enumerate(events):
        if pred(e):
            return i
    raise AssertionError(f"no event {what} in {[e['event'] for e in events]}")


def test_an_edit_during_a_resync_is_written_before_it_ends_and_once(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    root = tmp_path / "m"
    for name in NAMES:
        write_atomic(root / f"{name}.yaml", manifest(name, secret_env="SW_SECRET"))
    d = make_daemon(emu, root, resync="1h", env={"SW_SECRET": SECRET})
    d.start(wait_reconciled=False)
    done = d.wait_event(
        lambda e: e["event"] == "reconcile.completed" and e.get("kind") == "full", timeout=30
    )
    assert done["converged"], d.output()[-3000:]
    alpha = next(int(c["id"]) for c in emu.admin.connections() if c["name"] == "alpha")
    # From now on every platform request takes a second (the daemon is idle meanwhile:
    # resync 1h, no scheduled syncs, so it sends nothing while the emulator restarts).
    emu.stop()
    emu.faults = "latency=1s"
    emu.start()

    mark = d.mark()
    d.signal(signal.SIGHUP)
    started = d.wait_event(
        lambda e: e["event"] == "reconcile.started" and e.get("kind") == "full",
        after=mark,
        what="the SIGHUP resync started",
    )
    wait_until(lambda: emu.admin.stats().get(LIST, 0) > 0 or None, what="the resync's listing")
    write_atomic(root / "alpha.yaml", manifest("alpha", display="Alpha 2", secret_env="SW_SECRET"))

    rid = started["reconcile_id"]
    full = d.wait_event(
        lambda e: e["event"] == "reconcile.completed" and e.get("reconcile_id") == rid,
        after=mark,
        timeout=60,
        what="the resync completed",
    )
    events = d.events()[mark:]
    updated = _index(
        events,
        lambda e: e["event"] == "connection.updated" and e.get("connection") == "alpha",
        "connection.updated alpha",
    )
    assert updated < events.index(full)  # written before the resync finished
    # ... by its own partial reconcile, announced and ended under its own id.
    partial = events[updated]["reconcile_id"]
    assert partial != rid
    assert any(
        e["event"] == "reconcile.started" and e.get("kind") == "partial"
        for e in events[:updated]
        if e.get("reconcile_id") == partial
    )
    # Written once: one event, one PATCH; the resync found nothing left to do.
    alpha_updates = [
        e for e in events if e["event"] == "connection.updated" and e.get("connection") == "alpha"
    ]
    assert len(alpha_updates) == 1
    assert emu.admin.stats().get(PATCH, 0) == 1
    assert full["converged"] and full["failed"] == 0 and full["actions"] == 0
    assert emu.admin.connection(alpha)["name"] == "Alpha 2"
    assert not any(e["event"] in ("reconcile.failed", "connection.failed") for e in events)
    assert not any(e["event"] == "reconcile.preempted" for e in events)  # no such thing now

    metrics = d.http("/metrics").text
    # Startup and SIGHUP: two full reconciles, both counted once, as successes.
    assert metric(metrics, "chanops_reconciles_total", kind="full", outcome="success") == 2
    assert metric(metrics, "chanops_reconciles_total", kind="partial", outcome="success") == 1
    assert d.stop() == 0
    events = d.events()
    assert events[-1]["event"] == "daemon.stopped"
    out = d.output()
    assert "Traceback" not in out and "never retrieved" not in out, out[-3000:]
    assert SECRET not in out
    # Every reconcile.started has exactly one end event.
    assert sum(1 for e in events if e["event"] == "reconcile.started") == sum(
        1 for e in events if e["event"] in ("reconcile.completed", "reconcile.failed")
    )
