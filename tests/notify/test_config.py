"""The `notifications:` section: what is accepted, and every refusal names file:line:col."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chanops.config import load_notifications
from chanops.errors import ConfigError
from chanops.notify._selector import SelectorError, parse_selector
from chanops.notify.config import parse_notifications
from daemon.helpers import chanops_launcher

GOOD = """\
platform: "local::memory:"
notifications:
  providers:
    - name: ops-slack
      kind: slack
      urlFile: slack-url
      rateLimit: 5/30s
    - name: teams
      kind: msteams
      urlFile: teams-url
    - name: hook
      kind: webhook
      urlFile: hook-url
      secretFile: hook-key
      timeout: 500ms
    - name: mail
      kind: email
      host: smtp.example.com
      port: 2525
      username: chanops
      passwordFile: smtp-password
      from: chanops@example.com
      to: [ops@example.com, oncall@example.com]
  routes:
    - providers: [ops-slack, hook]
      severity: warning
    - providers: mail
      severity: error
      events: [connection.*, platform.unreachable]
      selector: team=emea,tier in (gold, silver),!legacy
"""


def write_files(tmp_path: Path) -> None:
    (tmp_path / "slack-url").write_text("https://hooks.slack.com/services/T0/B0/SLACKSECRET\n")
    (tmp_path / "teams-url").write_text("https://example.logic.azure.com/workflows/TEAMSSECRET\n")
    (tmp_path / "hook-url").write_text("https://hooks.example.com/chanops\n")
    (tmp_path / "hook-key").write_text("webhook-hmac-key-0123456789\n")
    (tmp_path / "smtp-password").write_text("smtp-password-0123456789\n")


def test_a_full_section_parses(tmp_path: Path) -> None:
    write_files(tmp_path)
    config = tmp_path / "chanops.yaml"
    config.write_text(GOOD)
    loaded = load_notifications(str(config))
    assert loaded is not None
    providers = {p.name: p for p in loaded.config.providers}
    assert [p.kind for p in loaded.config.providers] == ["slack", "msteams", "webhook", "email"]
    assert providers["ops-slack"].rate_limit.messages == 5
    assert providers["ops-slack"].rate_limit.per_seconds == 30
    assert providers["hook"].timeout_s == 0.5
    assert providers["mail"].recipients == ("ops@example.com", "oncall@example.com")
    assert providers["mail"].port == 2525
    assert (
        loaded.credentials["ops-slack"].url == "https://hooks.slack.com/services/T0/B0/SLACKSECRET"
    )
    assert loaded.credentials["hook"].secret == "webhook-hmac-key-0123456789"
    assert loaded.credentials["mail"].password == "smtp-password-0123456789"
    mail_route = loaded.config.routes[1]
    assert mail_route.providers == ("mail",)
    assert mail_route.severity == "error"
    assert mail_route.selector is not None
    assert mail_route.selector.matches({"team": "emea", "tier": "gold"})
    assert not mail_route.selector.matches({"team": "emea", "tier": "gold", "legacy": "1"})
    assert not mail_route.selector.matches({"team": "apac", "tier": "gold"})
    assert set(loaded.secret_values()) >= {
        "webhook-hmac-key-0123456789",
        "smtp-password-0123456789",
    }


def test_no_section_is_none(tmp_path: Path) -> None:
    config = tmp_path / "chanops.yaml"
    config.write_text('platform: "local::memory:"\n')
    assert load_notifications(str(config)) is None
    assert load_notifications(str(tmp_path / "absent.yaml")) is None


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_notifications("chanops.yaml", text)
    return str(caught.value)


def test_an_unknown_kind_is_refused_at_its_position() -> None:
    message = refusal("notifications:\n  providers:\n    - name: p\n      kind: pager\n")
    assert message.startswith("chanops.yaml:4:13: notifications.providers[0].kind: ")
    assert "unknown provider kind 'pager'" in message
    assert "slack, msteams, webhook, email" in message


def test_a_file_that_is_not_yaml_is_refused_at_its_position(tmp_path: Path) -> None:
    message = refusal("notifications:\n  providers:\n    - name: x\n     kind: y\n")
    assert message == (
        "chanops.yaml:4:6: not valid YAML: expected <block end>, but found '<block mapping start>'"
    )
    # The same one line from the commands, which read chanops.yaml as a whole first.
    config = tmp_path / "chanops.yaml"
    config.write_text("notifications:\n  providers: [\n")
    for command in (["notify", "test"], ["run", "--once", "--platform", "local::memory:"]):
        done = subprocess.run(
            [*chanops_launcher(), *command, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        assert done.returncode == 1, command
        assert done.stderr.strip().splitlines() == [
            f"Error: {config}:3:1: not valid YAML: expected the node content, but found "
            "'<stream end>'"
        ], command


def test_an_inline_url_or_password_is_refused() -> None:
    url = refusal(
        "notifications:\n  providers:\n    - name: s\n      kind: slack\n"
        "      url: https://hooks.slack.com/services/T/B/INLINESECRET\n"
    )
    assert url.startswith("chanops.yaml:5:7: notifications.providers[0].url: ")
    assert "urlFile" in url
    assert "INLINESECRET" not in url
    password = refusal(
        "notifications:\n  providers:\n    - name: m\n      kind: email\n"
        "      host: h\n      from: a@b\n      to: c@d\n      password: hunter2hunter2\n"
    )
    assert "providers[0].password" in password
    assert "passwordFile" in password
    assert "hunter2" not in password


def test_a_bad_selector_is_refused_at_its_position() -> None:
    message = refusal(
        "notifications:\n  providers:\n    - {name: s, kind: slack, urlFile: f}\n"
        "  routes:\n    - providers: [s]\n      selector: 'team in emea'\n"
    )
    assert message.startswith("chanops.yaml:6:17: notifications.routes[0].selector: ")
    assert "bad label selector" in message


def test_route_refusals_name_the_field() -> None:
    head = "notifications:\n  providers:\n    - {name: s, kind: slack, urlFile: f}\n  routes:\n"
    unknown_provider = refusal(head + "    - providers: [s, pager]\n")
    assert "routes[0].providers[1]: no provider named 'pager'" in unknown_provider
    unknown_event = refusal(head + "    - {providers: [s], events: [connection.exploded]}\n")
    assert "routes[0].events[0]: 'connection.exploded' matches no event type" in unknown_event
    bad_severity = refusal(head + "    - {providers: [s], severity: fatal}\n")
    assert "routes[0].severity: unknown severity 'fatal'" in bad_severity
    missing = refusal("notifications:\n  providers:\n    - {name: h, kind: webhook, urlFile: f}\n")
    assert "providers[0].secretFile: missing" in missing


def test_a_missing_credential_file_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "chanops.yaml"
    config.write_text(
        "notifications:\n  providers:\n    - name: s\n      kind: slack\n"
        "      urlFile: nowhere/slack-url\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_notifications(str(config))
    message = str(caught.value)
    assert message.startswith(f"{config}:5:16: notifications.providers[0].urlFile: ")
    assert "cannot read the webhook URL file" in message


def test_plain_http_to_another_host_is_refused(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("http://hooks.example.com/SECRETPATH\n")
    config = tmp_path / "chanops.yaml"
    config.write_text("notifications:\n  providers:\n    - {name: s, kind: slack, urlFile: url}\n")
    with pytest.raises(ConfigError) as caught:
        load_notifications(str(config))
    assert "plain http://" in str(caught.value)
    assert "SECRETPATH" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("team=emea", {"team": "emea"}, True),
        ("team==emea", {"team": "apac"}, False),
        ("team!=emea", {}, True),
        ("tier in (gold,silver)", {"tier": "silver"}, True),
        ("tier notin (gold)", {"tier": "gold"}, False),
        ("team", {"team": ""}, True),
        ("!team", {"team": "x"}, False),
        ("team=emea,tier=gold", {"team": "emea"}, False),
    ],
)
def test_selectors(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["", "=emea", "tier in gold", "a,,b", "tier in ()"])
def test_bad_selectors(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


def test_run_refuses_a_bad_section_with_one_line_and_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "chanops.yaml"
    config.write_text(
        "notifications:\n  providers:\n    - name: p\n      kind: pagerduty\n      urlFile: f\n"
    )
    (tmp_path / "connections.d").mkdir()
    done = subprocess.run(
        [
            *chanops_launcher(),
            "run",
            "--config",
            str(config),
            "--manifests",
            str(tmp_path / "connections.d"),
            "--platform",
            "local::memory:",
            "--state",
            str(tmp_path / "state.db"),
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"Error: {config}:4:13: notifications.providers[0].kind: unknown provider kind "
        "'pagerduty'; expected one of slack, msteams, webhook, email"
    ]
    assert "Traceback" not in done.stdout
