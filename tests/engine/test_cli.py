"""The engine's commands as a user runs them: real `chanops` subprocesses, real emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chanops.engine.plan import Plan
from chanops.manifests import load_manifests
from chanops.state.store import StateStore
from engine.helpers import ENV, write_manifest
from support.emulator import EmulatorProcess, start_emulator

CHANOPS = str(Path(sys.executable).parent / "chanops")


def chanops(
    emu: EmulatorProcess, root: Path, *args: str, check_rc: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    env.update(ENV)
    cmd = [
        CHANOPS,
        *args,
        "--manifests",
        str(root),
        "--platform",
        emu.url,
        "--token",
        emu.token,
        "--state",
        str(root.parent / "state.db"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


def test_plan_apply_status_export_round_trip(emulator: EmulatorProcess, tmp_path: Path) -> None:
    root = tmp_path / "connections.d"
    write_manifest(root, "shop-de", settings="    klarna: true\n")
    write_manifest(root, "tb", "tradebyte", enabled=False)
    write_manifest(root, "sfy", "shopify", display_name="Shopify Store")
    unmanaged = emulator.admin.marketplace_install("actindo-pos", "POS Berlin")

    text = chanops(emulator, root, "plan", "--detailed-exitcode", check_rc=2).stdout
    assert '+ connection "shop-de"' in text
    assert "credentials.secretAccessKey = (sensitive value)" in text
    assert "sfy: AwaitingMarketplaceSetup" in text
    assert "POS Berlin" in text  # the unmanaged section
    # Klarna turned on at create: the vendor's procedure syncs after it.
    assert "Plan: 2 to create, 1 to disable, 1 to sync. (1 unmanaged)" in text
    assert "# shop-de will be synced (the vendor's procedure requires a sync" in text
    assert ENV["SW_SECRET"] not in text

    as_json = json.loads(chanops(emulator, root, "plan", "--format", "json", check_rc=0).stdout)
    plan = Plan.from_json(as_json)
    assert Plan.from_json(plan.to_json()) == plan
    assert plan.to_json() == as_json
    md = chanops(emulator, root, "plan", "--format", "markdown", check_rc=0).stdout
    assert "```diff" in md and "| id | driver | status | name |" in md

    targeted = chanops(emulator, root, "plan", "--target", "tb", check_rc=0).stdout
    assert "shop-de" not in targeted and '+ connection "tb"' in targeted

    applied = chanops(emulator, root, "apply", "--yes", check_rc=0).stdout
    assert "Apply complete: 4 succeeded, 0 failed, 1 waiting." in applied
    assert (
        "No changes." in chanops(emulator, root, "plan", "--detailed-exitcode", check_rc=0).stdout
    )

    rows = json.loads(chanops(emulator, root, "status", "--format", "json", check_rc=0).stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["tb"]["desired"] == by_name["tb"]["actual"] == "inactive"
    held, ready = by_name["sfy"]["conditions"]
    assert (held["type"], held["status"], held["reason"]) == (
        "AwaitingMarketplaceSetup",
        "True",
        "AwaitingMarketplaceSetup",
    )
    assert (ready["type"], ready["status"], ready["reason"]) == (
        "Ready",
        "False",
        "AwaitingMarketplaceSetup",
    )
    assert held["lastTransitionTime"].endswith("Z") and held["message"]
    assert by_name["shop-de"]["last_sync_job"] is not None
    table = chanops(emulator, root, "status", check_rc=0).stdout
    assert "NAME" in table and "shop-de" in table

    out = tmp_path / "exported"
    chanops(emulator, root, "export", "--out", str(out), "--unmanaged-only", check_rc=0)
    (exported,) = out.iterdir()
    text = exported.read_text()
    assert f"connectionId: {unmanaged}" in text
    assert load_manifests([out]).ok, load_manifests([out]).diagnostics
    all_out = tmp_path / "all"
    chanops(emulator, root, "export", "--out", str(all_out), check_rc=0)
    shop = (all_out / "shop-de.yaml").read_text()
    assert "secretRef" in shop and "# Secret access key" in shop
    assert load_manifests([all_out]).ok


def test_sync_and_usage_errors(emulator: EmulatorProcess, tmp_path: Path) -> None:
    root = tmp_path / "connections.d"
    write_manifest(root, "a")
    chanops(emulator, root, "apply", "--yes", check_rc=0)
    done = chanops(emulator, root, "sync", "a", "--wait", "--timeout", "60s", check_rc=0)
    assert "a: sync succeeded" in done.stdout
    unknown = chanops(emulator, root, "sync", "nope", check_rc=1)
    assert "nope: no connection known" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    # A daemon holds the store: plan still works (read-only), apply is refused by name.
    with StateStore.open(root.parent / "state.db"):
        chanops(emulator, root, "plan", "--detailed-exitcode", check_rc=0)
        locked = chanops(emulator, root, "apply", "--yes", check_rc=1)
        assert f"locked by process {os.getpid()}" in locked.stderr
    bad = chanops(emulator, root, "plan", "--selector", "novalue", check_rc=1)
    assert "expected key=value" in bad.stderr
    # A platform error is one line, exit 1.
    env_bad = subprocess.run(
        [
            CHANOPS,
            "plan",
            "--manifests",
            str(root),
            "--platform",
            emulator.url,
            "--token",
            "x",
            "--state",
            str(tmp_path / "s.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert env_bad.returncode == 1
    # --token on a command line also earns a warning (other users can read argv).
    lines = env_bad.stderr.strip().splitlines()
    assert [line for line in lines if not line.startswith("Warning: --token")] == [
        "Error: forbidden: the bearer token is not valid for this account"
    ]
    assert len(lines) == 2


@pytest.mark.parametrize(
    "window",
    [
        # the create request is at the platform (held by the latency fault)
        "POST /api/v1/connections",
        # the create has landed and the settings patch (the second step) is in flight
        "PATCH /api/v1/connections/{id}",
    ],
)
def test_apply_killed_after_create_reached_the_platform_never_duplicates(
    tmp_path: Path, window: str
) -> None:
    root = tmp_path / "connections.d"
    write_manifest(root, "crashy", settings="    klarna: true\n")
    with start_emulator(tmp_path / "emu", faults="latency=150ms") as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
        env.update(ENV)
        args = [
            CHANOPS,
            "apply",
            "--yes",
            "--manifests",
            str(root),
            "--platform",
            emu.url,
            "--token",
            emu.token,
            "--state",
            str(tmp_path / "state.db"),
        ]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if emu.admin.stats().get(window, 0) >= 1:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the create never reached the emulator")
            proc.send_signal(signal.SIGKILL)  # right after the create reached the platform
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        time.sleep(0.5)  # let the emulator finish the request it had received
        rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        connections = emu.admin.connections()
        assert [c["name"] for c in connections] == ["crashy"]  # exactly one
        assert connections[0]["settings"] == {"klarna": True}
        again = subprocess.run(
            [*args[:1], "plan", "--detailed-exitcode", *args[3:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stdout + again.stderr


def test_plan_and_apply_load_a_large_root_in_worker_processes(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """Past BACKGROUND_MIN_BYTES the commands parse in forked workers while they list the
    platform; the answer must be the one an in-process load gives, errors included."""
    root = tmp_path / "connections.d"
    comment = "# " + "x" * 78 + "\n"
    for f in range(20):
        docs = []
        for d in range(5):
            name = f"big-{f:02}-{d}"
            write_manifest(root, name)
            docs.append((root / f"{name}.yaml").read_text())
            (root / f"{name}.yaml").unlink()
        # ~14 KB of comments a file: the root passes 256 KiB with only 100 connections.
        (root / f"batch-{f:02}.yaml").write_text(comment * 180 + "---\n".join(docs))
    (root / "zz-broken.yaml").write_text("apiVersion: chanops/v1\nkind: [unclosed\n")
    total = sum(p.stat().st_size for p in root.iterdir())
    from chanops.manifests import load as load_module

    assert total > load_module.BACKGROUND_MIN_BYTES

    proc = chanops(emulator, root, "plan", "--log-level", "debug", check_rc=1)
    assert "Plan: 100 to create." in proc.stdout
    assert f"{root / 'zz-broken.yaml'}:3:1: error: invalid YAML" in proc.stderr
    loaded = [json.loads(line) for line in proc.stderr.splitlines() if "manifests.loaded" in line]
    cores = min(len(os.sched_getaffinity(0)), 8)
    assert loaded and loaded[0]["workers"] == (cores if cores > 1 else 0)
    assert loaded[0]["manifests"] == 100 and loaded[0]["files"] == 21

    (root / "zz-broken.yaml").unlink()
    chanops(emulator, root, "apply", "--yes", check_rc=0)
    assert len(emulator.admin.connections()) == 100
    chanops(emulator, root, "plan", "--detailed-exitcode", check_rc=0)
