"""Redaction abuse (issue 11, finding 9): a manifest writer makes `1` a "secret".

The attack: `secretRef: {env: PYTHONUNBUFFERED}` (its value is `1`) registered the
value with the log redactor, which then replaced every `1` in every event and in
/status by the marker: audit events became unreadable, and where the marker appeared
told the attacker the value. Now a resolved secret shorter than 8 characters is
refused (naming the connection and field, never the value), the redactor ignores short
values (a short literal secret in a manifest included) and hides by field name instead.
Performed with a real daemon and a real `chanops apply` against the emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from chanops.manifests.secrets import MIN_SECRET_CHARS
from chanops.observability.logging import (
    MIN_REDACTED_CHARS,
    REDACTED,
    Redactor,
    is_secret_key,
)
from daemon.helpers import DaemonProcess, chanops_launcher, manifest, wait_until, write_atomic
from support.emulator import EmulatorProcess

GOOD_SECRET = "good-secret-value-6a1f"


def test_the_redactor_and_the_engine_agree_on_the_minimum() -> None:
    assert MIN_REDACTED_CHARS == MIN_SECRET_CHARS == 8


def test_short_values_are_not_registered_long_ones_are() -> None:
    r = Redactor(["1", "tok", "x" * 7, GOOD_SECRET])
    assert len(r) == 1
    event = {
        "event": "connection.created",
        "connection": "shop-1",
        "connection_id": 1,
        "message": f"created 1 connection with {GOOD_SECRET} and tok",
        "timestamp": "2026-11-11T11:11:11Z",
    }
    out = r(None, "info", dict(event))
    assert out["connection"] == "shop-1" and out["connection_id"] == 1
    assert out["message"] == f"created 1 connection with {REDACTED} and tok"
    assert out["timestamp"] == "2026-11-11T11:11:11Z"


def test_values_under_secret_keys_are_hidden_whatever_their_length() -> None:
    r = Redactor()
    event = {
        "event": "x",
        "token": "1",
        "clientSecret": "ab",
        "nested": {"sftpPassword": "p", "/credentials/apiKey": "k", "count": 1},
        "webhook_secret": ["a", "b"],
        "has_token": True,
        "refresh_token": None,
        "accessKeyId": "SWIA1",  # an identifier, not a secret
        "tokens": 3,
    }
    out = r(None, "info", dict(event))
    assert out["token"] == out["clientSecret"] == out["webhook_secret"] == REDACTED
    assert out["nested"] == {"sftpPassword": REDACTED, "/credentials/apiKey": REDACTED, "count": 1}
    assert out["has_token"] is True and out["refresh_token"] is None
    assert out["accessKeyId"] == "SWIA1" and out["tokens"] == 3
    for key in ("Authorization", "platform_token", "spec.credentials.restPassword", "api-key"):
        assert is_secret_key(key), key
    for key in ("event", "connection", "secrets_dirs", "token_file", "error", "accessKeyId"):
        assert not is_secret_key(key), key


# -- real processes ---------------------------------------------------------------------


def _layout(tmp_path: Path) -> Path:
    root = tmp_path / "connections.d"
    write_atomic(root / "good.yaml", manifest("good", secret_env="GOOD_SECRET"))
    write_atomic(root / "short-env.yaml", manifest("short-env", secret_env="SHORTONE"))
    write_atomic(root / "unbuffered.yaml", manifest("unbuffered", secret_env="PYTHONUNBUFFERED"))
    # A literal short "secret" (validate warns): applied, but never a redaction pattern.
    write_atomic(
        root / "literal.yaml",
        manifest("literal").replace("{secretRef: {env: SW_SECRET}}", '"1"'),
    )
    return root


ENV = {"GOOD_SECRET": GOOD_SECRET, "SHORTONE": "1", "PYTHONUNBUFFERED": "1"}


def _refusal(name: str, variable: str) -> str:
    return (
        f"connection {name}: spec.credentials.secretAccessKey: secretRef env:{variable} "
        f"is shorter than {MIN_SECRET_CHARS} characters"
    )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_apply_refuses_a_short_secret_naming_connection_and_field(
    tmp_path: Path, emulator: EmulatorProcess
) -> None:
    root = _layout(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    env.update(ENV)
    done = subprocess.run(
        [
            *chanops_launcher(),
            "apply",
            "--yes",
            "--manifests",
            str(root),
            "--platform",
            emulator.url,
            "--token-file",
            str(_token_file(tmp_path, emulator)),
            "--state",
            str(tmp_path / "state" / "state.db"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert _refusal("short-env", "SHORTONE") in out
    assert _refusal("unbuffered", "PYTHONUNBUFFERED") in out
    assert "Apply complete: 2 succeeded" in done.stdout  # good and literal
    assert GOOD_SECRET not in out
    created = sorted(c["name"] for c in emulator.admin.connections())
    assert created == ["good", "literal"]


def _token_file(tmp_path: Path, emulator: EmulatorProcess) -> Path:
    path = tmp_path / "platform-token"
    path.write_text(emulator.token + "\n")
    path.chmod(0o600)
    return path


def test_a_daemon_refuses_short_secrets_and_its_log_stays_intact(
    tmp_path: Path, emulator: EmulatorProcess
) -> None:
    root = _layout(tmp_path)
    d = DaemonProcess(
        tmp_path,
        manifests=root,
        platform=emulator.url,
        token=emulator.token,
        env=ENV,
        extra=["--log-level", "debug"],
    )
    d.start()
    try:
        d.wait_event(
            lambda e: e["event"] == "connection.created" and e.get("connection") == "literal",
            timeout=30,
        )
        wait_until(
            lambda: all(
                any(_refusal(n, v) in json.dumps(e) for e in d.events())
                for n, v in (("short-env", "SHORTONE"), ("unbuffered", "PYTHONUNBUFFERED"))
            ),
            what="both refusals logged",
            timeout=30,
        )
        status = d.http("/status")
        assert status.status_code == 200
        status_text = status.text
    finally:
        assert d.stop() == 0
    lines = d.lines()
    events = [json.loads(line) for line in lines]
    # No line was mangled: nothing was registered that could match ordinary text.
    assert not [line for line in lines if REDACTED in line], [
        line for line in lines if REDACTED in line
    ][:5]
    for e in events:
        datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))  # digits intact
    # Audit events that carry a 1 keep it: ids, counts and names with a 1 in them.
    audit = [e for e in events if e["event"].startswith("connection.")]
    assert any("1" in s for e in audit for s in _strings(e)) or any(
        1 in (v for v in e.values() if isinstance(v, int)) for e in audit
    ), audit
    mentions = [e for e in events if "shorter than" in json.dumps(e)]
    # The refusal itself is an error or a warning; the condition transitions that
    # carry its message are state records (their level is the condition's).
    refusals = [e for e in mentions if e["event"] != "connection.condition"]
    assert refusals and all(e["level"] in ("error", "warning") for e in refusals), refusals
    transitions = [e for e in mentions if e["event"] == "connection.condition"]
    # A short secret is a SecretUnresolved condition, and the connection is not Ready.
    assert {(e["condition"], e["status"]) for e in transitions} == {
        ("SecretUnresolved", "True"),
        ("Ready", "False"),
    }, transitions
    assert REDACTED not in status_text
    assert "short-env" in status_text and "shorter than" in status_text
    assert GOOD_SECRET not in d.output() + status_text


def test_validate_check_secrets_refuses_a_short_secret(tmp_path: Path) -> None:
    root = _layout(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    env.update(ENV)
    done = subprocess.run(
        [*chanops_launcher(), "validate", "--check-secrets", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    assert len(errors) == 2, done.stdout
    for line, variable in zip(errors, ("SHORTONE", "PYTHONUNBUFFERED"), strict=True):
        # file:line:col of the manifest, then the field and the reference; never the value.
        assert ": error: spec.credentials.secretAccessKey: " in line
        assert f"secretRef env:{variable} is shorter than {MIN_SECRET_CHARS} characters" in line
    assert "short-env.yaml" in errors[0] and "unbuffered.yaml" in errors[1]
    # Without --check-secrets nothing is read, so nothing is refused.
    lenient = subprocess.run(
        [*chanops_launcher(), "validate", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert lenient.returncode == 0, lenient.stdout
