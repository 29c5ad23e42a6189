"""`chanops run`'s status-page flags, read in-process (the daemon-level tests: test_access)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from chanops.commands.run import UIFlags, _header_name, _ui_options, command
from chanops.errors import ConfigError


def test_the_password_file_is_read_once_and_must_hold_a_password(tmp_path: Path) -> None:
    given = tmp_path / "pw"
    given.write_bytes(b"s3cret pass\r\n")
    assert _ui_options(UIFlags(password_file=given)).password == b"s3cret pass"
    given.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"--ui-password-file .*pw is empty"):
        _ui_options(UIFlags(password_file=given))
    with pytest.raises(ConfigError, match=r"cannot read --ui-password-file .*missing"):
        _ui_options(UIFlags(password_file=tmp_path / "missing"))
    off = _ui_options(UIFlags(enabled=False, trusted_header="X-User"))
    assert (off.enabled, off.password, off.trusted_header) == (False, None, "X-User")


def test_a_trusted_header_must_be_a_header_name() -> None:
    ctx = click.Context(command)
    param = next(p for p in command.params if p.name == "ui_trusted_header")
    assert _header_name(ctx, param, "X-Forwarded-Email") == "X-Forwarded-Email"
    for bad in ("X Forwarded", "X-User:", "", "-X"):
        with pytest.raises(click.BadParameter, match="not a header name"):
            _header_name(ctx, param, bad)
    result = CliRunner().invoke(command, ["--ui-trusted-header", "a b"])
    assert result.exit_code == 2 and "not a header name" in result.output


def test_no_ui_leaves_the_page_out_and_the_json_endpoints_as_they_are() -> None:
    import asyncio

    import httpx

    from chanops.daemon.http import create_app
    from chanops.daemon.ui import UIOptions, build_ui
    from chanops.observability.metrics import Metrics

    off = build_ui(
        status=None,  # type: ignore[arg-type]  # not read: the page is switched off
        parts=None,  # type: ignore[arg-type]
        load=lambda: None,
        options=UIOptions(enabled=False),
        host="0.0.0.0",
        resync_seconds=60,
    )
    assert off is None
    app = create_app(
        metrics=Metrics(), ready=lambda: (True, []), status=lambda: {"connections": []}, ui=off
    )

    async def get(paths: list[str]) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://d") as client:
            return [await client.get(p) for p in paths]

    pages = ["/ui/", "/ui/connections", "/ui/live", "/ui/static/ui.js"]
    *ui, status, healthz = asyncio.run(get([*pages, "/status", "/healthz"]))
    assert [r.status_code for r in ui] == [404] * len(pages)
    assert status.json() == {"connections": []} and healthz.status_code == 200
