"""Helpers for the daemon's end-to-end tests: `chanops run` as a real subprocess.

`DaemonProcess` starts `chanops run --listen 127.0.0.1:0 --log-format json`, learns its
HTTP port from the `http.listening` event, and reads its stdout as JSON events. Tests
poll for conditions (`wait_event`, `wait_until`); nothing sleeps for a fixed long time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

REQUIRED_FIELDS = ("event", "timestamp", "level")


def chanops_launcher() -> list[str]:
    script = Path(sys.executable).parent / "chanops"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from chanops.cli import main; main()"]


def wait_until(fn: Callable[[], T | None], *, timeout: float = 15.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = fn()
        except (httpx.HTTPError, OSError) as exc:  # the thing polled is not up (yet)
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error {last_error})")


def manifest(
    name: str,
    *,
    display: str | None = None,
    enabled: bool = True,
    secret_env: str = "SW_SECRET",
    sync: str | None = None,
    driver: str = "shopware6",
    extra_spec: str = "",
) -> str:
    lines = [
        "apiVersion: chanops/v1",
        "kind: Connection",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  driver: {driver}",
        f"  enabled: {'true' if enabled else 'false'}",
    ]
    if display:
        lines.append(f"  displayName: {display}")
    if driver == "shopware6":
        lines += [
            "  credentials:",
            "    url: https://shop.example.com",
            "    accessKeyId: SWIA123",
            f"    secretAccessKey: {{secretRef: {{env: {secret_env}}}}}",
        ]
    elif driver == "amazon":
        lines += ["  credentials:", "    sellerId: A1SELLER", "    marketplace: DE"]
    if sync:
        lines += ["  sync:", f"    interval: {sync}"]
    if extra_spec:
        lines += [f"  {line}" for line in extra_spec.splitlines()]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write like an editor that saves atomically: a hidden temp file renamed over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class DaemonProcess:
    def __init__(
        self,
        tmp_path: Path,
        *,
        manifests: Path,
        platform: str,
        token: str,
        state: Path | None = None,
        resync: str = "1m",
        env: dict[str, str] | None = None,
        extra: Sequence[str] = (),
        name: str = "daemon",
    ) -> None:
        self.tmp_path = tmp_path
        self.manifests = manifests
        self.state = state or tmp_path / "state" / "state.db"
        self.log_path = tmp_path / f"{name}.log"
        self.err_path = tmp_path / f"{name}.err"
        self.cmd = [
            *chanops_launcher(),
            "run",
            "--manifests",
            str(manifests),
            "--platform",
            platform,
            "--token",
            token,
            "--state",
            str(self.state),
            "--listen",
            "127.0.0.1:0",
            "--resync",
            resync,
            "--log-format",
            "json",
            "--shutdown-timeout",
            "10s",
            *extra,
        ]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    def start(self, *, wait_reconciled: bool = True) -> DaemonProcess:
        with self.log_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=err, env=self.env)
        listening = self.wait_event(lambda e: e["event"] == "http.listening", timeout=20)
        self.port = int(listening["port"])
        if wait_reconciled:
            self.wait_event(
                lambda e: e["event"] in ("reconcile.completed", "reconcile.failed"), timeout=20
            )
        return self

    # -- output -------------------------------------------------------------------------

    def lines(self) -> list[str]:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        # The last line may be half written while the process runs.
        return [line for line in text.split("\n")[:-1] if line.strip()]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]

    def mark(self) -> int:
        return len(self.lines())

    def wait_event(
        self,
        pred: Callable[[dict[str, Any]], bool],
        *,
        after: int = 0,
        timeout: float = 15.0,
        what: str = "",
    ) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.proc.returncode}:\n{self.output()[-4000:]}"
                )
            for event in self.events()[after:]:
                if pred(event):
                    return event
            return None

        try:
            return wait_until(find, timeout=timeout, what=what or "a daemon event")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n--- daemon log tail ---\n{self.output()[-6000:]}"
            ) from None

    def output(self) -> str:
        out = self.log_path.read_text(encoding="utf-8", errors="replace")
        err = self.err_path.read_text(encoding="utf-8", errors="replace")
        return out + ("\n--- stderr ---\n" + err if err else "")

    # -- HTTP ---------------------------------------------------------------------------

    def http(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    # -- lifecycle ----------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"daemon did not stop within {timeout}s") from None
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
