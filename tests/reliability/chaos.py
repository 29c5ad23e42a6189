"""Crash chaos: SIGKILL the daemon at random moments while it reconciles a faulty platform.

Shared by tests/reliability/test_crash_chaos.py (quick form, 5 kills) and
benchmarks/chaos.py (long form, 30 kills). One run:

1. an emulator (no faults) gets a few connections "made in the UI" (unmanaged);
2. it is restarted on the same database with `--faults` (default error_rate=0.2,
   latency=30ms): errors and dropped answers both before and after the write lands;
3. `chanops run` starts on `connections` manifests and is SIGKILLed after a random
   delay, `kills` times, each time restarted on the same state database; before each
   restart a random fifth of the manifests is renamed, so every life has writes in
   flight when the kill lands (creates in the first lives, PATCHes in the later ones);
4. a last daemon runs until a full reconcile reports converged, then stops cleanly;
5. `chanops run --once` (still against the faulty platform) must report converged;
6. the emulator restarts without faults and the platform is judged: every manifest has
   exactly one connection, the unmanaged ones are byte-for-byte as they were, nothing
   was deleted (the emulator counts DELETE requests).
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.helpers import DaemonProcess, wait_until
from reliability.helpers import (
    PlatformCheck,
    check_platform,
    create_unmanaged,
    edit_manifest,
    run_once,
    start_daemon,
    write_manifests,
)
from support.emulator import EmulatorProcess

DEFAULT_FAULTS = "error_rate=0.2,latency=30ms"


@dataclass
class ChaosReport:
    connections: int
    kills: int
    faults: str
    kill_delays: list[float] = field(default_factory=list)
    created_before_kill: list[int] = field(default_factory=list)
    converge_seconds: float = 0.0
    once_exit: int = -1
    once_converged: bool = False
    check: PlatformCheck | None = None
    deletes: int = 0
    logs: list[Path] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.check is not None
            and self.check.ok
            and self.deletes == 0
            and self.once_exit == 0
            and self.once_converged
        )

    def summary(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "kills": self.kills,
            "faults": self.faults,
            "kill_delays_s": [round(d, 2) for d in self.kill_delays],
            "connection_events_before_each_kill": self.created_before_kill,
            "converge_after_last_restart_s": round(self.converge_seconds, 2),
            "once_exit": self.once_exit,
            "once_converged": self.once_converged,
            "missing": len(self.check.missing) if self.check else None,
            "doubled": len(self.check.doubled) if self.check else None,
            "unmanaged_changed": len(self.check.unmanaged_changed) if self.check else None,
            "stray": len(self.check.stray) if self.check else None,
            "deletes": self.deletes,
            "ok": self.ok,
        }


def _converged(d: DaemonProcess, after: int) -> dict[str, Any] | None:
    for e in d.events()[after:]:
        if e["event"] == "reconcile.completed" and e.get("kind") == "full" and e.get("converged"):
            return e
    return None


def crash_chaos(
    tmp: Path,
    *,
    connections: int = 300,
    kills: int = 5,
    faults: str = DEFAULT_FAULTS,
    seed: int = 7,
    min_delay: float = 0.3,
    max_delay: float = 3.0,
    unmanaged: int = 3,
    converge_timeout: float = 300.0,
) -> ChaosReport:
    rng = random.Random(seed)
    report = ChaosReport(connections=connections, kills=kills, faults=faults)
    root = tmp / "connections.d"
    names = write_manifests(root, connections)
    display = {n: n for n in names}  # what each connection must be called in the end
    state = tmp / "state" / "state.db"
    emu = EmulatorProcess(tmp / "emu", time_scale=0.002)
    emu.start()
    try:
        ui_made = create_unmanaged(emu, unmanaged)
        emu.stop()
        emu.faults = f"{faults},seed={seed}"
        emu.start()
        for i in range(kills):
            d = start_daemon(tmp, emu, root, name=f"daemon-kill{i:02}", state=state)
            report.logs.append(d.log_path)
            delay = rng.uniform(min_delay, max_delay)
            time.sleep(delay)
            assert d.proc is not None
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
            report.kill_delays.append(delay)
            report.outputs.append(d.output())
            # How far it got (informational: kills land before, during and after creates).
            report.created_before_kill.append(
                sum(1 for e in d.events() if e["event"].startswith("connection."))
            )
            for name in rng.sample(names, max(1, connections // 5)):
                display[name] = f"{name}-v{i + 1}"
                edit_manifest(root, name, display[name])
        d = start_daemon(tmp, emu, root, name="daemon-final", state=state)
        report.logs.append(d.log_path)
        t0 = time.monotonic()
        try:
            wait_until(
                lambda: _converged(d, 0), timeout=converge_timeout, what="converged full reconcile"
            )
            report.converge_seconds = time.monotonic() - t0
        finally:
            d.stop(timeout=60)
            report.outputs.append(d.output())
        code, events, output = run_once(emu, root, state)
        report.outputs.append(output)
        report.once_exit = code
        report.once_converged = any(
            e["event"] == "reconcile.completed" and e.get("converged") for e in events
        )
        stats = emu.admin.stats()
        report.deletes = stats.get("DELETE /api/v1/connections/{id}", 0)
        emu.stop()
        emu.faults = None  # judge the platform through a fault-free emulator
        emu.start()
        report.check = check_platform(emu, display.values(), ui_made)
    finally:
        emu.stop()
    return report
