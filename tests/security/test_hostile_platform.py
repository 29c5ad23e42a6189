"""A hostile platform (or whatever sits between chanops and it), performed for real.

The operator sets the platform URL, but what answers there may answer anything: a
redirect elsewhere, a login page with 200, JSON of another shape, an HTML 500. Each
test runs a real HTTP server on 127.0.0.1 that answers so, and real `chanops`
processes against it:

- the one-shot commands print one `Error:` line naming status and call, exit 1, no
  traceback, no token;
- the daemon keeps reconciling (and /healthz 200) through every such answer, and
  recovers when the platform does;
- and when its reconcile loop does die (a fault nothing handles), it says so
  (`daemon.crashed`), fails /healthz and exits 70 for its supervisor to restart it.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.helpers import DaemonProcess, chanops_launcher, manifest, wait_until, write_atomic

CHANOPS = str(Path(sys.executable).parent / "chanops")
TOKEN = "hostile-test-token-5b1e0c"
LIST = "/api/v1/connections"

# mode -> (status, content type, body, what the error line must say besides the call)
MODES: dict[str, tuple[int, str, bytes, str]] = {
    "redirect": (302, "text/html", b"", "302 Found"),
    "html": (200, "text/html", b"<html><title>Sign in</title></html>", "200 OK with a text/html"),
    "wrong_shape": (
        200,
        "application/json",
        b'{"items": "x", "next_cursor": null}',
        "200 OK with JSON that is not the contract's (items: expected an array",
    ),
    "list_body": (
        200,
        "application/json",
        b"[]",
        "200 OK with JSON that is not the contract's (body: expected an object, got an array",
    ),
    "html_500": (500, "text/html", b"<html>Oops</html>", "500 Internal Server Error with"),
    "healthy": (200, "application/json", b'{"items": [], "next_cursor": null}', ""),
}


class HostilePlatform:
    """Answers every request according to `mode`; a redirect points at `trap`.

    Serves until closed, on a thread; records each request (method, path, whether it
    carried the token) so a test can tell what reached it, and where.
    """

    def __init__(self, trap_url: str = "") -> None:
        self.mode = "redirect"
        self.trap_url = trap_url
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append((self.command, self.path.split("?")[0]))
                status, kind, body, _ = MODES[outer.mode]
                if outer.mode == "html":
                    # A page that echoes the request: the token must not come back out.
                    body += self.headers.get("Authorization", "").encode()
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", f"{outer.trap_url}{self.path}")
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trap() -> Iterator[HostilePlatform]:
    """Where the redirects point: nothing may ever arrive here."""
    server = HostilePlatform()
    server.mode = "healthy"
    yield server
    server.close()


@pytest.fixture
def hostile(trap: HostilePlatform) -> Iterator[HostilePlatform]:
    server = HostilePlatform(trap.url)
    yield server
    server.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    root = tmp_path / "connections.d"
    root.mkdir()
    (root / "pos.yaml").write_text(
        manifest("pos", driver="amazon", extra_spec="connectionId: 7"), encoding="utf-8"
    )
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    token.chmod(0o600)
    return tmp_path


def chanops(workdir: Path, platform: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    cmd = [
        CHANOPS,
        *args,
        "--manifests",
        str(workdir / "connections.d"),
        "--platform",
        platform,
        "--token-file",
        str(workdir / "token"),
        "--state",
        str(workdir / "state.db"),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def assert_one_clean_error(proc: subprocess.CompletedProcess[str], call: str, says: str) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output, output
    assert TOKEN not in output
    # The one line that names what went wrong: `Error: ...`, or sync's per-name refusal.
    lines = [
        line for line in proc.stderr.splitlines() if line.startswith("Error:") or "refused" in line
    ]
    assert len(lines) == 1, output
    line = lines[0]
    assert call in line and says in line, line
    return line


@pytest.mark.parametrize("mode", ["redirect", "html", "wrong_shape", "list_body", "html_500"])
def test_plan_against_a_hostile_platform_is_one_error_line(
    mode: str, hostile: HostilePlatform, trap: HostilePlatform, workdir: Path
) -> None:
    hostile.mode = mode
    proc = chanops(workdir, hostile.url, "plan")
    line = assert_one_clean_error(proc, f"GET {LIST}", MODES[mode][3])
    if mode == "redirect":
        assert "redirects are not followed" in line
        assert len(hostile.requests) == 1  # not retried
    assert trap.requests == []  # nothing, the token least of all, went where it pointed


@pytest.mark.parametrize("mode", ["redirect", "wrong_shape"])
@pytest.mark.parametrize("command", ["apply", "status", "sync", "export"])
def test_every_platform_command_fails_in_one_line(
    command: str, mode: str, hostile: HostilePlatform, trap: HostilePlatform, workdir: Path
) -> None:
    hostile.mode = mode
    args = {"apply": ["apply", "--yes"], "sync": ["sync", "pos"]}.get(command, [command])
    proc = chanops(workdir, hostile.url, *args)
    call = "POST /api/v1/connections/7/sync" if command == "sync" else f"GET {LIST}"
    says = MODES[mode][3] if command != "sync" or mode == "redirect" else "200 OK with JSON"
    assert_one_clean_error(proc, call, says)
    assert trap.requests == []


def _status(daemon: DaemonProcess) -> dict[str, Any]:
    result: dict[str, Any] = daemon.http("/status").json()
    return result


def test_the_daemon_keeps_reconciling_through_hostile_answers(
    hostile: HostilePlatform, trap: HostilePlatform, workdir: Path
) -> None:
    """Each hostile answer fails one full reconcile; the loop lives on and recovers."""
    (workdir / "connections.d" / "pos.yaml").unlink()  # nothing to write: list only
    (workdir / "connections.d" / "README.md").write_text("no manifests yet\n")
    daemon = DaemonProcess(
        workdir, manifests=workdir / "connections.d", platform=hostile.url, token=TOKEN
    )
    try:
        daemon.start()
        unreachable = daemon.wait_event(lambda e: e["event"] == "platform.unreachable")
        assert f"GET {LIST}: the platform answered 302 Found" in unreachable["error"]
        for mode in ("html", "wrong_shape", "list_body", "html_500"):
            hostile.mode = mode
            daemon.signal(signal.SIGHUP)  # a full reconcile now, not after the backoff

            def failed_on(mode: str = mode) -> bool:
                retry = _status(daemon)["platformRetry"]
                return bool(retry) and MODES[mode][3] in retry["error"]

            wait_until(failed_on, timeout=40, what=f"a reconcile failed by {mode}")
            assert daemon.proc is not None and daemon.proc.poll() is None
            assert daemon.http("/healthz").status_code == 200  # alive: the loop survived
            assert daemon.http("/readyz").status_code == 503  # but not ready
        hostile.mode = "healthy"
        daemon.signal(signal.SIGHUP)
        daemon.wait_event(lambda e: e["event"] == "platform.reachable", timeout=40)
        wait_until(lambda: daemon.http("/readyz").status_code == 200, what="ready again")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    log = daemon.output()
    assert "Traceback" not in log and "daemon.crashed" not in log
    assert TOKEN not in log
    assert trap.requests == []


# Started as `python -c FAULTY <chanops args>`: the real daemon with one fault injected in
# its own process. Once CHANOPS_TEST_CRASH_MARKER's file exists, the next reconcile's
# bookkeeping raises what no handler expects, as a bug would.
FAULTY = """
import os, sys
from chanops.daemon import service
succeeded = service.Daemon._succeeded
def faulty(self, *args, **kwargs):
    if os.path.exists(os.environ["CRASH_MARKER"]):
        raise RuntimeError("injected fault")
    return succeeded(self, *args, **kwargs)
service.Daemon._succeeded = faulty
from chanops.cli import main
sys.argv = ["chanops", *sys.argv[1:]]
main()
"""


def test_a_dead_reconcile_loop_fails_healthz_and_exits_70(tmp_path: Path) -> None:
    """Supervision: whatever kills the reconcile loop, the daemon does not stay up mute.

    The fault is injected into the real daemon process (see FAULTY): a bug nothing
    handles escapes a reconcile. Before supervision the loop died silently while
    /healthz said 200.
    """
    root = tmp_path / "connections.d"
    root.mkdir()
    pos = root / "pos.yaml"
    pos.write_text(manifest("pos", driver="amazon"), encoding="utf-8")
    marker = tmp_path / "crash-now"
    daemon = DaemonProcess(
        tmp_path,
        manifests=root,
        platform=f"local:{tmp_path / 'platform.db'}",
        token=TOKEN,
        env={"CRASH_MARKER": str(marker)},
    )
    daemon.cmd = [sys.executable, "-c", FAULTY, *daemon.cmd[len(chanops_launcher()) :]]
    seen: list[int | str] = []
    stop_polling = threading.Event()

    def poll_healthz() -> None:
        # One client for all probes: a new one per probe (TLS context and all) is too
        # slow to land inside the ~0.1 s between the crash and the exit.
        url = f"http://127.0.0.1:{daemon.port}/healthz"
        with httpx.Client(timeout=2) as client:
            while not stop_polling.is_set():
                try:
                    seen.append(client.get(url).status_code)
                except httpx.HTTPError:
                    seen.append("gone")
                time.sleep(0.002)

    poller = threading.Thread(target=poll_healthz, daemon=True)
    try:
        daemon.start()  # the first reconcile completed: a healthy daemon
        poller.start()
        wait_until(lambda: 200 in seen, what="/healthz 200 while healthy")
        marker.touch()
        write_atomic(pos, manifest("pos", driver="amazon", display="POS renamed"))
        assert daemon.proc is not None
        code = daemon.proc.wait(timeout=30)
        time.sleep(0.05)  # a last probe or two after the exit
    finally:
        stop_polling.set()
        poller.join(timeout=5)
        daemon.kill()
    events = daemon.events()
    assert code == 70, daemon.output()
    crashed = [e for e in events if e["event"] == "daemon.crashed"]
    assert len(crashed) == 1, daemon.output()
    assert crashed[0]["level"] == "critical" and crashed[0]["task"] == "reconcile loop"
    assert crashed[0]["error"] == "RuntimeError: injected fault"
    assert "\n" not in crashed[0]["error"] and "exception" not in crashed[0]  # no traceback
    assert "Traceback" not in daemon.output()
    assert [e["event"] for e in events][-1] == "daemon.stopped"
    # 200 while healthy; once it said anything else, never 200 again: 503 while the
    # daemon stops (about 0.1 s, usually caught by the 2 ms probe), then gone.
    first_bad = seen.index(503) if 503 in seen else seen.index("gone")
    assert 200 in seen[:first_bad] and 200 not in seen[first_bad:], seen
    assert seen[-1] == "gone"


async def test_healthz_is_503_once_crashed() -> None:
    """The gate `Daemon.run` puts in front of create_app, in-process: the deterministic
    half of the supervision test above (whose 503 window lasts ~100 ms before exit)."""
    from chanops.daemon._status import LivenessGate
    from chanops.daemon.http import create_app
    from chanops.observability.metrics import Metrics

    crashed: list[str] = []
    app = create_app(
        metrics=Metrics(), ready=lambda: (True, []), status=lambda: {"connections": []}
    )
    app.add_middleware(LivenessGate, crashed=lambda: crashed[0] if crashed else None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as client:
        assert (await client.get("/healthz")).status_code == 200
        crashed.append("reconcile loop: ValueError: secret-ish detail")
        answer = await client.get("/healthz")
        assert answer.status_code == 503
        assert answer.json()["status"] == "crashed"
        assert "secret-ish" not in answer.text  # the error stays in the log
        assert (await client.get("/status")).status_code == 200  # the rest still serves
        assert json.loads((await client.get("/status")).text) == {"connections": []}
