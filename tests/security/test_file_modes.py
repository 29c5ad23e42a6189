"""File modes and transport (issue 11, finding 11), checked on what real processes leave.

- the state directory is 0700 and the state store's files (database, -wal, -shm, HMAC
  key, lock) 0600 whatever the umask; looser ones are tightened at start, with a warning;
- the embedded platform's database (it holds every connection's credentials) is 0600;
- a token file other users can read produces a warning;
- `http://` to a platform that is not loopback is refused when a token is configured,
  before any connection is made, unless `--insecure-http`; loopback http stays allowed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.helpers import DaemonProcess, manifest, write_atomic
from support.emulator import EmulatorProcess

CHANOPS = str(Path(sys.executable).parent / "chanops")
SECRET = "file-modes-secret-2b7e"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def chanops(
    *args: str, cwd: Path, env: dict[str, str] | None = None, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    base.update({"HOME": str(cwd), "SW_SECRET": SECRET})
    # The child inherits the umask; the tests of this process run one at a time.
    old = os.umask(umask) if umask is not None else None
    try:
        return subprocess.run(
            [CHANOPS, *args],
            cwd=cwd,
            env={**base, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        if old is not None:
            os.umask(old)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "connections.d"
    write_atomic(path / "a.yaml", manifest("a"))
    return path


def token_file(tmp_path: Path, emulator: EmulatorProcess, file_mode: int = 0o600) -> Path:
    path = tmp_path / "platform-token"
    path.write_text(emulator.token + "\n")
    path.chmod(file_mode)
    return path


def test_apply_with_a_fresh_state_path_leaves_a_private_store(
    tmp_path: Path, root: Path, emulator: EmulatorProcess
) -> None:
    state = tmp_path / "fresh" / "state" / "state.db"
    done = chanops(
        "apply",
        "--yes",
        "--manifests",
        str(root),
        "--platform",
        emulator.url,
        "--token-file",
        str(token_file(tmp_path, emulator)),
        "--state",
        str(state),
        cwd=tmp_path,
        umask=0o000,  # the worst case: the umask masks nothing
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert mode(state.parent) == 0o700
    files = [f for f in state.parent.iterdir()]
    assert {f.name for f in files} >= {"state.db", "state.key", "state.db.lock"}
    for f in files:
        if f.is_file():
            assert mode(f) == 0o600, f"{f.name}: {mode(f):04o}"
    assert "state.mode_tightened" not in done.stderr  # created right, nothing to fix


def test_looser_state_files_are_tightened_at_start_with_a_warning(
    tmp_path: Path, root: Path, emulator: EmulatorProcess
) -> None:
    state = tmp_path / "state" / "state.db"
    args = ["apply", "--yes", "--manifests", str(root), "--platform", emulator.url]
    args += ["--token-file", str(token_file(tmp_path, emulator)), "--state", str(state)]
    assert chanops(*args, cwd=tmp_path).returncode == 0
    os.chmod(state.parent, 0o755)
    os.chmod(state, 0o644)
    os.chmod(state.with_name("state.key"), 0o644)
    again = chanops(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("state.mode_tightened") == 3, again.stderr
    assert mode(state.parent) == 0o700
    assert mode(state) == mode(state.with_name("state.key")) == 0o600


def test_a_running_daemon_keeps_wal_and_shm_private(
    tmp_path: Path, root: Path, emulator: EmulatorProcess
) -> None:
    old = os.umask(0o022)  # the usual umask: SQLite alone would make them 0644
    try:
        d = DaemonProcess(
            tmp_path,
            manifests=root,
            platform=emulator.url,
            token=emulator.token,
            env={"SW_SECRET": SECRET},
        ).start()
    finally:
        os.umask(old)
    try:
        d.wait_event(lambda e: e["event"] == "connection.created", timeout=30)
        state = d.state
        present = {p.name: mode(p) for p in state.parent.iterdir() if p.is_file()}
        assert {"state.db", "state.db-wal", "state.db-shm", "state.key"} <= set(present)
        assert set(present.values()) == {0o600}, present
        assert mode(state.parent) == 0o700
    finally:
        assert d.stop() == 0


def test_the_embedded_platform_database_is_private(tmp_path: Path, root: Path) -> None:
    db = tmp_path / "embedded" / "platform.db"
    done = chanops(
        "apply",
        "--yes",
        "--manifests",
        str(root),
        "--platform",
        f"local:{db}",
        "--state",
        str(tmp_path / "state" / "state.db"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for f in db.parent.iterdir():
        if f.name.startswith("platform.db"):
            assert mode(f) == 0o600, f"{f.name}: {mode(f):04o}"
    assert SECRET.encode() in db.read_bytes()  # it does hold the credentials


def test_the_emulator_process_database_is_private(emulator: EmulatorProcess) -> None:
    emulator.admin.marketplace_install("actindo-pos", "POS")
    for f in Path(emulator.db).parent.iterdir():
        if f.name.startswith(Path(emulator.db).name):
            assert mode(f) == 0o600, f"{f.name}: {mode(f):04o}"


# -- the token file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_mode", "other_group", "warned"),
    [
        (0o600, False, None),
        (0o640, False, None),  # its group is chanops's own (Kubernetes fsGroup)
        (0o640, True, "members of its group (mode 0640)"),
        (0o644, False, "other users (mode 0644)"),
        (0o604, False, "other users (mode 0604)"),
    ],
)
def test_a_token_file_others_can_read_is_warned_about(
    tmp_path: Path,
    root: Path,
    emulator: EmulatorProcess,
    file_mode: int,
    other_group: bool,
    warned: str | None,
) -> None:
    path = token_file(tmp_path, emulator, file_mode)
    if other_group:
        other = next(g for g in (65534, 65533, 1) if g != os.getegid())
        try:
            os.chown(path, -1, other)
        except PermissionError:
            pytest.skip("cannot give the token file another group here")
    done = chanops(
        "plan",
        "--manifests",
        str(root),
        "--platform",
        emulator.url,
        "--token-file",
        str(path),
        "--state",
        str(tmp_path / "state.db"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("Warning:")]
    if warned is None:
        assert warnings == []
    else:
        assert warnings == [
            f"Warning: the platform token file {path} is readable by {warned}: chmod 600 {path}"
        ]
    assert emulator.token not in done.stderr


# -- plain http -------------------------------------------------------------------------


def plan_against(
    url: str,
    tmp_path: Path,
    root: Path,
    token: Path,
    *extra: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return chanops(
        "plan",
        "--manifests",
        str(root),
        "--platform",
        url,
        "--token-file",
        str(token),
        "--state",
        str(tmp_path / "state.db"),
        *extra,
        cwd=tmp_path,
        env=env,
    )


def test_plain_http_to_another_host_is_refused_before_connecting(
    tmp_path: Path, root: Path, emulator: EmulatorProcess
) -> None:
    token = token_file(tmp_path, emulator)
    refused = plan_against("http://example.invalid", tmp_path, root, token)
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    assert "platform URL http://example.invalid is plain http:// to a host that is not" in message
    assert "--insecure-http" in message and emulator.token not in message
    # 0.0.0.0 is not a loopback address, yet Linux delivers it to this machine: the
    # emulator would answer, so "no request arrived" shows the refusal came first.
    port = emulator.url.rsplit(":", 1)[1]
    emulator.admin.reset_stats()
    other = f"http://0.0.0.0:{port}"
    assert plan_against(other, tmp_path, root, token).returncode == 1
    requests = {r: n for r, n in emulator.admin.stats().items() if "/testing/" not in r}
    assert sum(requests.values()) == 0, requests
    # Told so (flag, environment, config file), chanops goes ahead.
    allowed = [
        plan_against(other, tmp_path, root, token, "--insecure-http"),
        plan_against(other, tmp_path, root, token, env={"CHANOPS_INSECURE_HTTP": "1"}),
    ]
    config = tmp_path / "chanops.yaml"
    config.write_text("insecureHttp: true\n")
    allowed.append(plan_against(other, tmp_path, root, token, "--config", str(config)))
    for done in allowed:
        assert "plain http://" not in done.stderr, done.stderr
        if sys.platform == "linux":
            assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_http_stays_allowed(
    tmp_path: Path, root: Path, emulator: EmulatorProcess, host: str
) -> None:
    url = emulator.url.replace("127.0.0.1", host)
    done = plan_against(url, tmp_path, root, token_file(tmp_path, emulator))
    assert done.returncode == 0, done.stderr
