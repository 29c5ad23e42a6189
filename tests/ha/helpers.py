"""Replicas of `chanops run` on one PostgreSQL store, and what the tests ask of them.

`Replicas` starts N daemon subprocesses (tests/daemon/helpers.py) on the same DSN and
manifests root; `Sampler` polls every replica's /status in a thread for the whole
test, so "never two leaders" is checked at every sample, not only at the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg

from daemon.helpers import DaemonProcess, wait_until
from support.emulator import EmulatorProcess

QUICK_LEASE = ["--lease-duration", "3s", "--renew-interval", "0.5s"]


class Replicas:
    def __init__(
        self,
        tmp_path: Path,
        emu: EmulatorProcess,
        dsn: str,
        root: Path,
        *,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmp_path, self.emu, self.dsn, self.root = tmp_path, emu, dsn, root
        self.extra, self.env = list(extra), env or {}
        self.all: list[DaemonProcess] = []
        self._count = 0

    def start(self, n: int = 1) -> list[DaemonProcess]:
        started = []
        for _ in range(n):
            self._count += 1
            d = DaemonProcess(
                self.tmp_path,
                manifests=self.root,
                platform=self.emu.url,
                token=self.emu.token,
                state=self.dsn,  # type: ignore[arg-type]  # a DSN, not a path
                env=self.env,
                extra=self.extra,
                name=f"replica-{self._count}",
            )
            d.start(wait_reconciled=False)
            self.all.append(d)
            started.append(d)
        return started

    def alive(self) -> list[DaemonProcess]:
        return [d for d in self.all if d.proc is not None and d.proc.poll() is None]

    def role(self, d: DaemonProcess) -> str | None:
        try:
            return str(httpx.get(f"http://127.0.0.1:{d.port}/status", timeout=2).json()["role"])
        except (httpx.HTTPError, KeyError, ValueError):
            return None  # stopped (SIGSTOP), killed, or starting

    def leader(
        self, *, timeout: float = 20.0, exclude: DaemonProcess | None = None
    ) -> DaemonProcess:
        def find() -> DaemonProcess | None:
            leaders = [d for d in self.alive() if d is not exclude and self.role(d) == "leader"]
            return leaders[0] if len(leaders) == 1 else None

        return wait_until(find, timeout=timeout, what="exactly one leader")

    def kill_all(self) -> None:
        for d in self.all:
            d.kill()


class Sampler(threading.Thread):
    """Counts the replicas answering role=leader, every `interval` s, until stopped."""

    def __init__(self, replicas: Replicas, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.replicas = replicas
        self.interval = interval
        self.samples: list[int] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            roles = [self.replicas.role(d) for d in self.replicas.alive()]
            self.samples.append(roles.count("leader"))
            time.sleep(self.interval)

    def stop(self) -> list[int]:
        self._done.set()
        self.join(timeout=10)
        return self.samples


def stored(dsn: str) -> dict[str, tuple[Any, ...]]:
    """Every record row as PostgreSQL holds it (name -> the row)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT * FROM connections ORDER BY name").fetchall()
    return {row[0]: tuple(row) for row in rows}


def by_name(emu: EmulatorProcess, name: str) -> dict[str, Any] | None:
    for c in emu.admin.connections():
        if c["name"] == name:
            return c
    return None


def displayed(emu: EmulatorProcess, name: str, display: str) -> bool:
    conn = by_name(emu, name)
    return conn is not None and conn.get("name") == name and _display(conn) == display


def _display(conn: dict[str, Any]) -> str | None:
    value = conn.get("displayName", conn.get("display_name"))
    return None if value is None else str(value)
