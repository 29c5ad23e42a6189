"""`POST /hooks/git` under a flood of bodies (finding 4), performed for real.

A `chanops run --git` daemon with a webhook secret (as in tests/daemon/test_run_git.py)
and its body timeout lowered so the test stays short. Each connection is a thread with a
raw socket, so a test can stream a 24 MB chunked body slowly, stop sending, and still
read the answer the daemon gave (and see when it hung up) while it was sending.
"""

from __future__ import annotations

import select
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from daemon.helpers import chanops_launcher, manifest
from daemon.test_run_git import HOOK_SECRET, Remote, git_daemon, signed
from support.emulator import EmulatorProcess

BODY_TIMEOUT = 3.0  # chanops.sources.webhook.BODY_TIMEOUT in the daemon under test
MB = 1024 * 1024
BOGUS = {"X-Hub-Signature-256": "sha256=" + "0" * 64, "X-GitHub-Event": "push"}
ZEROS = bytes(256 * 1024)


@dataclass
class Outcome:
    status: int | None
    sent: int  # body bytes written before the answer came (or the daemon hung up)
    seconds: float  # from the request head to the answer
    hung_up: bool  # the daemon closed the connection after answering


def post_chunked(
    port: int,
    headers: dict[str, str],
    *,
    total: int,
    chunk: int = 64 * 1024,
    interval: float = 0.0,
    stall_after: int | None = None,
    deadline: float = 20.0,
) -> Outcome:
    """POST /hooks/git with a chunked body of `total` bytes, `chunk` every `interval` s.

    Stops sending at `stall_after` bytes (a stalled sender). Whatever it is doing, it
    reads the answer as soon as the daemon sends one, and then stops sending.
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = "POST /hooks/git HTTP/1.1\r\nHost: chanops\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    s.sendall(head.encode())
    s.setblocking(False)
    started = time.monotonic()
    pending, sent, finished, next_send = b"", 0, False, started
    response, answered, hung_up = b"", None, False
    try:
        while time.monotonic() - started < deadline:
            now = time.monotonic()
            stalled = stall_after is not None and sent >= stall_after
            writing = bool(pending) or (not finished and not stalled and now >= next_send)
            readable, writable, _ = select.select([s], [s] if writing else [], [], 0.02)
            if readable:
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    hung_up = True
                    break
                response += data
                if answered is None and b"\r\n\r\n" in response:
                    answered = time.monotonic()
                    finished, pending = True, b""  # stop sending, keep reading until close
                continue
            if writable:
                if not pending:
                    if sent >= total:
                        pending, finished = b"0\r\n\r\n", True
                    else:
                        n = min(chunk, total - sent)
                        pending = f"{n:x}\r\n".encode() + ZEROS[:n] + b"\r\n"
                        sent += n
                        next_send = now + interval
                try:
                    pending = pending[s.send(pending) :]
                except OSError:  # the daemon hung up: read what it said before that
                    pending, finished = b"", True
    finally:
        s.close()
    status = int(response.split()[1]) if response.startswith(b"HTTP/1.1 ") else None
    seconds = (answered or time.monotonic()) - started
    return Outcome(status, sent, seconds, hung_up)


def declared_too_large(port: int) -> Outcome:
    """A head declaring 30 MB, and no body at all: the answer cannot depend on reading it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        head = "POST /hooks/git HTTP/1.1\r\nHost: chanops\r\nContent-Length: 31457280\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in BOGUS.items()) + "\r\n"
        started = time.monotonic()
        s.sendall(head.encode())
        response = s.recv(65536)
        seconds = time.monotonic() - started
        while data := s.recv(65536):  # a timeout here (5 s) means it was not hung up
            response += data
    return Outcome(int(response.split()[1]), 0, seconds, hung_up=True)


def vm(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


class PeakRss:
    """The daemon's peak RSS from now on: VmHWM after resetting it (clear_refs 5)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = vm(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        # A sampler as well, in case the kernel does not reset VmHWM.
        self.sampled = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.sampled = max(self.sampled, vm(self.pid, "VmRSS"))
            except (OSError, AssertionError):  # the daemon has exited
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self) -> float:
        self.stop()
        peak = vm(self.pid, "VmHWM")
        if peak > self.sampled + 50:  # VmHWM was not reset: fall back to the samples
            peak = self.sampled
        return max(peak, self.sampled) - self.baseline


def assert_flood_refused(port: int) -> None:
    """Phase 1: 20 unsigned bodies held open slowly, and 20 bodies with a bogus GitHub
    signature streamed at 2.5 MB/s, 24 MB each, all at once."""
    with ThreadPoolExecutor(max_workers=40) as pool:
        unsigned = [
            pool.submit(post_chunked, port, {}, total=24 * MB, interval=0.1) for _ in range(20)
        ]
        bogus = [
            pool.submit(post_chunked, port, BOGUS, total=24 * MB, chunk=256 * 1024, interval=0.1)
            for _ in range(20)
        ]
        unsigned_out = [f.result() for f in unsigned]
        bogus_out = [f.result() for f in bogus]

    # Unsigned: refused from the head alone, then hung up on; the bodies were not
    # read (they could not have been: 24 MB at this pace takes 37 s).
    assert [o.status for o in unsigned_out] == [401] * 20
    assert all(o.hung_up and o.seconds < 1.0 and o.sent < 4 * MB for o in unsigned_out), [
        (o.seconds, o.sent) for o in unsigned_out
    ]
    # Signed-looking: 4 are read at once (their HMAC computed as they stream) and
    # time out, as their 24 MB would take 10 s; the other 16 are refused at once.
    statuses = sorted(o.status or 0 for o in bogus_out)
    assert statuses == [408] * 4 + [429] * 16, statuses
    for o in bogus_out:
        assert o.hung_up
        if o.status == 429:
            assert o.seconds < 1.0 and o.sent < 4 * MB, o
        else:
            assert BODY_TIMEOUT - 0.2 <= o.seconds <= BODY_TIMEOUT + 1.5, o
            assert o.sent >= 2 * MB, o  # the daemon did read (and hash) these


def assert_bad_bodies_refused(port: int) -> None:
    """Phase 2 (the slots are free again): too large, declared or sent; stalled; and a
    whole 1 MB body with a bogus signature, verified by streaming and refused."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        oversized = pool.submit(post_chunked, port, BOGUS, total=26 * MB, chunk=256 * 1024)
        declared = pool.submit(declared_too_large, port)
        stalled = pool.submit(post_chunked, port, BOGUS, total=MB, stall_after=64 * 1024)
        whole = pool.submit(post_chunked, port, BOGUS, total=MB)
        oversized_out, declared_out = oversized.result(), declared.result()
        stalled_out, whole_out = stalled.result(), whole.result()
    assert oversized_out.status == 413 and oversized_out.hung_up, oversized_out
    assert 25 * MB <= oversized_out.sent <= 26 * MB, oversized_out
    assert declared_out.status == 413 and declared_out.hung_up, declared_out
    assert declared_out.seconds < 1.0
    assert stalled_out.status == 408 and stalled_out.hung_up, stalled_out
    assert BODY_TIMEOUT - 0.2 <= stalled_out.seconds <= BODY_TIMEOUT + 1.0, stalled_out
    assert whole_out.status == 401 and whole_out.sent == MB, whole_out


def assert_refusals_logged(events: list[dict[str, Any]]) -> None:
    """Every refusal is in the log, with its reason and who sent it."""
    rejected = [e for e in events if e["event"] == "webhook.rejected"]
    reasons: dict[str, int] = {}
    for e in rejected:
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
        assert e["client"] == "127.0.0.1", e
    assert reasons == {
        "unsigned": 20,
        "too many in flight": 16,
        "body timeout": 5,
        "body too large": 2,
        "bad signature": 1,
    }, reasons


def test_webhook_body_flood(tmp_path: Path, emulator: EmulatorProcess) -> None:
    remote = Remote(tmp_path)
    remote.write("alpha.yaml", manifest("alpha"))
    remote.commit("add alpha")
    d = git_daemon(tmp_path, emulator, remote)
    tuning = f"import chanops.sources.webhook as w; w.BODY_TIMEOUT = {BODY_TIMEOUT}; "
    program = tuning + "from chanops.cli import main; main()"
    d.cmd = [sys.executable, "-c", program, *d.cmd[len(chanops_launcher()) :]]
    rss: PeakRss | None = None
    try:
        d.start()
        assert d.proc is not None and d.port is not None
        port, pid = d.port, d.proc.pid
        rss = PeakRss(pid)
        mark = d.mark()

        assert_flood_refused(port)
        assert_bad_bodies_refused(port)

        growth = rss.growth()
        print(f"\nwebhook flood: RSS {rss.baseline:.0f} MB before, peak growth {growth:.1f} MB")
        assert growth < 40, f"RSS grew by {growth:.0f} MB"

        # Afterwards a correctly signed delivery is still accepted, and the daemon is up.
        body = b'{"ref":"refs/heads/main"}'
        ok = httpx.post(
            f"http://127.0.0.1:{port}/hooks/git", content=body, headers=signed(body), timeout=5
        )
        assert ok.status_code == 202
        assert d.http("/healthz").status_code == 200

        assert_refusals_logged(d.events()[mark:])
        d.wait_event(lambda e: e["event"] == "webhook.accepted", after=mark)
    finally:
        if rss is not None:
            rss.stop()
        code = d.stop()
    assert code == 0
    assert HOOK_SECRET not in d.output()
