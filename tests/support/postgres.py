"""A fresh PostgreSQL database per test, on the server CHANOPS_TEST_POSTGRES_DSN names.

The default is the project machines' server (127.0.0.1:5432, trust authentication).
Outside CI an unreachable server skips the test with one line; with CI=true it fails
the run: a green CI must have run these tests.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_dsn() -> str:
    return os.environ.get("CHANOPS_TEST_POSTGRES_DSN") or DEFAULT_DSN


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


# Why the server did not answer, once per session: the other tests skip at once (a
# host that drops packets would cost each of them the connect timeout).
_UNREACHABLE: dict[str, str] = {}
_SKIPPED: list[str] = []


def _shown(dsn: str) -> str:
    """The DSN without its password."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    dsn = server_dsn()
    if dsn not in _UNREACHABLE:
        try:
            return psycopg.connect(dsn, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            text = str(exc).strip()
            _UNREACHABLE[dsn] = text.splitlines()[0] if text else "unreachable"
    message = f"PostgreSQL at {_shown(dsn)} is not reachable ({_UNREACHABLE[dsn]})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI needs it", pytrace=False)
    _SKIPPED.append(message)
    pytest.skip(message)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line for all the tests skipped for want of a server (tests/conftest.py)."""
    if _SKIPPED:
        terminalreporter.write_line(
            f"{len(_SKIPPED)} tests skipped: {_SKIPPED[0]}; "
            "CHANOPS_TEST_POSTGRES_DSN names a server whose role may create databases"
        )


@contextmanager
def fresh_database(prefix: str = "chanops_test") -> Iterator[str]:
    """CREATE a uniquely named database, yield its DSN, DROP it (FORCE) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_dsn(), name)
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_backends(dsn: str) -> int:
    """pg_terminate_backend every other session on `dsn`'s database: how many."""
    database = urlsplit(dsn).path.lstrip("/")
    with _admin() as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


class PrivateServer:
    """A PostgreSQL server of the test's own (initdb in a temporary directory, a free
    port, trust authentication), which the test may stop and start: the shared server
    must not be restarted under the other tests' feet."""

    def __init__(self, bindir: Path, data: Path, port: int) -> None:
        self.bindir, self.data, self.port = bindir, data, port
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _as_owner(self, *argv: str) -> None:
        # The server refuses to run as root: as root, run it as the `postgres` user.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"{argv[0]} failed: {done.stderr.strip() or done.stdout}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.data / "server.log")
        self._as_owner(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            log,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_owner(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found is not None and (Path(found).resolve().parent / "initdb").exists():
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


@contextmanager
def private_server() -> Iterator[PrivateServer]:
    """A started `PrivateServer`; stopped and removed afterwards. Without the server's
    programs (initdb, pg_ctl) the test skips, or fails under CI=true."""
    bindir = _bindir()
    if bindir is None:
        message = "a private PostgreSQL server needs initdb and pg_ctl (not found)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    # As root the server runs as `postgres`, which may not enter root's temporary
    # directory: its data goes under that user's home instead.
    home = Path(pwd.getpwnam("postgres").pw_dir) if os.geteuid() == 0 else None
    data = Path(tempfile.mkdtemp(prefix="chanops-pg-", dir=home))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = PrivateServer(bindir, data, port)
    try:
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        server._as_owner(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError, AssertionError):
            server.stop("immediate")
        shutil.rmtree(data, ignore_errors=True)
