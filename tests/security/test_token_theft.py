"""Token theft (issue 11, finding 2): a manifest writer tries to read the platform token.

The attack: `secretRef: {file: platform-token}` on a connection whose `url` is the
attacker's host. The platform stores the credential and talks to that host with it,
so the token is gone on the next apply. Two defences, each performed for real with
`chanops` subprocesses against the real emulator:

- a layout where an operator credential (token, webhook secret, ssh key) lies in an
  allowed secrets directory, itself or through a symlink or hard link, makes `plan`,
  `apply` and `run` refuse to start, naming the credential, the directory and the flag,
  before any request reaches the platform;
- with the default layout (only `secrets/` beside the root; `/run/secrets` no longer
  implicit) every way of naming the token fails, and neither the attacker's listening
  host, the platform's database nor any output ever holds the token's bytes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.emulator import EmulatorProcess, start_emulator

CHANOPS = str(Path(sys.executable).parent / "chanops")
TOKEN = "platform-T0KEN-5e1f0c93a7d2"  # the emulator's bearer token: chanops's credential
LEGIT = "legit-connection-secret-81c4"  # a connection's own secret, for the control


class Listener:
    """The attacker's host: a TCP listener that records every byte anyone sends it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.received = bytearray()
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(1)
                try:
                    while chunk := conn.recv(65536):
                        self.received += chunk
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def attacker() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def shared_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator for the refusal tests: each checks that it received no request."""
    with start_emulator(tmp_path_factory.mktemp("emulator"), token=TOKEN) as emu:
        yield emu


@pytest.fixture
def platform(shared_platform: EmulatorProcess) -> EmulatorProcess:
    shared_platform.admin.reset_stats()
    return shared_platform


def shopware(name: str, url: str, secret: str) -> str:
    return (
        "apiVersion: chanops/v1\n"
        "kind: Connection\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n"
        "  driver: shopware6\n"
        "  credentials:\n"
        f"    url: {url}\n"
        "    accessKeyId: SWIAATTACKER\n"
        f"    secretAccessKey: {secret}\n"
    )


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    base["HOME"] = str(cwd)
    return subprocess.run(
        [CHANOPS, *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def platform_requests(emu: EmulatorProcess) -> int:
    """Requests the platform got outside the test's own /testing/ calls."""
    return sum(n for route, n in emu.admin.stats().items() if "/testing/" not in route)


def token_bytes_in(path: Path) -> list[str]:
    """Files under `path` that hold the token's bytes."""
    hits = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        if TOKEN.encode() in file.read_bytes():
            hits.append(file.name)
    return hits


# -- a credential inside a secrets directory: chanops refuses to start -----------------


@pytest.fixture
def own_platform(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with start_emulator(tmp_path / "emulator", token=TOKEN) as emu:
        yield emu


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "connections.d"
    root.mkdir()
    secrets = tmp_path / "secrets"  # the default secrets dir beside the root
    secrets.mkdir()
    operator = tmp_path / "run-chanops"  # where the token belongs
    operator.mkdir(mode=0o700)
    token = operator / "platform-token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return {"root": root, "secrets": secrets, "token": token, "tmp": tmp_path}


COMMANDS = [("plan",), ("apply", "--yes"), ("run", "--once")]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("how", ["in-dir", "symlink", "hardlink", "dir-alias", "env"])
def test_a_token_reachable_from_a_secrets_dir_stops_every_command(
    layout: dict[str, Path], platform: EmulatorProcess, command: tuple[str, ...], how: str
) -> None:
    root, secrets, token, tmp = layout["root"], layout["secrets"], layout["token"], layout["tmp"]
    (root / "a.yaml").write_text(
        shopware("a", "https://shop.example.com", "{secretRef: {file: x}}")
    )
    token_file = token
    secrets_dir = secrets
    env: dict[str, str] = {}
    if how == "in-dir":  # the old Docker layout: token and manifests' secrets together
        token_file = secrets / "platform-token"
        token.rename(token_file)
        secrets_dir = secrets  # the default directory, not named on the command line
    elif how == "symlink":
        (secrets / "platform-token").symlink_to(token)
    elif how == "hardlink":
        os.link(token, secrets / "innocent-name")
    elif how == "dir-alias":  # the secrets dir named through a symlink to the token's dir
        secrets_dir = tmp / "alias"
        secrets_dir.symlink_to(token.parent)
    elif how == "env":
        token_file = secrets / "platform-token"
        token.rename(token_file)
        env["CHANOPS_PLATFORM_TOKEN_FILE"] = str(token_file)
    args = [*command, "--manifests", str(root), "--platform", platform.url]
    args += ["--state", str(tmp / "state" / "state.db")]
    if how != "in-dir":
        args += ["--secrets-dir", str(secrets_dir)]
    if how != "env":
        args += ["--token-file", str(token_file)]
    done = run(*args, cwd=tmp, env=env)

    assert done.returncode != 0, done.stdout + done.stderr
    message = " ".join(done.stderr.split())
    if how in ("symlink", "hardlink"):
        assert f"the secrets directory {secrets_dir} holds" in message, message
        assert f"a link to the platform token file {token_file}" in message, message
    else:
        assert f"the platform token file {token_file} lies inside the secrets directory" in message
    assert "--secrets-dir" in message and "--token-file / CHANOPS_PLATFORM_TOKEN_FILE" in message
    if how == "in-dir":
        assert "the default is secrets/ beside the manifests root" in message
    assert TOKEN not in done.stdout + done.stderr
    # Refused at startup: not one request reached the platform, nothing was written.
    assert platform_requests(platform) == 0
    assert not (tmp / "state").exists()


@pytest.mark.parametrize("flag", ["--git-ssh-key", "--webhook-secret-file"])
def test_git_credentials_inside_a_secrets_dir_stop_the_daemon(
    layout: dict[str, Path], platform: EmulatorProcess, flag: str
) -> None:
    tmp, secrets = layout["tmp"], layout["secrets"]
    credential = secrets / "deploy-key"
    credential.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n")
    done = run(
        "run",
        "--once",
        "--git",
        str(tmp / "nowhere.git"),  # never fetched: the check comes first
        flag,
        str(credential),
        "--platform",
        platform.url,
        "--token-file",
        str(layout["token"]),
        "--state",
        str(tmp / "state" / "state.db"),
        "--secrets-dir",
        str(secrets),
        cwd=tmp,
    )
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    what = "the git ssh key" if flag == "--git-ssh-key" else "the webhook secret file"
    assert f"{what} {credential} lies inside the secrets directory {secrets}" in message
    assert flag in message
    assert platform_requests(platform) == 0


def test_plan_refuses_an_ssh_key_inside_the_secrets_dir(layout: dict[str, Path]) -> None:
    tmp, secrets = layout["tmp"], layout["secrets"]
    (secrets / "id_ed25519").write_text("not-a-real-key\n")
    done = run(
        "plan",
        "--git",
        str(tmp / "nowhere.git"),
        "--git-ssh-key",
        str(secrets / "id_ed25519"),
        "--manifests",
        str(layout["root"]),
        cwd=tmp,
    )
    assert done.returncode == 1
    assert "the git ssh key" in done.stderr and "lies inside the secrets directory" in done.stderr


# -- the default layout: every way of naming the token fails --------------------------


def test_default_layout_never_hands_the_token_to_a_manifest(
    layout: dict[str, Path], own_platform: EmulatorProcess, attacker: Listener
) -> None:
    platform = own_platform
    root, secrets, token, tmp = layout["root"], layout["secrets"], layout["token"], layout["tmp"]
    # Where Docker and Compose used to mount the token, beside other tmp contents: the
    # implicit /run/secrets is gone, so neither a relative nor an absolute name reaches it.
    host = f"https://127.0.0.1:{attacker.port}"
    attempts = {
        "relative": "{secretRef: {file: platform-token}}",
        "absolute": f"{{secretRef: {{file: {token}}}}}",
        "run-secrets": "{secretRef: {file: /run/secrets/platform-token}}",
        "dotdot": "{secretRef: {file: ../run-chanops/platform-token}}",
        "env-file": "{secretRef: {env: CHANOPS_PLATFORM_TOKEN_FILE}}",
        "env-token": "{secretRef: {env: CHANOPS_PLATFORM_TOKEN}}",
    }
    for name, ref in attempts.items():
        (root / f"steal-{name}.yaml").write_text(shopware(f"steal-{name}", host, ref))
    # The control: a connection's own secret from the default directory does resolve and
    # reach the platform, so "nothing found" below is not a broken detector.
    (secrets / "legit-secret").write_text(LEGIT + "\n")
    (root / "legit.yaml").write_text(
        shopware("legit", "https://shop.example.com", "{secretRef: {file: legit-secret}}")
    )
    env = {"CHANOPS_PLATFORM_TOKEN_FILE": str(token)}
    common = ["--manifests", str(root), "--platform", platform.url]
    common += ["--state", str(tmp / "state" / "state.db")]

    applied = run("apply", "--yes", *common, cwd=tmp, env=env)
    daemon = run("run", "--once", "--log-format", "json", *common, cwd=tmp, env=env)

    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert "Apply complete: 1 succeeded" in applied.stdout
    for name in attempts:
        assert f"steal-{name}" in applied.stdout + applied.stderr
    refusals = applied.stdout + applied.stderr
    assert "does not exist in the allowed secret directories" in refusals
    assert "is outside the allowed secret directories" in refusals
    assert "must not contain '..'" in refusals
    assert "may not read CHANOPS_* variables" in refusals
    # The daemon met the same refusals (it resolves secrets on its own path).
    assert '"event": "reconcile.completed"' in daemon.stdout, daemon.stdout + daemon.stderr
    assert "may not read CHANOPS_* variables" in daemon.stdout + daemon.stderr
    # The platform created only the legitimate connection and stored only its secret.
    assert [c["name"] for c in platform.admin.connections()] == ["legit"]
    platform.stop()  # flush its WAL so the database file is complete
    db_files = [p for p in (tmp / "emulator").iterdir() if p.name.startswith("emulator.db")]
    assert any(LEGIT.encode() in p.read_bytes() for p in db_files)
    assert token_bytes_in(tmp / "emulator") == []
    # The attacker's host heard nothing, and no output or file chanops wrote holds it.
    assert attacker.connections == 0 and TOKEN.encode() not in attacker.received
    for out in (applied.stdout, applied.stderr, daemon.stdout, daemon.stderr):
        assert TOKEN not in out
    assert token_bytes_in(tmp / "state") == []


def test_run_secrets_is_no_longer_an_implicit_secrets_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chanops.config import load_settings

    monkeypatch.chdir(tmp_path)  # no ./chanops.yaml
    for name in [k for k in os.environ if k.startswith("CHANOPS_")]:
        monkeypatch.delenv(name)
    settings = load_settings(manifests=str(tmp_path / "connections.d"))
    assert settings.secrets_dirs == (tmp_path.resolve() / "secrets",)


# -- --token on the command line (finding 10) -----------------------------------------


def test_a_token_on_the_command_line_warns_once_and_a_file_does_not(
    layout: dict[str, Path], platform: EmulatorProcess
) -> None:
    tmp = layout["tmp"]
    (layout["root"] / "a.yaml").write_text(
        shopware("a", "https://shop.example.com", "literal-secret-value")
    )
    common = ["--manifests", str(layout["root"]), "--platform", platform.url]
    common += ["--state", str(tmp / "state.db")]
    flagged = run("plan", *common, "--token", TOKEN, cwd=tmp)
    assert flagged.returncode == 0, flagged.stderr
    warnings = [line for line in flagged.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        "Warning: --token is visible to every user of this machine in the process list "
        "(ps); prefer --token-file or CHANOPS_PLATFORM_TOKEN_FILE"
    ]
    assert TOKEN not in flagged.stderr + flagged.stdout
    from_file = run("plan", *common, "--token-file", str(layout["token"]), cwd=tmp)
    from_env = run("plan", *common, cwd=tmp, env={"CHANOPS_PLATFORM_TOKEN": TOKEN})
    for done in (from_file, from_env):
        assert done.returncode == 0, done.stderr
        assert "Warning:" not in done.stderr
