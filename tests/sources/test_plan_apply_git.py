"""`chanops plan --git` and `chanops apply --git` as a user runs them (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.emulator import EmulatorProcess
from support.git import git

MANIFEST = """\
apiVersion: chanops/v1
kind: Connection
metadata: {name: shop-de}
spec:
  driver: shopware6
  credentials:
    url: https://shop.example.de
    accessKeyId: SWIA1
    secretAccessKey: {secretRef: {env: SHOP_DE_SECRET}}
"""


def chanops(cwd: Path, *args: str, emulator: EmulatorProcess) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SHOP_DE_SECRET": "git-test-secret-value",
        "CHANOPS_PLATFORM_URL": emulator.url,
        "CHANOPS_PLATFORM_TOKEN": emulator.token,
    }
    return subprocess.run(
        [sys.executable, "-m", "chanops", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def make_remote(tmp_path: Path, ref: str = "main") -> Path:
    bare = tmp_path / "remote.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "--quiet", "--bare", "-b", ref, str(bare))
    git(tmp_path, "init", "--quiet", "-b", ref, str(work))
    (work / "connections.d").mkdir()
    (work / "connections.d" / "shop.yaml").write_text(MANIFEST)
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "add shop-de")
    git(work, "push", "--quiet", str(bare), f"HEAD:{ref}")
    return bare


def test_plan_and_apply_read_manifests_from_git(tmp_path: Path, emulator: EmulatorProcess) -> None:
    bare = make_remote(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    plan = chanops(
        run,
        "plan",
        "--git",
        str(bare),
        "--format",
        "json",
        "--detailed-exitcode",
        emulator=emulator,
    )
    assert plan.returncode == 2, plan.stderr
    assert plan.stdout.startswith("{"), plan.stdout[:200]
    actions = json.loads(plan.stdout)["actions"]
    assert [(a["kind"], a["name"]) for a in actions] == [("create", "shop-de")]
    assert "git-test-secret-value" not in plan.stdout + plan.stderr

    applied = chanops(run, "apply", "--yes", "--git", str(bare), emulator=emulator)
    assert applied.returncode == 0, applied.stderr
    names = [c["name"] for c in emulator.admin.get("/api/v1/connections")["items"]]
    assert names == ["shop-de"]

    again = chanops(run, "plan", "--git", str(bare), "--detailed-exitcode", emulator=emulator)
    assert again.returncode == 0, again.stdout + again.stderr


def test_plan_with_a_missing_ref_is_one_clear_error(
    tmp_path: Path, emulator: EmulatorProcess
) -> None:
    bare = make_remote(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    plan = chanops(run, "plan", "--git", str(bare), "--git-ref", "nope", emulator=emulator)
    assert plan.returncode == 1
    assert "nope" in plan.stderr
    assert "Traceback" not in plan.stderr
