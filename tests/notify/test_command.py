"""`chanops notify test`: a test message to each provider, or one; exit 0 or 1."""

from __future__ import annotations

import subprocess
from pathlib import Path

from daemon.helpers import chanops_launcher
from notify.receivers import HttpReceiver, http_receiver


def config_for(tmp_path: Path, http: HttpReceiver) -> Path:
    (tmp_path / "slack-url").write_text(f"{http.url}/slack\n")
    (tmp_path / "hook-url").write_text(f"{http.url}/hook\n")
    (tmp_path / "hook-key").write_text("hook-key-0123456789abcdef\n")
    config = tmp_path / "chanops.yaml"
    config.write_text(
        "notifications:\n  providers:\n"
        "    - {name: slack, kind: slack, urlFile: slack-url}\n"
        "    - {name: hook, kind: webhook, urlFile: hook-url, secretFile: hook-key}\n"
    )
    return config


def notify_test(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*chanops_launcher(), "notify", "test", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=config.parent,
    )


def test_sends_to_every_provider_or_one(tmp_path: Path) -> None:
    with http_receiver() as http:
        config = config_for(tmp_path, http)
        done = notify_test(config)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "sent a test message to slack",
            "sent a test message to hook",
        ]
        assert http.on("/hook")[0].json()["type"] == "notify.test"
        assert "chanops test notification" in http.on("/slack")[0].json()["text"]
        only = notify_test(config, "--provider", "hook")
        assert only.returncode == 0
        assert len(http.on("/hook")) == 2
        assert len(http.on("/slack")) == 1


def test_a_failing_or_unknown_provider_is_exit_1_with_one_line(tmp_path: Path) -> None:
    with http_receiver() as http:
        config = config_for(tmp_path, http)
        http.mode = "fail"
        done = notify_test(config, "--provider", "slack")
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == ["Error: sending to slack failed: HTTP 500"]
        unknown = notify_test(config, "--provider", "pager")
        assert unknown.returncode == 1
        assert unknown.stderr.strip().splitlines() == [
            f"Error: no provider named 'pager' in {config}; configured: slack, hook"
        ]
        assert http.received == []


def test_a_bad_section_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "chanops.yaml"
    config.write_text("notifications:\n  providers:\n    - {name: s, kind: slack, urlFile: gone}\n")
    done = notify_test(config)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: {config}:3:39: notifications.providers[0].urlFile: ")
    assert "cannot read the webhook URL file" in lines[0]
