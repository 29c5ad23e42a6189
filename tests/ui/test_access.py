"""Who may read the page, over HTTP against real daemons (the browser's view: test_browser)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from daemon.helpers import DaemonProcess
from ui.conftest import UI_PASSWORD, World, exposed_daemon


def url(daemon: DaemonProcess, path: str) -> str:
    return f"http://127.0.0.1:{daemon.port}{path}"


def test_off_loopback_the_page_asks_for_the_password(guarded: DaemonProcess) -> None:
    bare = httpx.get(url(guarded, "/ui/"), timeout=10)
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"].startswith("Basic realm=")
    wrong = httpx.get(url(guarded, "/ui/"), auth=("ops", "guess"), timeout=10)
    assert wrong.status_code == 401
    for path in ("/ui/", "/ui/connections", "/ui/plan", "/ui/live", "/ui/static/ui.js"):
        assert httpx.get(url(guarded, path), timeout=10).status_code == 401, path
    ok = httpx.get(url(guarded, "/ui/"), auth=("ops", UI_PASSWORD), timeout=10)
    assert ok.status_code == 200 and "Overview" in ok.text
    # The proxy's header lets in too (the daemon was given both); its value is escaped.
    headers = {"X-Forwarded-Email": "<b>ops</b>@example.com"}
    proxied = httpx.get(url(guarded, "/ui/"), headers=headers, timeout=10)
    assert proxied.status_code == 200
    assert "&lt;b&gt;ops&lt;/b&gt;@example.com" in proxied.text
    assert httpx.get(url(guarded, "/ui/"), headers={"X-Forwarded-Email": ""}).status_code == 401
    # The JSON endpoints keep their own rules.
    assert httpx.get(url(guarded, "/status"), timeout=10).status_code == 200
    assert httpx.get(url(guarded, "/healthz"), timeout=10).status_code == 200
    # The password never appears in the log.
    assert UI_PASSWORD not in guarded.output()


def test_off_loopback_without_credentials_configured_the_page_is_locked(
    world: World, tmp_path: Path
) -> None:
    daemon = exposed_daemon(world, tmp_path)
    try:
        locked = httpx.get(url(daemon, "/ui/"), timeout=10)
        assert locked.status_code == 403
        assert "--ui-password-file" in locked.text
        assert httpx.get(url(daemon, "/status"), timeout=10).status_code == 200
    finally:
        daemon.stop()


@pytest.mark.slow  # the rule is tested in-process (test_auth.py, test_run_flags.py)
def test_once_serves_no_page_and_reads_no_password_file(world: World, tmp_path: Path) -> None:
    daemon = DaemonProcess(
        tmp_path,
        manifests=tmp_path / "none.d",
        platform=world.emu.url,
        token=world.emu.token,
        extra=["--once", "--ui-password-file", str(tmp_path / "missing")],
        name="once",
    )
    done = subprocess.run(daemon.cmd, env=daemon.env, capture_output=True, timeout=60)
    assert "ui-password-file" not in done.stdout.decode()
    assert done.returncode == 0, done.stdout.decode()[-2000:]
