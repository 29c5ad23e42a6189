"""Run `chanops emulator` as a real subprocess on a free loopback port, for tests.

    with start_emulator(tmp_path) as emu:
        client = open_client(emu.url, emu.token)
        cid = emu.admin.marketplace_install("shopify", "shop")   # a "UI user" acting
        emu.admin.stats()                                        # requests by route

`.stop()` / `.start()` restart the same process on the same port and database;
`.kill()` is SIGKILL (a crash). The `emulator` fixture in tests/conftest.py yields one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

READY_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Admin:
    """A small sync client for tests that act as a UI user or read emulator stats.

    Raises httpx.HTTPStatusError on error answers (except where a status is returned).
    """

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with self._client() as c:
            return c.request(method, path, **kw)

    def _ok(self, response: httpx.Response) -> Any:
        response.raise_for_status()
        return response.json() if response.content else None

    def get(self, path: str, **kw: Any) -> Any:
        return self._ok(self.request("GET", path, **kw))

    def patch(self, path: str, json: Any, **kw: Any) -> Any:
        return self._ok(self.request("PATCH", path, json=json, **kw))

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self._ok(self.request("POST", path, json=json, **kw))

    def delete(self, path: str, **kw: Any) -> Any:
        return self._ok(self.request("DELETE", path, **kw))

    def marketplace_install(
        self, driver: str, name: str, credentials: dict[str, Any] | None = None
    ) -> int:
        """Create a connection the way the marketplace would (also non-creatable drivers)."""
        body = {"driver": driver, "name": name, "credentials": credentials or {}}
        out = self.post("/api/v1/testing/marketplace-install", json=body)
        return int(out["connection"]["id"])

    def authorize(self, connection_id: int) -> dict[str, Any]:
        """Complete the OAuth flow (Amazon)."""
        out: dict[str, Any] = self.post(f"/api/v1/testing/authorize/{connection_id}")
        return out

    def set_order_errors(self, connection_id: int, value: bool = True) -> dict[str, Any]:
        """Raise (or clear) the connection's "Order/Return have errors" flag."""
        out: dict[str, Any] = self.post(
            f"/api/v1/testing/order-errors/{connection_id}", json={"has_order_errors": value}
        )
        return out

    def stats(self) -> dict[str, int]:
        """Requests received by "METHOD /route/{template}" since start or the last reset."""
        out: dict[str, int] = self.get("/api/v1/testing/stats")
        return out

    def reset_stats(self) -> None:
        self.post("/api/v1/testing/stats/reset")

    # -- the OAuth server (an emulator started with --oauth-client) --------------------

    def oauth_revoke(self) -> dict[str, int]:
        """Revoke every refresh and access token; how many of each there were."""
        out: dict[str, int] = self.post("/api/v1/testing/oauth/revoke")["revoked"]
        return out

    def oauth_stats(self) -> dict[str, int]:
        """token_requests, code_exchanges, refreshes, refused.<error>, ... since reset."""
        out: dict[str, int] = self.get("/api/v1/testing/oauth/stats")
        return out

    def oauth_reset_stats(self) -> None:
        self.post("/api/v1/testing/oauth/stats/reset")

    def token_failure(self, mode: str, times: int | None = None) -> None:
        """Make the token endpoint answer "html" (200 HTML) or "500"; "none" ends it."""
        body: dict[str, Any] = {"mode": mode}
        if times is not None:
            body["times"] = times
        self.post("/api/v1/testing/oauth/token-failure", json=body)

    def connection(self, connection_id: int) -> dict[str, Any]:
        out: dict[str, Any] = self.get(f"/api/v1/connections/{connection_id}")
        return out

    def connections(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = self.get("/api/v1/connections", params=params)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return items


class EmulatorProcess:
    def __init__(
        self,
        tmp_path: Path,
        *,
        faults: str | None = None,
        time_scale: float = 0.01,
        drivers: Sequence[str] | None = None,
        token: str = "test-token",
        db: str | Path | None = None,
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.tmp_path = Path(tmp_path)
        self.extra_args = list(extra_args)  # e.g. ["--oauth-client", "ID:SECRET"]
        self.faults = faults
        self.time_scale = time_scale
        self.drivers = list(drivers) if drivers else None
        self.token = token
        self.db = str(db) if db is not None else str(self.tmp_path / "emulator.db")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.tmp_path / f"emulator-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin = Admin(self.url, token)

    def command(self) -> list[str]:
        script = Path(sys.executable).parent / "chanops"  # the installed entry point
        launcher = (
            [str(script)]
            if script.exists()
            else [sys.executable, "-c", "from chanops.cli import main; main()"]
        )
        cmd = [
            *launcher,
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            self.db,
            "--token",
            self.token,
            "--time-scale",
            str(self.time_scale),
            "--log-format",
            "json",
        ]
        if self.faults:
            cmd += ["--faults", self.faults]
        if self.drivers:
            cmd += ["--drivers", ",".join(self.drivers)]
        return cmd + self.extra_args

    def start(self) -> EmulatorProcess:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.tmp_path.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"emulator exited with {self.proc.returncode}:\n{self.logs()[-4000:]}"
                )
            try:
                if httpx.get(f"{self.url}/openapi.json", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"emulator did not answer within {READY_TIMEOUT_S}s:\n{self.logs()}")

    def stop(self) -> None:
        """SIGTERM and wait (a clean shutdown)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def logs(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def start_emulator(
    tmp_path: Path,
    *,
    faults: str | None = None,
    time_scale: float = 0.01,
    drivers: Sequence[str] | None = None,
    token: str = "test-token",
    db: str | Path | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(
        tmp_path,
        faults=faults,
        time_scale=time_scale,
        drivers=drivers,
        token=token,
        db=db,
        extra_args=extra_args,
    )
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()
