"""`chanops run` (a real process) against the emulator, notifying real local receivers.

A small HTTP server stands in for Slack, Teams and the webhook endpoint; aiosmtpd's
SMTP server (STARTTLS required) receives the email. Two failure streaks, a platform
outage and a connection the platform refuses at every try, must each give exactly one
message per provider, and their recoveries one more each.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.helpers import DaemonProcess, manifest, wait_until, write_atomic
from notify.receivers import HttpReceiver, SmtpReceiver, http_receiver
from support.emulator import EmulatorProcess, start_emulator

SW_SECRET = "sw-secret-value-never-in-a-message-42"
HMAC_KEY = "webhook-hmac-key-never-in-a-message-42"
SMTP_PASSWORD = "smtp-password-never-in-a-message-42"
SLACK_TOKEN = "SLACKTOKENNEVERINAMESSAGE42"


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with start_emulator(tmp_path / "emulator", time_scale=0.002) as e:
        yield e


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def make(emu: EmulatorProcess, manifests: Path, **kw: object) -> DaemonProcess:
        d = DaemonProcess(tmp_path, manifests=manifests, platform=emu.url, token=emu.token, **kw)  # type: ignore[arg-type]
        started.append(d)
        return d

    yield make
    for d in started:
        d.kill()


def write_config(tmp_path: Path, http: HttpReceiver, smtp: SmtpReceiver | None) -> Path:
    creds = tmp_path / "notify-creds"
    creds.mkdir()
    (creds / "slack-url").write_text(f"{http.url}/slack/{SLACK_TOKEN}\n")
    (creds / "teams-url").write_text(f"{http.url}/teams\n")
    (creds / "hook-url").write_text(f"{http.url}/hook\n")
    (creds / "hook-key").write_text(HMAC_KEY + "\n")
    (creds / "smtp-password").write_text(SMTP_PASSWORD + "\n")
    email = ""
    if smtp is not None:
        email = f"""\
    - name: mail
      kind: email
      host: 127.0.0.1
      port: {smtp.port}
      username: chanops
      passwordFile: notify-creds/smtp-password
      caFile: {smtp.cert}
      from: chanops@example.com
      to: [ops@example.com]
"""
    config = tmp_path / "chanops.yaml"
    config.write_text(
        f"""\
notifications:
  providers:
    - {{name: slack, kind: slack, urlFile: notify-creds/slack-url}}
    - {{name: teams, kind: msteams, urlFile: notify-creds/teams-url}}
    - name: hook
      kind: webhook
      urlFile: notify-creds/hook-url
      secretFile: notify-creds/hook-key
{email}  routes:
    - providers: [slack, teams, hook{", mail" if smtp else ""}]
      severity: warning
"""
    )
    return config


def named(emu: EmulatorProcess, display: str) -> bool:
    return any(c.get("name") == display for c in emu.admin.connections())


def outage(emu: EmulatorProcess, d: DaemonProcess) -> None:
    """Stop the platform, let the daemon find out twice, start it, wait for recovery."""
    mark = d.mark()
    emu.stop()
    d.signal(signal.SIGHUP)
    d.wait_event(lambda e: e["event"] == "platform.unreachable", after=mark, timeout=60)
    d.signal(signal.SIGHUP)  # the same streak: no second message
    emu.start()
    d.wait_event(lambda e: e["event"] == "platform.reachable", after=mark, timeout=60)


def refusal(emu: EmulatorProcess, d: DaemonProcess, root: Path) -> None:
    """The platform refuses an edit of b (the account lacks the Klarna plugin) at every
    try, then the edit is reverted: one failure streak and its end."""
    emu.admin.post("/api/v1/testing/account", json={"plugins": []})
    mark = d.mark()
    klarna = manifest("b", secret_env="SW_SECRET", extra_spec="settings: {klarna: true}")
    write_atomic(root / "b.yaml", klarna)
    d.wait_event(lambda e: e["event"] == "connection.parked", after=mark, timeout=30)
    mark = d.mark()
    d.signal(signal.SIGHUP)  # a full resync retries parked names: refused again
    d.wait_event(
        lambda e: e["event"] == "connection.failed" and e.get("connection") == "b", after=mark
    )
    d.wait_event(lambda e: e["event"] == "reconcile.completed", after=mark)
    write_atomic(root / "b.yaml", manifest("b", secret_env="SW_SECRET"))
    d.wait_event(lambda e: e["event"] == "connection.recovered", after=mark, timeout=30)


def test_each_failure_streak_is_one_message_and_its_recovery_one_more(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    smtp = SmtpReceiver(tmp_path / "tls", username="chanops", password=SMTP_PASSWORD).start()
    try:
        with http_receiver() as http:
            config = write_config(tmp_path, http, smtp)
            root = tmp_path / "m"
            write_atomic(root / "a.yaml", manifest("a", secret_env="SW_SECRET"))
            write_atomic(root / "b.yaml", manifest("b", secret_env="SW_SECRET"))
            d = make_daemon(
                emu, root, env={"SW_SECRET": SW_SECRET}, extra=["--config", str(config)]
            ).start()
            outage(emu, d)
            http.wait("/hook", 2)
            refusal(emu, d, root)
            hooks = http.wait("/hook", 4)
            http.wait(f"/slack/{SLACK_TOKEN}", 4)
            http.wait("/teams", 4)
            smtp.wait(4)
            assert d.stop() == 0  # the notifier drains its queues before exit
            assert [h.json()["type"] for h in http.on("/hook")] == [
                "platform.unreachable",
                "platform.reachable",
                "connection.failed",
                "connection.recovered",
            ]
            assert len(http.on(f"/slack/{SLACK_TOKEN}")) == 4
            assert len(http.on("/teams")) == 4
            assert len(smtp.messages) == 4
            assert smtp.tls_used == [True, True, True, True]
            refused = hooks[2].json()
            assert refused["connection"] == "b"
            assert refused["file"] == "b.yaml"
            assert "plugin_not_installed" in refused["text"]
            assert "fix the manifest" in refused["action"]
            for request in hooks:
                signature = hmac.new(HMAC_KEY.encode(), request.body, hashlib.sha256).hexdigest()
                assert request.headers["X-Chanops-Signature"] == f"sha256={signature}"
            first = hooks[0].json()
            assert first["severity"] == "error"
            assert "Check the platform URL" in first["action"]
            everything = [r.body for r in http.received] + smtp.raw
            everything.append((tmp_path / "daemon.log").read_bytes())
            everything.append((tmp_path / "daemon.err").read_bytes())
            for secret in (SW_SECRET, HMAC_KEY, SMTP_PASSWORD, SLACK_TOKEN):
                assert not any(secret.encode() in body for body in everything), secret
    finally:
        smtp.stop()


def test_a_hanging_or_failing_receiver_does_not_hold_up_an_edit(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    with http_receiver() as http:
        http.mode = "hang"
        config = write_config(tmp_path, http, None)
        root = tmp_path / "m"
        write_atomic(root / "a.yaml", manifest("a", secret_env="SW_SECRET"))
        d = make_daemon(
            emu, root, env={"SW_SECRET": SW_SECRET}, extra=["--config", str(config)]
        ).start()
        outage(emu, d)
        # Every provider's thread is now stuck in a request that does not answer.
        wait_until(lambda: http.attempts >= 3, what="the receiver to hang three requests")
        write_atomic(
            root / "a.yaml", manifest("a", display="Edited while hung", secret_env="SW_SECRET")
        )
        wait_until(lambda: named(emu, "Edited while hung"), timeout=30, what="the edit")
        assert http.received == []  # still hung: the edit did not wait for it
        http.mode = "fail"
        http.release.set()
        write_atomic(
            root / "a.yaml", manifest("a", display="Edited while failing", secret_env="SW_SECRET")
        )
        wait_until(lambda: named(emu, "Edited while failing"), timeout=30, what="the edit")
        # The released request answered 500: counted, retried, never delivered.
        wait_until(lambda: failed(d, "hook") >= 1, what="a failed delivery counted")
        assert http.received == []


def failed(d: DaemonProcess, provider: str) -> float:
    pattern = rf'^chanops_notifications_failed_total{{provider="{provider}"}} (\S+)$'
    found = re.search(pattern, d.http("/metrics").text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_guard_on_a_broken_file_names_the_file_and_reaches_a_label_route(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    """A file that stops loading freezes its connections: the guard.blocked message
    names that file and carries the labels they had when it last loaded, so a route
    with a selector still receives it (issue 16)."""
    with http_receiver() as http:
        config = write_config(tmp_path, http, None)
        text = config.read_text().replace("      severity: warning\n", "")
        config.write_text(text + "      severity: warning\n      selector: team=americas\n")
        root = tmp_path / "m"
        labelled = manifest("us", secret_env="SW_SECRET").replace(
            "metadata:\n", "metadata:\n  labels: {team: americas}\n"
        )
        write_atomic(root / "us.yaml", labelled)
        d = make_daemon(
            emu, root, env={"SW_SECRET": SW_SECRET}, extra=["--config", str(config)]
        ).start()
        mark = d.mark()
        write_atomic(root / "us.yaml", labelled + "  foo: [\n")
        d.wait_event(lambda e: e["event"] == "guard.blocked", after=mark, timeout=30)
        told = http.wait("/hook", 1)[0].json()
        assert told["type"] == "guard.blocked"
        assert told["connection"] == "us"
        assert told["file"] == "us.yaml"
        assert told["labels"] == {"team": "americas"}


def test_a_mass_delete_guard_names_the_deleted_connection_s_file_and_labels(
    tmp_path: Path, emu: EmulatorProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    """The files of connections whose manifests were deleted are gone from the load;
    the message still names the file that defined the one it tells, and its labels."""
    with http_receiver() as http:
        config = write_config(tmp_path, http, None)
        root = tmp_path / "m"
        for name in ("one", "two", "three"):
            text = manifest(name, secret_env="SW_SECRET").replace(
                "metadata:\n", "metadata:\n  labels: {team: americas}\n"
            )
            write_atomic(root / f"{name}.yaml", text)
        d = make_daemon(
            emu,
            root,
            env={"SW_SECRET": SW_SECRET},
            extra=["--config", str(config), "--max-delete", "1"],
        ).start()
        mark = d.mark()
        (root / "one.yaml").unlink()
        (root / "two.yaml").unlink()
        d.wait_event(lambda e: e["event"] == "guard.blocked", after=mark, timeout=30)
        told = http.wait("/hook", 1)[0].json()
        assert told["type"] == "guard.blocked" and "mass-delete" in told["title"]
        assert (told["connection"], told["file"]) in (("one", "one.yaml"), ("two", "two.yaml"))
        assert told["labels"] == {"team": "americas"}
