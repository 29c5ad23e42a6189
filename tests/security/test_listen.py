"""`--listen` under a connection flood (finding 5), performed for real.

The daemon runs as a real process under RLIMIT_NOFILE 1024 (soft and hard, so raising
the soft limit cannot help), with its header timeout lowered so the test stays short.
An attacker on 127.0.0.2 opens 1,100 connections that never send a request (some send
half a head, some trickle one byte at a time) while /healthz probes and a manifest edit
come from 127.0.0.1. Then the pure parts: the connection cap and the accept-error throttle.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from chanops.daemon.http import ACCEPT_ERROR, AcceptErrorThrottle, connection_cap
from daemon.helpers import DaemonProcess, chanops_launcher, manifest, write_atomic
from support.emulator import EmulatorProcess

SECRET = "listen-test-secret-77c1"
FD_LIMIT = 1024
CAP = FD_LIMIT // 4  # connection_cap(1024): the rest of the descriptors are headroom
HEADER_TIMEOUT = 6.0
ATTACKER = "127.0.0.2"  # the whole of 127/8 is loopback; the probes come from 127.0.0.1
FLOOD = 1100


def launcher(**constants: float) -> list[str]:
    """`chanops` with module constants of chanops.daemon.http set first (test tuning)."""
    sets = "; ".join(f"h.{name} = {value!r}" for name, value in constants.items())
    code = f"import chanops.daemon.http as h; {sets}; from chanops.cli import main; main()"
    return [sys.executable, "-c", code]


def limit_fds() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


class LimitedDaemon(DaemonProcess):
    """A DaemonProcess started under RLIMIT_NOFILE 1024 and tuned module constants."""

    def __init__(self, *args: Any, constants: dict[str, float], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.cmd = [*launcher(**constants), *self.cmd[len(chanops_launcher()) :]]

    def start(self, *, wait_reconciled: bool = True) -> LimitedDaemon:
        with self.log_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.cmd, stdout=out, stderr=err, env=self.env, preexec_fn=limit_fds
            )
        listening = self.wait_event(lambda e: e["event"] == "http.listening", timeout=20)
        self.port = int(listening["port"])
        if wait_reconciled:
            self.wait_event(lambda e: e["event"] == "reconcile.completed", timeout=20)
        return self

    def open_fds(self) -> int:
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


def connect(port: int, *, half_head: bool = False) -> socket.socket | None:
    ((s, _),) = flood(port, 1, half_head_every=1 if half_head else 0)
    return s


def flood(
    port: int, n: int, *, half_head_every: int = 10
) -> list[tuple[socket.socket | None, float]]:
    """`n` connections from ATTACKER, each with the time its handshake completed.

    Every `half_head_every`th sends half a request head. The connects are non-blocking
    and all in flight at once, as an attacker's would be: a SYN the kernel drops (full
    accept queue) is retried after 1 s without holding up the others. None for a
    connection that did not complete within 5 s.
    """
    socks: list[socket.socket] = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((ATTACKER, 0))
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for s in socks:
        poller.register(s, select.POLLOUT)
    done: dict[socket.socket, float] = {}
    deadline = time.monotonic() + 5
    while len(done) < n and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            poller.unregister(fd)
            done[by_fd[fd]] = time.monotonic()
    result: list[tuple[socket.socket | None, float]] = []
    for i, s in enumerate(socks):
        if s not in done or s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            s.close()
            result.append((None, 0.0))
            continue
        if half_head_every and i % half_head_every == 0:
            s.send(b"GET /status HTTP/1.1\r\nHost: chanops\r\n")
        result.append((s, done[s]))
    return result


def closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(4096) == b""  # FIN (the server sends nothing before closing)
    except BlockingIOError:
        return False
    except OSError as exc:  # RST: the server aborts rather than lingering
        return exc.errno in (errno.ECONNRESET, errno.EPIPE)


def still_open(socks: dict[socket.socket, float]) -> list[socket.socket]:
    return [s for s in socks if not closed_by_server(s)]


def healthz_ok(port: int) -> float:
    started = time.monotonic()
    r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3)
    assert r.status_code == 200, r.text
    return time.monotonic() - started


@pytest.fixture(autouse=True)
def enough_fds_for_the_attacker() -> Iterator[None]:
    need = 2 * FLOOD + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the attacker needs ~{need} descriptors; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def fd_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


@dataclass
class Attack:
    """The attacker's connections, all closed by `close` whatever happened meanwhile."""

    idle: dict[socket.socket, float] = field(default_factory=dict)  # -> handshake time
    trickle: list[socket.socket | None] = field(default_factory=list)
    again: socket.socket | None = None  # a keep-alive client stalled on its 2nd request
    answered: float = 0.0  # when `again`'s first request was answered

    def flood(self, port: int) -> None:
        """FLOOD idle connections; every 10th sends half a request head, the rest nothing.

        In waves of 100 so that each one reaches the daemon: past a full accept queue
        the kernel would leave the excess half-open, costing the daemon nothing.
        """
        for _ in range(FLOOD // 100):
            for s, connected in flood(port, 100):
                if s is not None:
                    self.idle[s] = connected
            time.sleep(0.02)

    def slowloris(self, port: int) -> None:
        """A head that grows by a byte every half second (`trickle_byte`) never completes."""
        self.trickle += [connect(port, half_head=True) for _ in range(3)]

    def stall_keep_alive(self, port: int) -> None:
        """A keep-alive client that, after one answered request, starts another and stalls:
        the deadline restarts after each response, and a partial head does not stop it."""
        self.again = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.again.sendall(b"GET /healthz HTTP/1.1\r\nHost: chanops\r\n\r\n")
        assert self.again.recv(65536).startswith(b"HTTP/1.1 200 ")
        self.again.sendall(b"GET /healthz HTTP/1.1\r\n")
        self.again.setblocking(False)
        self.answered = time.monotonic()

    def trickling(self) -> list[socket.socket]:
        return [s for s in self.trickle if s is not None]

    def close(self) -> None:
        for s in [*self.idle, *self.trickling(), *([self.again] if self.again else [])]:
            s.close()


def trickle_byte(trickle: list[socket.socket], pending: set[socket.socket]) -> None:
    for s in trickle:
        if s in pending:
            with contextlib.suppress(OSError):
                s.send(b"x")


def server_closes(
    socks: set[socket.socket], *, trickle: list[socket.socket], timeout: float
) -> dict[socket.socket, float]:
    """When the server closed each of `socks`, waiting up to `timeout` s for them all.

    Meanwhile the `trickle` ones send a byte every half second, as a slowloris would.
    """
    closed_at: dict[socket.socket, float] = {}
    pending = set(socks)
    poller = select.poll()
    for s in pending:
        poller.register(s, select.POLLIN | select.POLLERR | select.POLLHUP)
    deadline = time.monotonic() + timeout
    last_trickle = 0.0
    while pending and time.monotonic() < deadline:
        if time.monotonic() - last_trickle > 0.5:
            last_trickle = time.monotonic()
            trickle_byte(trickle, pending)
        for fd, _ in poller.poll(100):
            s = next(s for s in pending if s.fileno() == fd)
            if closed_by_server(s):
                closed_at[s] = time.monotonic()
                pending.discard(s)
                poller.unregister(s)
    return closed_at


def assert_edit_reconciled(d: LimitedDaemon, root: Path, emulator: EmulatorProcess) -> None:
    """The daemon still reads its manifests root and reconciles an edit."""
    mark = d.mark()
    write_atomic(root / "alpha.yaml", manifest("alpha", display="Alpha under attack"))
    d.wait_event(
        lambda e: e["event"] == "connection.updated" and e.get("connection") == "alpha",
        after=mark,
        timeout=10,
    )
    assert any(c["name"] == "Alpha under attack" for c in emulator.admin.connections())


def assert_attack_audited(d: LimitedDaemon) -> None:
    """No flood of accept errors, and the attack in the audit log as a few summaries."""
    out = d.output()
    # Never near the descriptor limit, so no accept errors; and never a flood of them.
    assert sum("out of system resource" in line for line in out.splitlines()) <= 2
    # The attack is in the audit log, as summaries rather than one line per connection.
    drops = [e for e in d.events() if e["event"] == "http.connections_dropped"]
    assert 1 <= len(drops) <= 3, drops
    assert sum(e["evicted"] + e["refused"] for e in drops) >= FLOOD - CAP
    assert sum(e["header_timeout"] for e in drops) >= CAP - 60
    assert any(c.startswith(ATTACKER) for e in drops for c in e["clients"])
    assert SECRET not in out


def test_idle_connection_flood_under_a_1024_fd_limit(
    tmp_path: Path, emulator: EmulatorProcess
) -> None:
    root = tmp_path / "connections.d"
    write_atomic(root / "alpha.yaml", manifest("alpha"))
    d = LimitedDaemon(
        tmp_path,
        manifests=root,
        platform=emulator.url,
        token=emulator.token,
        env={"SW_SECRET": SECRET},
        constants={"HEADER_TIMEOUT": HEADER_TIMEOUT},
    )
    attack = Attack()
    try:
        d.start()
        assert d.proc is not None
        # The daemon raised its soft limit to the hard one: nothing to gain here.
        assert fd_limits(d.proc.pid) == (FD_LIMIT, FD_LIMIT)
        baseline_fds = d.open_fds()
        port = d.port or 0

        t0 = time.monotonic()
        attack.flood(port)
        assert len(attack.idle) >= FLOOD - 10, "the listener stopped completing handshakes"
        attack.slowloris(port)
        assert all(attack.trickle)
        attack.stall_keep_alive(port)

        # /healthz from a fresh connection answers promptly while the attack holds:
        # each probe's connection closes one of the attacker's idle ones to get in.
        latencies = [healthz_ok(port) for _ in range(5)]
        assert max(latencies) < 1.0, latencies
        held = still_open(attack.idle)
        # The cap closed the excess at once; the rest are held until the header timeout.
        assert CAP - 40 <= len(held) <= CAP, len(held)
        assert d.open_fds() <= baseline_fds + CAP + 20, "no descriptor headroom left"

        assert_edit_reconciled(d, root, emulator)
        during = time.monotonic() - t0
        assert during < HEADER_TIMEOUT - 1, f"the checks took {during:.1f}s: not 'during'"
        assert len(still_open(attack.idle)) >= CAP - 60  # still held: this was during the attack

        # Every held connection is closed by the server once its head is overdue, the
        # trickling ones included (a total deadline, not an inactivity timer).
        assert attack.again is not None
        trickle = attack.trickling()
        watched = set(held) | set(trickle) | {attack.again}
        closed_at = server_closes(watched, trickle=trickle, timeout=HEADER_TIMEOUT + 5)
        pending = watched - closed_at.keys()
        assert not pending, f"{len(pending)} idle connections outlived the header timeout"
        waited = sorted(round(closed_at[s] - attack.idle[s], 2) for s in held)
        assert waited[0] >= HEADER_TIMEOUT - 0.5 and waited[-1] <= HEADER_TIMEOUT + 3, waited
        for s in trickle:
            assert closed_at[s] - t0 <= HEADER_TIMEOUT + 4
        stalled = closed_at[attack.again] - attack.answered
        assert HEADER_TIMEOUT - 0.5 <= stalled <= HEADER_TIMEOUT + 3

        assert healthz_ok(port) < 1.0
        assert d.open_fds() <= baseline_fds + 5
    finally:
        attack.close()
        code = d.stop()

    assert code == 0
    assert_attack_audited(d)


def test_bind_raises_the_soft_fd_limit_to_the_hard_one() -> None:
    code = (
        "import resource; from chanops.daemon.http import bind; "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048)); "
        "bind('127.0.0.1', 0).close(); "
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1].split() == ["2048", "2048"]


def test_connection_cap_leaves_descriptor_headroom() -> None:
    assert connection_cap(1024) == 256
    assert connection_cap(65536) == 256
    assert connection_cap(256) == 64
    assert connection_cap(2) == 1


def test_accept_error_throttle_lets_one_line_a_minute_through() -> None:
    now = [0.0]
    throttle = AcceptErrorThrottle(60, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError:
            exc_info = sys.exc_info()
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None, exc_info)

    first = record(ACCEPT_ERROR + "\nsocket: <asyncio.TransportSocket fd=6>")
    assert throttle.filter(first)
    # One line, no traceback, the cause kept.
    assert first.getMessage() == f"{ACCEPT_ERROR}: [Errno 24] Too many open files"
    assert first.exc_info is None
    for _ in range(500):
        now[0] += 0.1
        assert not throttle.filter(record(ACCEPT_ERROR))
    # Other asyncio lines are untouched.
    assert throttle.filter(record("Task was destroyed but it is pending!"))
    now[0] = 60.0
    later = record(ACCEPT_ERROR)
    assert throttle.filter(later)
    assert "(500 more since the last report)" in later.getMessage()
