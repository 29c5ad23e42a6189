"""Who may read the page, over HTTP against real daemons (the browser's view: test_browser)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

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


def test_a_trusted_proxy_header_lets_in(world: World, tmp_path: Path) -> None:
    daemon = exposed_daemon(world, tmp_path, "--ui-trusted-header", "X-Forwarded-Email")
    try:
        assert httpx.get(url(daemon, "/ui/"), timeout=10).status_code == 401
        headers = {"X-Forwarded-Email": "<b>ops</b>@example.com"}
        page = httpx.get(url(daemon, "/ui/"), headers=headers, timeout=10)
        assert page.status_code == 200
        assert "&lt;b&gt;ops&lt;/b&gt;@example.com" in page.text  # the user, escaped
    finally:
        daemon.stop()


def test_a_bad_password_file_stops_startup_with_one_line(world: World, tmp_path: Path) -> None:
    (tmp_path / "empty-password").write_text("\n", encoding="utf-8")
    for given, expected in (
        (tmp_path / "missing", "cannot read --ui-password-file"),
        (tmp_path / "empty-password", "is empty"),
    ):
        daemon = DaemonProcess(
            tmp_path,
            manifests=tmp_path / "none.d",
            platform=world.emu.url,
            token="t",
            extra=["--ui-password-file", str(given)],
            name=f"bad-{given.name}",
        )
        done = subprocess.run(daemon.cmd, env=daemon.env, capture_output=True, timeout=30)
        assert done.returncode == 1
        failed = [line for line in done.stdout.decode().splitlines() if "daemon.failed" in line]
        assert len(failed) == 1 and expected in failed[0], done.stdout.decode()
        assert "Traceback" not in done.stderr.decode()


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
