"""The notifier in process, delivering to real local receivers over HTTP and SMTP.

Events go through a real EventSink; the receivers are real servers on loopback.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from chanops.events import EventSink
from chanops.notify.config import LoadedNotifications, parse_notifications, read_credentials
from chanops.notify.dispatch import Notifier
from chanops.observability.logging import Redactor
from notify.receivers import HttpReceiver, SmtpReceiver, http_receiver

HMAC_KEY = "hmac-key-for-the-test-0123456789"
PLATFORM_SECRET = "platform-secret-value-abcdef"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as r:
        yield r


def load(
    tmp_path: Path, receiver: HttpReceiver, extra: str = "", routes: str = ""
) -> LoadedNotifications:
    (tmp_path / "slack-url").write_text(f"{receiver.url}/slack\n")
    (tmp_path / "teams-url").write_text(f"{receiver.url}/teams\n")
    (tmp_path / "hook-url").write_text(f"{receiver.url}/hook\n")
    (tmp_path / "hook-key").write_text(HMAC_KEY + "\n")
    text = f"""\
notifications:
  providers:
    - {{name: slack, kind: slack, urlFile: slack-url}}
    - {{name: teams, kind: msteams, urlFile: teams-url}}
    - {{name: hook, kind: webhook, urlFile: hook-url, secretFile: hook-key{extra}}}
  routes:
{routes or "    - {providers: [slack, teams, hook], severity: warning}"}
"""
    parsed = parse_notifications("chanops.yaml", text)
    assert parsed is not None
    credentials = {p.name: read_credentials(p, tmp_path) for p in parsed.providers}
    return LoadedNotifications(parsed, credentials, tmp_path / "chanops.yaml")


def notifier_for(
    loaded: LoadedNotifications, *, labels: dict[str, dict[str, str]] | None = None
) -> tuple[Notifier, EventSink, CollectorRegistry]:
    registry = CollectorRegistry()
    redactor = Redactor([PLATFORM_SECRET, *loaded.secret_values()])
    notifier = Notifier(
        loaded.config,
        loaded.credentials,
        registry=registry,
        describe=lambda name: (f"{name}.yaml", (labels or {}).get(name, {})),
        revision=lambda: "0123456789abcdef",
        scrub=redactor.scrub,
        backoff=(0.01,),
    )
    sink = EventSink()
    sink.subscribe(notifier.on_event)
    notifier.start()
    return notifier, sink, registry


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_failure_streak_is_one_message_and_its_recovery_one_more(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    notifier, sink, registry = notifier_for(load(tmp_path, receiver))
    for _ in range(5):
        sink.emit(
            "connection.failed",
            "error",
            connection="shopware-de",
            driver="shopware6",
            action="update",
            error=f"invalid_credentials: the key {PLATFORM_SECRET} is wrong (field url)",
        )
    sink.emit(
        "connection.parked", "info", connection="shopware-de", reason="until the manifest changes"
    )
    sink.emit("connection.updated", "info", connection="shopware-de", action="update")
    sink.emit("connection.updated", "info", connection="shopware-de", action="update")
    notifier.close()
    hooks = receiver.on("/hook")
    assert [h.json()["type"] for h in hooks] == ["connection.failed", "connection.recovered"]
    assert [h.json()["recovery"] for h in hooks] == [False, True]
    assert len(receiver.on("/slack")) == 2
    assert len(receiver.on("/teams")) == 2
    failure = hooks[0].json()
    assert failure["connection"] == "shopware-de"
    assert failure["file"] == "shopware-de.yaml"
    assert failure["revision"] == "0123456789abcdef"
    assert "invalid_credentials" in failure["text"]
    assert "the key (sensitive value) is wrong" in failure["text"]
    assert "manifest" in failure["action"]
    slack_text = receiver.on("/slack")[0].json()["blocks"][0]["text"]["text"]
    assert "shopware-de" in slack_text
    for request in receiver.received:
        assert PLATFORM_SECRET.encode() not in request.body
        assert HMAC_KEY.encode() not in request.body
    assert metric(registry, "chanops_notifications_sent_total", provider="hook") == 2


def test_connection_failures_during_an_outage_are_not_messages_of_their_own(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    notifier, sink, _ = notifier_for(load(tmp_path, receiver))
    sink.emit("platform.unreachable", "error", error="ConnectError: refused")
    for name in ("a", "b", "c"):
        sink.emit("connection.failed", "error", connection=name, action="update", error="x")
    sink.emit("platform.reachable", "info", outage_ms=900)
    sink.emit("connection.failed", "error", connection="a", action="update", error="422")
    notifier.close()
    assert [h.json()["type"] for h in receiver.on("/hook")] == [
        "platform.unreachable",
        "platform.reachable",
        "connection.failed",
    ]


def test_failures_while_a_login_is_awaited_are_not_messages_of_their_own(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    notifier, sink, _ = notifier_for(load(tmp_path, receiver))
    sink.emit("auth.reauthorization_required", "error", error="invalid_grant: run chanops login")
    sink.emit("connection.failed", "error", connection="a", action="update", error="x")
    sink.emit("sync.failed", "warning", connection="a", stage="trigger", error="x")
    sink.emit("auth.restored", "info", reason="a new token set in the state store")
    sink.emit("sync.failed", "warning", connection="a", job_id=3, error="job failed")
    notifier.close()
    assert [h.json()["type"] for h in receiver.on("/hook")] == [
        "auth.reauthorization_required",
        "auth.restored",
        "sync.failed",
    ]
    assert "chanops login" in receiver.on("/hook")[0].json()["action"]


def test_the_webhook_signature_verifies(tmp_path: Path, receiver: HttpReceiver) -> None:
    notifier, sink, _ = notifier_for(load(tmp_path, receiver))
    sink.emit("platform.unreachable", "error", error="ConnectError: refused", retry_in_s=1)
    sink.emit("platform.unreachable", "error", error="ConnectError: refused", retry_in_s=2)
    sink.emit("platform.reachable", "info", outage_ms=1200)
    notifier.close()
    hooks = receiver.on("/hook")
    assert [h.json()["type"] for h in hooks] == ["platform.unreachable", "platform.reachable"]
    for request in hooks:
        expected = "sha256=" + hmac.new(HMAC_KEY.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Chanops-Signature"] == expected
    forged = hooks[0].body.replace(b"unreachable", b"reachable!!")
    forged_sig = "sha256=" + hmac.new(HMAC_KEY.encode(), forged, hashlib.sha256).hexdigest()
    assert forged_sig != hooks[0].headers["X-Chanops-Signature"]


def test_routes_by_severity_event_type_and_labels(tmp_path: Path, receiver: HttpReceiver) -> None:
    routes = (
        "    - {providers: [slack], severity: error, events: [platform.*]}\n"
        "    - {providers: [teams], severity: info, selector: team=emea}\n"
        "    - {providers: [hook], severity: warning, events: [guard.*, sync.*]}\n"
    )
    labels = {"emea-shop": {"team": "emea"}, "apac-shop": {"team": "apac"}}
    notifier, sink, _ = notifier_for(load(tmp_path, receiver, routes=routes), labels=labels)
    sink.emit("connection.failed", "error", connection="emea-shop", action="create", error="x")
    sink.emit("connection.failed", "error", connection="apac-shop", action="create", error="x")
    sink.emit("platform.unreachable", "error", error="down")
    sink.emit("sync.stuck", "warning", connection="apac-shop", job_id=7)
    sink.emit("sync.failed", "warning", connection="apac-shop", job_id=7, error="job failed")
    sink.emit("guard.blocked", "warning", connection="a", rule="mass-delete", action="delete")
    sink.emit("guard.blocked", "warning", connection="b", rule="mass-delete", action="delete")
    sink.emit("reconcile.completed", "info", kind="partial", blocked=0)
    sink.emit("reconcile.completed", "info", kind="full", blocked=0)
    notifier.close()
    assert [r.json()["text"][:20] for r in receiver.on("/slack")] == ["Platform unreachable"[:20]]
    teams = [
        r.json()["attachments"][0]["content"]["body"][0]["text"] for r in receiver.on("/teams")
    ]
    assert teams == ["Connection emea-shop: create failed"]
    hooks = [r.json()["type"] for r in receiver.on("/hook")]
    assert hooks == ["sync.stuck", "guard.blocked", "guard.released"]


def test_the_rate_limit_drops_and_counts(tmp_path: Path, receiver: HttpReceiver) -> None:
    notifier, sink, registry = notifier_for(load(tmp_path, receiver, extra=", rateLimit: 2/1m"))
    for name in ("a", "b", "c", "d"):
        sink.emit("connection.failed", "error", connection=name, action="update", error="e")
    notifier.close()
    assert len(receiver.on("/hook")) == 2
    assert (
        metric(
            registry, "chanops_notifications_dropped_total", provider="hook", reason="rate_limited"
        )
        == 2
    )
    assert len(receiver.on("/slack")) == 4


def test_a_failing_receiver_is_retried_then_dropped(tmp_path: Path, receiver: HttpReceiver) -> None:
    receiver.mode = "fail"
    notifier, sink, registry = notifier_for(load(tmp_path, receiver))
    sink.emit("daemon.crashed", "critical", task="worker 0", error="boom")
    notifier.close()
    assert metric(registry, "chanops_notifications_failed_total", provider="hook") == 4
    assert (
        metric(registry, "chanops_notifications_dropped_total", provider="hook", reason="failed")
        == 1
    )
    assert metric(registry, "chanops_notifications_sent_total", provider="hook") == 0


def test_a_hanging_receiver_never_blocks_the_emitter(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    receiver.mode = "hang"
    notifier, sink, registry = notifier_for(load(tmp_path, receiver, extra=", rateLimit: 1000/1m"))
    for i in range(300):
        sink.emit("connection.failed", "error", connection=f"c{i}", action="update", error="e")
    dropped = metric(
        registry, "chanops_notifications_dropped_total", provider="hook", reason="queue_full"
    )
    receiver.release.set()
    receiver.mode = "ok"
    notifier.close(timeout=0.5)
    # The queue bound is what makes emitting independent of the receiver: 300 events into
    # a queue of 100 behind a hung request overflow instead of waiting (a blocking put
    # would hang this test until the receiver's 60 s).
    assert dropped >= 300 - 100 - 1


def test_email_over_starttls(tmp_path: Path) -> None:
    smtp = SmtpReceiver(
        tmp_path / "tls", username="chanops", password="smtp-pass-0123456789"
    ).start()
    try:
        (tmp_path / "smtp-password").write_text("smtp-pass-0123456789\n")
        text = f"""\
notifications:
  providers:
    - name: mail
      kind: email
      host: 127.0.0.1
      port: {smtp.port}
      username: chanops
      passwordFile: smtp-password
      caFile: {smtp.cert}
      from: chanops@example.com
      to: [ops@example.com]
  routes:
    - {{providers: [mail], severity: error}}
"""
        parsed = parse_notifications("chanops.yaml", text)
        assert parsed is not None
        credentials = {p.name: read_credentials(p, tmp_path) for p in parsed.providers}
        loaded = LoadedNotifications(parsed, credentials, tmp_path / "chanops.yaml")
        notifier, sink, registry = notifier_for(loaded)
        sink.emit("auth.reauthorization_required", "error", error="invalid_grant")
        sink.emit("auth.restored", "info")
        notifier.close()
        messages = smtp.wait(2)
        assert [m["Subject"] for m in messages] == [
            "[chanops] ERROR: Authorisation required",
            "[chanops] INFO: Authorisation restored",
        ]
        assert smtp.tls_used == [True, True]
        assert smtp.logins == ["chanops", "chanops"]
        body = messages[0].get_payload()
        assert "chanops login" in str(body)
        assert b"smtp-pass-0123456789" not in b"".join(smtp.raw)
        assert metric(registry, "chanops_notifications_sent_total", provider="mail") == 2
    finally:
        smtp.stop()


def test_each_git_revision_is_told_once_at_info(tmp_path: Path, receiver: HttpReceiver) -> None:
    routes = "    - {providers: [hook], severity: info, events: [git.revision, sync.*]}\n"
    notifier, sink, _ = notifier_for(load(tmp_path, receiver, routes=routes))
    sha = "9f2c1e0d4b5a69788766554433221100aabbccdd"
    for _ in range(3):
        sink.emit("reconcile.started", "info", kind="full", revision=sha, subject="Add shop")
    sink.emit("reconcile.started", "info", kind="partial")  # no revision: a directory root
    sink.emit("sync.failed", "warning", connection="a", job_id=3, error="job failed")
    sink.emit("sync.completed", "info", connection="a", job_id=4)
    notifier.close()
    hooks = [h.json() for h in receiver.on("/hook")]
    assert [h["type"] for h in hooks] == ["git.revision", "sync.failed", "sync.recovered"]
    assert hooks[0]["title"] == "Applying git revision 9f2c1e0d4b5a"
    assert hooks[0]["text"].endswith(f"{sha[:12]}: Add shop")
    assert hooks[0]["severity"] == "info"
