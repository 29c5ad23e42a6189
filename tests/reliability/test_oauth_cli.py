"""One-shot commands on OAuth (issue 13): plan, apply, status, export and sync take
--client-id/--client-secret-file (or CHANOPS_CLIENT_ID/CHANOPS_CLIENT_SECRET_FILE) and
use the stored token set; a read-only command beside a running daemon refreshes too,
without either of them spending the other's rotated refresh token."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from chanops.state.tokens import load_tokens
from daemon.helpers import chanops_launcher, manifest, write_atomic
from reliability.helpers import SECRET, SECRET_ENV, find_leaks
from reliability.oauth_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    login,
    oauth_daemon,
    oauth_emulator,
    oauth_stats,
    secret_file,
    settle,
    wait_for,
)
from support.emulator import EmulatorProcess


def _chanops(
    emu: EmulatorProcess, tmp: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    environ |= {SECRET_ENV: SECRET, **(env or {})}
    return subprocess.run(
        [
            *chanops_launcher(),
            *args,
            "--manifests",
            str(tmp / "connections.d"),
            "--platform",
            emu.url,
            "--state",
            str(tmp / "state" / "state.db"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environ,
    )


def test_one_shot_commands_use_and_refresh_the_stored_tokens(tmp_path: Path) -> None:
    root, state, secret = (
        tmp_path / "connections.d",
        tmp_path / "state" / "state.db",
        secret_file(tmp_path),
    )
    write_atomic(
        root / "cli-one.yaml", manifest("cli-one", display="CLI one", secret_env=SECRET_ENV)
    )
    oauth = ["--client-id", CLIENT_ID, "--client-secret-file", str(secret)]
    with oauth_emulator(tmp_path, ttl="1s", rotate=True) as emu:
        login(emu, state, secret)
        first = load_tokens(state)
        outputs = []
        for args, code in ((["plan", "--detailed-exitcode"], 2), (["apply", "--yes"], 0)):
            settle(1.1)  # the access token has lapsed: each command refreshes
            done = _chanops(emu, tmp_path, *args, *oauth)
            outputs.append(done.stdout + done.stderr)
            assert done.returncode == code, (args, done.stdout, done.stderr)
        # The same through the environment.
        settle(1.1)
        env = {"CHANOPS_CLIENT_ID": CLIENT_ID, "CHANOPS_CLIENT_SECRET_FILE": str(secret)}
        done = _chanops(emu, tmp_path, "sync", "cli-one", env=env)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stderr
        assert "CLI one" in {c["name"] for c in emu.admin.connections()}
        last = load_tokens(state)
        assert first is not None and last is not None
        assert last.refresh_token != first.refresh_token and last.generation > first.generation
        assert oauth_stats(emu)["refreshes"] >= 3
        secrets = [CLIENT_SECRET, SECRET, first.access_token, last.access_token]
        secrets += [first.refresh_token or "", last.refresh_token or ""]
        leaks = find_leaks(secrets, {f"output {i}": o.encode() for i, o in enumerate(outputs)})
        assert leaks == []


@pytest.mark.slow
def test_a_plan_beside_the_daemon_never_spends_its_refresh_token(tmp_path: Path) -> None:
    root, state, secret = (
        tmp_path / "connections.d",
        tmp_path / "state" / "state.db",
        secret_file(tmp_path),
    )
    write_atomic(root / "side.yaml", manifest("side", display="Side", secret_env=SECRET_ENV))
    oauth = ["--client-id", CLIENT_ID, "--client-secret-file", str(secret)]
    with oauth_emulator(tmp_path, ttl="2s", rotate=True, grace="0s") as emu:
        login(emu, state, secret)
        daemon = oauth_daemon(tmp_path, emu, root, secret, state=state)
        daemon.start(wait_reconciled=False)
        try:
            wait_for(lambda: "Side" in {c["name"] for c in emu.admin.connections()}, what="create")
            for _ in range(3):
                settle(1.7)
                done = _chanops(emu, tmp_path, "plan", *oauth)
                assert done.returncode == 0, done.stderr
            write_atomic(
                root / "side.yaml", manifest("side", display="Side 2", secret_env=SECRET_ENV)
            )
            wait_for(lambda: "Side 2" in {c["name"] for c in emu.admin.connections()}, what="edit")
            refused = [e for e in daemon.events() if e["event"] == "auth.reauthorization_required"]
            assert refused == []
            assert oauth_stats(emu).get("refused.invalid_grant", 0) <= 1  # login's probe only
        finally:
            assert daemon.stop() == 0
