"""Attacks through the manifest files themselves, performed for real.

Whoever writes a manifest (or pushes to the manifests repository) is not trusted with
the host. Two moves from issue 11:

- a symlink `connections.d/x.yaml -> <host file>`, or a symlinked directory leading out
  of the root: the host file's content used to come back in diagnostics, logs and
  /status. Now it is never opened, the diagnostic names the link, and the connections
  it defined freeze.
- a FIFO as a manifest: opening it waited for a writer forever (`plan` never returned,
  SIGTERM could not stop the daemon). Now it is an error naming the file, at once.

Every command runs as a real subprocess (`chanops validate`, `plan`, `apply`, `run`)
against a real emulator; the host file is a real 0600 file holding a unique marker in
YAML that would be echoed by the schema errors if it were ever read (checked by a
control that validates it where reading it is allowed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from daemon.helpers import DaemonProcess, chanops_launcher, wait_until
from engine.helpers import ENV, write_manifest
from support.emulator import EmulatorProcess

CHANOPS = str(Path(sys.executable).parent / "chanops")
MARKER = f"hostsecret{uuid.uuid4().hex}"
# YAML that gets far enough through the loader to be quoted back: the kind, driver and
# an unknown field all appear in schema errors.
HOST_FILE = f"""apiVersion: chanops/v1
kind: {MARKER}
metadata:
  name: {MARKER}
spec:
  driver: {MARKER}
  {MARKER}: {MARKER}
"""
OUTSIDE = "leads out of the manifests root"
PADDING = "# " + "-" * 200 + "\n"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    env.update(ENV)
    return env


def _host_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "host" / "host-secret"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(HOST_FILE, encoding="utf-8")
    secret.chmod(0o600)
    return secret


def _plant_links(root: Path, tmp_path: Path) -> None:
    """x.yaml -> the host file; team/ -> a directory outside holding a manifest."""
    (root / "x.yaml").symlink_to(_host_secret(tmp_path))
    outside = tmp_path / "host" / "team"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "b.yaml").write_text(HOST_FILE, encoding="utf-8")
    (root / "team").symlink_to(outside, target_is_directory=True)


def _validate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHANOPS, "validate", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
        check=False,
    )


def _command(
    emu: EmulatorProcess, root: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
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
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
        check=False,
    )


def _many(root: Path, count: int) -> None:
    """`count` valid manifests: enough to make `validate` / `plan` fork load workers."""
    for i in range(count):
        # ~500 bytes each, like a real manifest with its comments (the fork threshold
        # of plan is in bytes).
        # (a setting no procedure syncs after: one action per manifest in a plan)
        settings = "    orders: {importAboveNumber: '1'}\n"
        write_manifest(root, f"bulk-{i:04d}", settings=settings, extra=PADDING)


# -- symlinks out of the root ------------------------------------------------------------


def test_control_the_host_file_would_leak_if_read(tmp_path: Path) -> None:
    """The marker is echoed when the file is read (named directly, in its own directory):
    so its absence below means the link was not followed, not that errors are quiet."""
    done = _validate(str(_host_secret(tmp_path)))
    assert done.returncode == 1
    assert MARKER in done.stdout


def test_validate_refuses_links_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "connections.d"
    write_manifest(root, "shop-a")
    _plant_links(root, tmp_path)
    inside = root / "shared.yaml"
    write_manifest(root, "shared")
    (root / "alias").mkdir()
    (root / "alias" / "link.yml").symlink_to(inside)  # inside -> inside: read as usual

    for fmt in ("text", "json", "github"):
        done = _validate(str(root), "--format", fmt)
        assert done.returncode == 1, done.stdout + done.stderr
        out = done.stdout + done.stderr
        assert MARKER not in out
    text = _validate(str(root)).stdout
    assert f"{root}/x.yaml:1:1: error: symlink {OUTSIDE}; not read" in text
    assert f"{root}/team:1:1: error: symlinked directory {OUTSIDE}; not followed" in text
    # The link inside the root is read: its document duplicates shared.yaml's name.
    assert any(
        line.startswith(f"{root}/alias/link.yml:") and "duplicate metadata.name 'shared'" in line
        for line in text.splitlines()
    ), text

    as_json = json.loads(_validate(str(root), "--format", "json").stdout)
    codes = {(d["file"], d["code"]) for d in as_json["diagnostics"]}
    assert {(f"{root}/x.yaml", "outside-root"), (f"{root}/team", "outside-root")} <= codes

    # Named on its own, a link is judged against the directory it is named in.
    alone = _validate(str(root / "x.yaml"))
    assert alone.returncode == 1 and MARKER not in alone.stdout + alone.stderr
    assert f"{root}/x.yaml:1:1: error: symlink {OUTSIDE}" in alone.stdout


def test_plan_and_apply_freeze_what_the_links_replaced(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    root = tmp_path / "connections.d"
    write_manifest(root, "shop-a")
    write_manifest(root, "shop-x")
    (root / "shop-x.yaml").rename(root / "x.yaml")
    write_manifest(root / "team", "shop-b")
    applied = _command(emulator, root, "apply", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert sorted(c["name"] for c in emulator.admin.connections()) == [
        "shop-a",
        "shop-b",
        "shop-x",
    ]

    # The push: x.yaml becomes a link to a host file, team/ a link out of the root.
    (root / "x.yaml").unlink()
    for f in (root / "team").iterdir():
        f.unlink()
    (root / "team").rmdir()
    _plant_links(root, tmp_path)

    plan = _command(emulator, root, "plan", "--format", "json")
    out = plan.stdout + plan.stderr
    assert MARKER not in out
    assert f"{root}/x.yaml:1:1: error: symlink {OUTSIDE}; not read" in plan.stderr
    assert f"{root}/team:1:1: error: symlinked directory {OUTSIDE}; not followed" in plan.stderr
    actions = json.loads(plan.stdout)["actions"]
    assert actions == [], actions  # nothing is deleted, nothing else changes
    blocked = {b["name"]: b["rule"] for b in json.loads(plan.stdout)["blocked"]}
    assert blocked == {"shop-x": "frozen", "shop-b": "root-unreadable"}

    again = _command(emulator, root, "apply", "--yes")
    assert MARKER not in again.stdout + again.stderr
    assert sorted(c["name"] for c in emulator.admin.connections()) == [
        "shop-a",
        "shop-b",
        "shop-x",
    ]


def test_run_once_and_the_daemon_never_show_the_host_file(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    root = tmp_path / "connections.d"
    write_manifest(root, "shop-a")
    _plant_links(root, tmp_path)

    once = subprocess.run(
        [
            *chanops_launcher(),
            "run",
            "--once",
            "--manifests",
            str(root),
            "--platform",
            emulator.url,
            "--token",
            emulator.token,
            "--state",
            str(tmp_path / "once.db"),
            "--log-format",
            "json",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert MARKER not in once.stdout + once.stderr
    events = [json.loads(line) for line in once.stdout.splitlines() if line.startswith("{")]
    invalid = {e["file"]: e["code"] for e in events if e["event"] == "manifest.invalid"}
    assert invalid == {str(root / "x.yaml"): "outside-root", str(root / "team"): "outside-root"}
    assert [c["name"] for c in emulator.admin.connections()] == ["shop-a"]

    daemon = DaemonProcess(
        tmp_path, manifests=root, platform=emulator.url, token=emulator.token, env=ENV
    )
    try:
        daemon.start()
        status = daemon.http("/status").json()
        errors = {(e["file"], e["error"]) for e in status["manifestErrors"]}
        assert (
            str(root / "x.yaml"),
            f"symlink {OUTSIDE}; not read (manifests must lie inside the root)",
        ) in errors
        assert MARKER not in json.dumps(status)
        # An edit through the watcher: the link now points at another host file.
        other = tmp_path / "host" / "other"
        other.write_text(HOST_FILE, encoding="utf-8")
        mark = daemon.mark()
        (root / "x.yaml").unlink()
        (root / "x.yaml").symlink_to(other)
        daemon.wait_event(
            lambda e: e["event"] == "manifest.invalid" and e["file"] == str(root / "x.yaml"),
            after=mark,
        )
        assert MARKER not in json.dumps(daemon.http("/status").json())
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert MARKER not in daemon.output()


# -- FIFOs -------------------------------------------------------------------------------


@pytest.mark.parametrize("bulk", [0, 1600], ids=["in-process", "forked-workers"])
def test_validate_with_a_fifo_returns_at_once(tmp_path: Path, bulk: int) -> None:
    root = tmp_path / "connections.d"
    write_manifest(root, "shop-a")
    _many(root, bulk)  # 1,500 files or more: validate forks load workers
    os.mkfifo(root / "pipe.yaml")
    start = time.monotonic()
    done = _validate(str(root), timeout=60)
    elapsed = time.monotonic() - start
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{root}/pipe.yaml:1:1: error: is a FIFO, not a regular file" in done.stdout
    assert f"{1 + bulk} manifests in {2 + bulk} files, 1 errors" in done.stdout
    assert elapsed < 30, elapsed  # it used to hang until killed


@pytest.mark.parametrize("bulk", [0, 800], ids=["in-process", "forked-workers"])
def test_plan_with_a_fifo_returns_at_once(
    emulator: EmulatorProcess, tmp_path: Path, bulk: int
) -> None:
    root = tmp_path / "connections.d"
    write_manifest(root, "shop-a")
    _many(root, bulk)  # from 256 KiB of manifests plan loads in forked workers
    os.mkfifo(root / "pipe.yaml")
    done = _command(emulator, root, "plan", "--format", "json", "--log-level", "debug", timeout=60)
    assert f"{root}/pipe.yaml:1:1: error: is a FIFO, not a regular file" in done.stderr
    plan = json.loads(done.stdout)
    assert len(plan["actions"]) == 1 + bulk
    loaded = [
        json.loads(line)
        for line in done.stderr.splitlines()
        if line.startswith("{") and '"manifests.loaded"' in line
    ]
    assert loaded and (loaded[0]["workers"] > 0) == (bulk > 0), loaded


def test_daemon_with_a_fifo_reconciles_and_stops_on_sigterm(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    root = tmp_path / "connections.d"
    write_manifest(root, "shop-a")
    os.mkfifo(root / "pipe.yaml")
    daemon = DaemonProcess(
        tmp_path, manifests=root, platform=emulator.url, token=emulator.token, env=ENV
    )
    try:
        daemon.start()  # waits for the first reconcile: it used to block in open()
        daemon.wait_event(
            lambda e: (
                e["event"] == "manifest.invalid"
                and e["file"] == str(root / "pipe.yaml")
                and e["error"] == "is a FIFO, not a regular file"
            )
        )
        wait_until(lambda: [c["name"] for c in emulator.admin.connections()] == ["shop-a"])
        # A second FIFO arriving while it runs goes through the watcher and the
        # incremental loader.
        mark = daemon.mark()
        os.mkfifo(root / "later.yml")
        daemon.wait_event(
            lambda e: e["event"] == "manifest.invalid" and e["file"] == str(root / "later.yml"),
            after=mark,
        )
        assert daemon.proc is not None
        start = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=15) == 0
        assert time.monotonic() - start < 15
    finally:
        daemon.kill()
