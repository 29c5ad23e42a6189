"""Manifest edits preempt a full reconcile while it only reads (docs/daemon.md).

`chanops run` as a real subprocess against the real emulator. The daemon converges on a
fast emulator, which is then restarted (same port and database) with `latency=1s` on
every request, so a full reconcile's read phase (it lists the platform) lasts a second.
The tests act once the emulator has received the listing request (its request counters
are taken before the latency), so the edit lands inside the read phase without any
timed assertion; everything asserted is the ORDER of events and the platform's state.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.helpers import DaemonProcess, manifest, wait_until, write_atomic
from reliability.helpers import metric
from support.emulator import EmulatorProcess

SECRET = "sw-secret-preempt-1"
LIST = "GET /api/v1/connections"
NAMES = ("alpha", "bravo", "charlie")

Event = dict[str, Any]


def _lists(emu: EmulatorProcess) -> int:
    return int(emu.admin.stats().get(LIST, 0))


def _index(events: list[Event], pred: Callable[[Event], bool], what: str) -> int:
    for i, e in enumerate(events):
        if pred(e):
            return i
    raise AssertionError(f"no event {what} in {[e['event'] for e in events]}")


def _slow_daemon(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> tuple[DaemonProcess, Path, dict[str, int]]:
    root = tmp_path / "m"
    for name in NAMES:
        write_atomic(root / f"{name}.yaml", manifest(name, secret_env="SW_SECRET"))
    d = make_daemon(emu, root, resync="1h", env={"SW_SECRET": SECRET})
    d.start(wait_reconciled=False)
    done = d.wait_event(
        lambda e: e["event"] == "reconcile.completed" and e.get("kind") == "full", timeout=30
    )
    assert done["converged"], d.output()[-3000:]
    ids = {c["name"]: int(c["id"]) for c in emu.admin.connections()}
    assert set(ids) == set(NAMES)
    # From now on every platform request takes a second (the daemon is idle meanwhile:
    # resync 1h, no scheduled syncs, so it sends nothing while the emulator restarts).
    emu.stop()
    emu.faults = "latency=1s"
    emu.start()
    assert _lists(emu) == 0
    return d, root, ids


def _edit_during_full_read(d: DaemonProcess, emu: EmulatorProcess, root: Path) -> int:
    """SIGHUP, wait until the full reconcile lists the platform, edit alpha; the mark."""
    mark = d.mark()
    lists = _lists(emu)
    d.signal(signal.SIGHUP)
    d.wait_event(
        lambda e: e["event"] == "reconcile.started" and e.get("kind") == "full",
        after=mark,
        what="the SIGHUP full reconcile started",
    )
    wait_until(lambda: _lists(emu) > lists or None, what="the full reconcile listing")
    write_atomic(root / "alpha.yaml", manifest("alpha", display="Alpha 2", secret_env="SW_SECRET"))
    return mark


def _check_preempted(d: DaemonProcess, mark: int, ids: dict[str, int]) -> tuple[str, int]:
    """The order: started(full) < preempted < alpha written < completed(full, same id)."""
    full = d.wait_event(
        lambda e: e["event"] == "reconcile.completed" and e.get("kind") == "full",
        after=mark,
        timeout=30,
        what="the preempted full reconcile completed",
    )
    events = d.events()[mark:]
    rid = full["reconcile_id"]
    started = _index(
        events,
        lambda e: e["event"] == "reconcile.started" and e.get("kind") == "full",
        "reconcile.started kind=full",
    )
    assert events[started]["reconcile_id"] == rid
    assert events[started]["reason"] == "SIGHUP"
    preempted = _index(events, lambda e: e["event"] == "reconcile.preempted", "preempted")
    p = events[preempted]
    assert p["level"] == "info"
    assert (p["kind"], p["reconcile_id"], p["reason"], p["files"]) == ("full", rid, "SIGHUP", 1)
    updated = _index(
        events,
        lambda e: e["event"] == "connection.updated" and e.get("connection") == "alpha",
        "connection.updated alpha",
    )
    completed = events.index(full)
    assert started < preempted < updated < completed
    # The edit was written by its own partial reconcile, once; the full one then found
    # nothing to do (no second write, no failure) and completed under its first id.
    partial = events[updated]["reconcile_id"]
    assert partial != rid
    assert any(
        e["event"] == "reconcile.completed" and e.get("kind") == "partial"
        for e in events[updated:completed]
        if e["reconcile_id"] == partial
    )
    alpha_updates = [
        e for e in events if e["event"] == "connection.updated" and e.get("connection") == "alpha"
    ]
    assert len(alpha_updates) == 1
    assert full["converged"] and full["failed"] == 0 and full["actions"] == 0
    # One reconcile.started per reconcile.completed: the rerun does not announce again.
    assert (
        sum(1 for e in events if e["event"] == "reconcile.started" and e["reconcile_id"] == rid)
        == 1
    )
    assert not any(e["event"] in ("reconcile.failed", "connection.failed") for e in events)
    return rid, completed


def _check_clean(d: DaemonProcess, emu: EmulatorProcess) -> None:
    metrics = d.http("/metrics").text
    # Startup and SIGHUP: two full reconciles, both counted once, as successes.
    assert metric(metrics, "chanops_reconciles_total", kind="full", outcome="success") == 2
    assert metric(metrics, "chanops_reconciles_total", kind="full", outcome="failed") == 0
    assert metric(metrics, "chanops_reconciles_total", kind="partial", outcome="failed") == 0
    assert d.stop() == 0
    events = d.events()
    assert events[-1]["event"] == "daemon.stopped"
    out = d.output()
    assert "Traceback" not in out, out[-3000:]
    assert "never retrieved" not in out, out[-3000:]
    assert SECRET not in out
    assert sum(1 for e in events if e["event"] == "reconcile.started") == sum(
        1 for e in events if e["event"] in ("reconcile.completed", "reconcile.failed")
    )


def test_edit_during_a_full_read_is_written_before_it_completes(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    d, root, ids = _slow_daemon(tmp_path, emu, make_daemon)
    mark = _edit_during_full_read(d, emu, root)
    _check_preempted(d, mark, ids)
    assert emu.admin.connection(ids["alpha"])["name"] == "Alpha 2"
    status = d.http("/status").json()
    assert status["lastReconcile"]["kind"] == "full"
    assert status["lastReconcile"]["converged"]
    _check_clean(d, emu)


def test_a_second_edit_does_not_preempt_the_rerun(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    """Starvation guard: one preemption per full reconcile; later edits wait for it."""
    d, root, ids = _slow_daemon(tmp_path, emu, make_daemon)
    mark = _edit_during_full_read(d, emu, root)
    # The first edit's partial reconcile completes, then the full one lists again:
    # edit bravo while that second listing is in flight.
    d.wait_event(
        lambda e: e["event"] == "reconcile.completed" and e.get("kind") == "partial",
        after=mark,
        timeout=30,
        what="the first edit's partial reconcile",
    )
    wait_until(lambda: _lists(emu) >= 2 or None, what="the rerun listing", timeout=30)
    write_atomic(root / "bravo.yaml", manifest("bravo", display="Bravo 2", secret_env="SW_SECRET"))
    d.wait_event(
        lambda e: e["event"] == "connection.updated" and e.get("connection") == "bravo",
        after=mark,
        timeout=30,
        what="bravo written",
    )
    _, completed = _check_preempted(d, mark, ids)
    events = d.events()[mark:]
    assert sum(1 for e in events if e["event"] == "reconcile.preempted") == 1
    bravo = _index(
        events,
        lambda e: e["event"] == "connection.updated" and e.get("connection") == "bravo",
        "connection.updated bravo",
    )
    assert completed < bravo  # the full reconcile was not postponed a second time
    assert emu.admin.connection(ids["alpha"])["name"] == "Alpha 2"
    assert emu.admin.connection(ids["bravo"])["name"] == "Bravo 2"
    _check_clean(d, emu)
