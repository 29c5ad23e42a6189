"""OAuth pieces of the reliability suite (issue 13): the emulator's OAuth server,
`chanops login` driven over HTTP the way a browser would, and a daemon on OAuth.

All of it runs real processes: `chanops emulator --oauth-client ...`, `chanops login`,
`chanops run --client-id ...`. The tests read the emulator's own counters
(`/api/v1/testing/oauth/stats`), never chanops's view of itself.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from daemon.helpers import DaemonProcess, chanops_launcher, wait_until
from reliability.helpers import SECRET, SECRET_ENV
from support.emulator import EmulatorProcess, start_emulator

CLIENT_ID = "chanops_ci"
CLIENT_SECRET = "oauth-client-s3cret-71c9e"  # searched for in every output
OAUTH = "/api/v1/testing/oauth"


@contextmanager
def oauth_emulator(
    tmp: Path, *, ttl: str = "1h", rotate: bool = True, grace: str = "0s"
) -> Iterator[EmulatorProcess]:
    """The emulator with its OAuth server on for CLIENT_ID."""
    args = ["--oauth-client", f"{CLIENT_ID}:{CLIENT_SECRET}", "--access-token-ttl", ttl]
    args += ["--refresh-grace", grace]
    if rotate:
        args.append("--rotate-refresh-tokens")
    with start_emulator(tmp / "emulator", extra_args=args) as emu:
        yield emu


def oauth_stats(emu: EmulatorProcess) -> dict[str, int]:
    stats: dict[str, int] = emu.admin.get(f"{OAUTH}/stats")
    return stats


def revoke(emu: EmulatorProcess) -> None:
    emu.admin.post(f"{OAUTH}/revoke")


def token_failure(emu: EmulatorProcess, mode: str, times: int | None = None) -> None:
    body: dict[str, Any] = {"mode": mode}
    if times is not None:
        body["times"] = times
    emu.admin.post(f"{OAUTH}/token-failure", json=body)


def secret_file(tmp: Path, value: str = CLIENT_SECRET) -> Path:
    path = tmp / "oauth" / "client-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}


@dataclass
class LoginResult:
    code: int
    url: str
    stdout: str
    stderr: str


class Login:
    """`chanops login --no-browser` as a subprocess; `redirect()` plays the browser."""

    def __init__(
        self,
        emu: EmulatorProcess,
        state: Path,
        secret: Path,
        *,
        client_id: str = CLIENT_ID,
        extra: Iterable[str] = (),
    ) -> None:
        self.proc = subprocess.Popen(
            [
                *chanops_launcher(),
                "login",
                "--platform",
                emu.url,
                "--client-id",
                client_id,
                "--client-secret-file",
                str(secret),
                "--state",
                str(state),
                "--no-browser",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        self.url = ""

    def authorize_url(self) -> str:
        """The first line of stdout (empty if the process ended before printing one)."""
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().decode().strip()
        return self.url

    def redirect(self, **override: str) -> httpx.Response:
        """Follow the authorize URL to the emulator, then its redirect to the listener;
        `override` replaces query parameters of that redirect (a forged state, ...)."""
        answer = httpx.get(self.authorize_url(), timeout=10)
        assert answer.status_code in (302, 303), answer.text
        location = httpx.URL(answer.headers["location"])
        if override:
            location = location.copy_merge_params(override)
        return httpx.get(str(location), timeout=10)

    def finish(self, timeout: float = 60) -> LoginResult:
        out, err = self.proc.communicate(timeout=timeout)
        read = self.url + "\n" if self.url else ""  # the line authorize_url() took
        return LoginResult(self.proc.returncode, self.url, read + out.decode(), err.decode())


def login(emu: EmulatorProcess, state: Path, secret: Path) -> LoginResult:
    """A whole successful `chanops login` (asserted)."""
    flow = Login(emu, state, secret)
    flow.redirect()
    result = flow.finish()
    assert result.code == 0, result.stderr
    return result


def oauth_daemon(
    tmp: Path,
    emu: EmulatorProcess,
    root: Path,
    secret: Path,
    *,
    state: Path,
    name: str = "daemon",
    resync: str = "1m",
    extra: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> DaemonProcess:
    """`chanops run` on OAuth (--client-id, no --token); started, not waited for."""
    d = DaemonProcess(
        tmp,
        manifests=root,
        platform=emu.url,
        token="unused",
        state=state,
        resync=resync,
        env={SECRET_ENV: SECRET, **(env or {})},
        extra=["--client-id", CLIENT_ID, "--client-secret-file", str(secret), *extra],
        name=name,
    )
    at = d.cmd.index("--token")
    del d.cmd[at : at + 2]
    return d


def wait_for(fn: Any, *, timeout: float = 30.0, what: str = "") -> Any:
    return wait_until(fn, timeout=timeout, what=what)


def settle(seconds: float) -> None:
    """Let time pass on purpose (a window in which something must NOT happen)."""
    time.sleep(seconds)
