"""`plan`, `apply` and `run --once` take the same safety decisions (issue 12, part 1).

The plan posted on a pull request is what reviewers approve, so it must be exactly what
the daemon does. Each scenario builds the same world three times (one emulator per
path, the same manifests applied, then the same damage done to the root) and asks each
path what it decided: `plan --format json` its actions and blocked actions, `apply`
and `run --once` the actions their events report and the guards that held.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.helpers import chanops_launcher
from engine.helpers import ENV, write_manifest
from support.emulator import EmulatorProcess, start_emulator

PATHS = ("plan", "apply", "once")
NAMES = ("alpha", "bravo", "charlie", "delta")
Decisions = tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str, str]]]


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, EmulatorProcess]]:
    """One emulator per path: every path starts from the same platform state."""
    with (
        start_emulator(tmp_path_factory.mktemp("emu-plan")) as a,
        start_emulator(tmp_path_factory.mktemp("emu-apply")) as b,
        start_emulator(tmp_path_factory.mktemp("emu-once")) as c,
    ):
        yield {"plan": a, "apply": b, "once": c}


def _run(emu: EmulatorProcess, world: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    env.update(ENV)
    cmd = [
        *chanops_launcher(),
        *args,
        "--manifests",
        str(world / "connections.d"),
        "--platform",
        emu.url,
        "--token",
        emu.token,
        "--state",
        str(world / "state.db"),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def _events(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _from_events(events: list[dict[str, Any]]) -> Decisions:
    acted = frozenset(
        (e["action"], e["connection"])
        for e in events
        if e["event"].startswith("connection.")
        and e["event"] != "connection.failed"
        and "action" in e
        and e.get("reason") != "disable before delete"
    )
    held = frozenset(
        (e["action"], e["connection"], e["rule"]) for e in events if e["event"] == "guard.blocked"
    )
    return acted, held


def decide(path: str, emu: EmulatorProcess, world: Path) -> Decisions:
    if path == "plan":
        proc = _run(emu, world, "plan", "--format", "json")
        # Exit 1 when a manifest is broken: the plan for the rest is still printed.
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        plan = json.loads(proc.stdout)
        return (
            frozenset((a["kind"], a["name"]) for a in plan["actions"]),
            frozenset((b["kind"], b["name"], b["rule"]) for b in plan["blocked"]),
        )
    if path == "apply":
        proc = _run(emu, world, "apply", "--yes", "--log-level", "info")
        assert "Traceback" not in proc.stderr, proc.stderr
        return _from_events(_events(proc.stderr))
    proc = _run(emu, world, "run", "--once", "--log-format", "json", "--listen", "127.0.0.1:0")
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return _from_events(_events(proc.stdout))


def _remove(root: Path, name: str) -> None:
    (root / f"{name}.yaml").unlink()


def _break_yaml(root: Path, name: str) -> None:
    (root / f"{name}.yaml").write_text("apiVersion: chanops/v1\nkind: [unclosed\n", "utf-8")


def unhealthy_root(root: Path) -> None:
    """One file deleted while another fails to load: the deletion waits."""
    _remove(root, "alpha")
    _break_yaml(root, "bravo")


def became_directory(root: Path) -> None:
    """A manifest file replaced by a directory is broken, not removed."""
    _remove(root, "alpha")
    (root / "alpha.yaml").mkdir()


def became_fifo(root: Path) -> None:
    """A manifest file replaced by a FIFO is broken (and must not hang anything)."""
    _remove(root, "alpha")
    os.mkfifo(root / "alpha.yaml")


def schema_error_and_edit(root: Path) -> None:
    """A schema error freezes its connection; an edit elsewhere still goes through."""
    path = root / "bravo.yaml"
    path.write_text(path.read_text("utf-8") + "  colour: blue\n", "utf-8")
    write_manifest(root, "charlie", display_name="Charlie renamed")


def empty_root(root: Path) -> None:
    """Every file gone: an empty root deletes nothing."""
    for name in NAMES:
        _remove(root, name)


def mass_delete(root: Path) -> None:
    """Two of four deleted, more than the default limit (25 %, at least 1): none is."""
    _remove(root, "alpha")
    _remove(root, "bravo")


def clean_delete(root: Path) -> None:
    """The control: a root that loads cleanly deletes what was removed."""
    _remove(root, "alpha")


SCENARIOS: dict[str, tuple[Callable[[Path], None], Decisions]] = {
    "unhealthy-root": (
        unhealthy_root,
        (
            frozenset(),
            frozenset({("delete", "alpha", "unhealthy-root"), ("delete", "bravo", "frozen")}),
        ),
    ),
    "became-directory": (
        became_directory,
        (frozenset(), frozenset({("delete", "alpha", "frozen")})),
    ),
    "became-fifo": (
        became_fifo,
        (frozenset(), frozenset({("delete", "alpha", "frozen")})),
    ),
    "schema-error-and-edit": (
        schema_error_and_edit,
        (frozenset({("update", "charlie")}), frozenset({("delete", "bravo", "frozen")})),
    ),
    "empty-root": (
        empty_root,
        (
            frozenset(),
            frozenset(("delete", name, "root-unreadable") for name in NAMES),
        ),
    ),
    "mass-delete": (
        mass_delete,
        (
            frozenset(),
            frozenset({("delete", "alpha", "mass-delete"), ("delete", "bravo", "mass-delete")}),
        ),
    ),
    "clean-delete": (clean_delete, (frozenset({("delete", "alpha")}), frozenset())),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_plan_apply_and_daemon_decide_alike(
    scenario: str, emulators: dict[str, EmulatorProcess], tmp_path: Path
) -> None:
    damage, expected = SCENARIOS[scenario]
    decisions: dict[str, Decisions] = {}
    for path in PATHS:
        # Display names unique per scenario: the module's emulators serve every scenario,
        # and a fresh state adopts an unmanaged connection of the same name and driver.
        world = tmp_path / path
        root = world / "connections.d"
        for name in NAMES:
            write_manifest(root, name, display_name=f"{scenario} {name}")
        setup = _run(emulators[path], world, "apply", "--yes")
        assert setup.returncode == 0, setup.stdout + setup.stderr
        damage(root)
        decisions[path] = decide(path, emulators[path], world)
        if (root / "alpha.yaml").is_fifo():
            (root / "alpha.yaml").unlink()  # tmp_path clean-up must not open it
    assert decisions["plan"] == expected, decisions["plan"]
    assert decisions["apply"] == decisions["plan"], (decisions["apply"], decisions["plan"])
    assert decisions["once"] == decisions["plan"], (decisions["once"], decisions["plan"])


def test_scenarios_cover_every_guard_that_protects_a_removal() -> None:
    held = {rule for _, (_, held) in SCENARIOS.values() for _, _, rule in held}
    assert held >= {"frozen", "root-unreadable", "unhealthy-root", "mass-delete"}
