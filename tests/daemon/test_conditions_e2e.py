"""Typed conditions end to end: a real emulator and `chanops run`, read over `/status`
and through `chanops status` (table and JSON) while the daemon runs.

Three connections: one that converges (Ready), a Shopify one nobody installed yet
(AwaitingMarketplaceSetup) and an Amazon one the platform refuses to create because the
account has no Amazon driver installed (Stalled, reason DriverNotInstalled).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.helpers import DaemonProcess, chanops_launcher, manifest, wait_until, write_atomic
from support.emulator import EmulatorProcess, start_emulator

SECRET = "s3cr3t-conditions-5b1d"
FIELDS = {"type", "status", "reason", "message", "lastTransitionTime"}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def emu_without_amazon(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with start_emulator(
        tmp_path / "emulator", time_scale=0.002, drivers=["shopware6", "shopify"]
    ) as e:
        yield e


def conditions_of(d: DaemonProcess, name: str) -> dict[str, dict[str, str]]:
    (entry,) = [c for c in d.http("/status").json()["connections"] if c["name"] == name]
    return {c["type"]: c for c in entry["conditions"]}


def summary(conds: dict[str, dict[str, str]]) -> dict[str, tuple[str, str]]:
    return {t: (c["status"], c["reason"]) for t, c in conds.items()}


def chanops_status(
    emu: EmulatorProcess, d: DaemonProcess, *args: str
) -> subprocess.CompletedProcess[str]:
    cmd = [
        *chanops_launcher(),
        "status",
        *args,
        "--manifests",
        str(d.manifests),
        "--platform",
        emu.url,
        "--token",
        emu.token,
        "--state",
        str(d.state),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=d.env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_status_shows_ready_stalled_and_awaiting_marketplace_setup(
    tmp_path: Path,
    emu_without_amazon: EmulatorProcess,
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    emu = emu_without_amazon
    root = tmp_path / "connections.d"
    write_atomic(root / "good.yaml", manifest("good", display="Good"))
    write_atomic(root / "sfy.yaml", manifest("sfy", driver="shopify", display="Not installed"))
    write_atomic(root / "amz.yaml", manifest("amz", driver="amazon", display="Amazon DE"))
    d = make_daemon(emu, root, env={"SW_SECRET": SECRET}).start()

    def settled() -> dict[str, dict[str, dict[str, str]]] | None:
        found = {n: conditions_of(d, n) for n in ("good", "sfy", "amz")}
        return found if "Stalled" in found["amz"] and "Ready" in found["good"] else None

    found = wait_until(settled, timeout=20, what="the connections' conditions")
    assert summary(found["good"]) == {"Ready": ("True", "ReconciliationSucceeded")}
    assert summary(found["sfy"]) == {
        "AwaitingMarketplaceSetup": ("True", "AwaitingMarketplaceSetup"),
        "Ready": ("False", "AwaitingMarketplaceSetup"),
    }
    assert summary(found["amz"]) == {
        "Ready": ("False", "DriverNotInstalled"),
        "Stalled": ("True", "DriverNotInstalled"),
    }
    stalled = found["amz"]["Stalled"]
    assert "amazon" in stalled["message"].lower()  # the platform's own words
    for conds in found.values():
        for c in conds.values():
            assert set(c) == FIELDS
            assert RFC3339_UTC.match(c["lastTransitionTime"]), c
            assert c["message"] and SECRET not in c["message"]

    # The same objects through `chanops status --format json`, beside the running daemon.
    rows = json.loads(chanops_status(emu, d, "--format", "json").stdout)
    by_name = {r["name"]: {c["type"]: c for c in r["conditions"]} for r in rows}
    assert by_name["amz"]["Stalled"] == stalled
    assert by_name["sfy"] == found["sfy"]
    # The table: one line per condition with type, status, reason, age and message.
    table = chanops_status(emu, d).stdout
    first, second = table.split("\n\n", 1)
    assert first.splitlines()[0].split()[-1] == "READY"
    amz_row = next(line for line in first.splitlines() if line.startswith("amz "))
    assert amz_row.rstrip().endswith("False (DriverNotInstalled)")
    assert second.splitlines()[0].split() == [
        "NAME",
        "CONDITION",
        "STATUS",
        "REASON",
        "AGE",
        "MESSAGE",
    ]
    stalled_line = next(line for line in table.splitlines() if "Stalled" in line)
    assert re.search(r"^amz\s+Stalled\s+True\s+DriverNotInstalled\s+\d+[smhd]\s+\S", stalled_line)
    assert re.search(r"(?m)^good\s+Ready\s+True\s+ReconciliationSucceeded\s+\d+[smhd]", second)
    assert SECRET not in table

    # A refusal is parked until its manifest changes. The change is refused again: the
    # status stays True, so the transition time stays what it was.
    mark = d.mark()
    write_atomic(root / "amz.yaml", manifest("amz", driver="amazon", display="Amazon DE 2"))
    d.wait_event(
        lambda e: e["event"] == "connection.failed" and e.get("connection") == "amz",
        after=mark,
        what="the refused create again",
    )

    def retried() -> dict[str, dict[str, str]] | None:
        conds = conditions_of(d, "amz")
        return conds if "Stalled" in conds and "Reconciling" not in conds else None

    again = wait_until(retried, timeout=10, what="amz stalled again")
    assert again["Stalled"]["lastTransitionTime"] == stalled["lastTransitionTime"]
    # Logged on the transition only: Stalled came to hold once, at info.
    events: list[dict[str, Any]] = [
        e
        for e in d.events()
        if e["event"] == "connection.condition" and e.get("connection") == "amz"
    ]
    assert [(e["condition"], e["status"], e["level"]) for e in events if e["level"] == "info"] == [
        ("Stalled", "True", "info")
    ]
    assert d.stop() == 0
