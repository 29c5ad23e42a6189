"""`chanops login` against the emulator's OAuth server (real processes, real HTTP).

The redirect is driven with httpx the way a browser follows it; every failure is one
line on stderr and exit 1, and no secret, code or token is ever printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from chanops.state.tokens import load_tokens
from reliability.oauth_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    Login,
    LoginResult,
    oauth_emulator,
    oauth_stats,
    secret_file,
    token_failure,
)
from support.emulator import EmulatorProcess


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator for the module: each test logs in to its own state store."""
    with oauth_emulator(tmp_path_factory.mktemp("oauth-login"), ttl="1h") as emulator:
        yield emulator


def _one_clear_line(result: LoginResult, *expected: str) -> None:
    assert result.code == 1, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    for text in expected:
        assert text in lines[0]
    assert "Traceback" not in result.stderr
    assert CLIENT_SECRET not in result.stdout + result.stderr


def test_login_stores_a_token_set_and_prints_only_the_url(
    tmp_path: Path, emu: EmulatorProcess
) -> None:
    state = tmp_path / "state" / "state.db"
    flow = Login(emu, state, secret_file(tmp_path))
    answer = flow.redirect()
    result = flow.finish()
    assert answer.status_code == 200, answer.text
    assert answer.text == "chanops: authorised. You can close this tab."
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == result.url  # the URL alone, on its own line
    query = parse_qs(urlsplit(result.url).query)
    assert urlsplit(result.url).path == "/Actindo.CoreModules.Auth.OAuth2.authorize"
    assert query["client_id"] == [CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["state"][0]) >= 20
    assert query["redirect_uri"][0].startswith("http://127.0.0.1:")
    stored = load_tokens(state)
    assert stored is not None
    assert stored.client_id == CLIENT_ID and stored.platform_url == emu.url
    assert stored.refresh_token and stored.access_token
    assert stored.login == stored.generation == 1
    printed = result.stdout + result.stderr
    for secret in (CLIENT_SECRET, stored.access_token, stored.refresh_token):
        assert secret not in printed
    assert oauth_stats(emu)["code_exchanges"] >= 1


def test_the_redirect_port_can_be_fixed(tmp_path: Path, emu: EmulatorProcess) -> None:
    from support.emulator import free_port

    port = free_port()
    flow = Login(
        emu, tmp_path / "state.db", secret_file(tmp_path), extra=["--redirect-port", str(port)]
    )
    flow.redirect()
    result = flow.finish()
    assert result.code == 0, result.stderr
    assert parse_qs(urlsplit(result.url).query)["redirect_uri"] == [
        f"http://127.0.0.1:{port}/callback"
    ]


def test_a_denial_is_one_clear_line(tmp_path: Path, emu: EmulatorProcess) -> None:
    state = tmp_path / "state.db"
    flow = Login(emu, state, secret_file(tmp_path))
    page = flow.redirect(error="access_denied", error_description="the user said no", code="")
    _one_clear_line(flow.finish(), "denied", "access_denied", "the user said no")
    assert page.status_code == 400 and "did not complete" in page.text
    assert load_tokens(state) is None


def test_a_redirect_with_a_wrong_state_is_refused(tmp_path: Path, emu: EmulatorProcess) -> None:
    state = tmp_path / "state.db"
    flow = Login(emu, state, secret_file(tmp_path))
    page = flow.redirect(state="forged-state-value")
    _one_clear_line(flow.finish(), "state does not match")
    assert load_tokens(state) is None
    assert page.status_code == 400 and "did not complete" in page.text  # never "authorised"


def test_a_code_exchange_the_token_endpoint_fails_is_one_clear_line(
    tmp_path: Path, emu: EmulatorProcess
) -> None:
    """The client check passed, the person approved, then the exchange answers 500: the
    terminal says so in one line and the browser's page does not claim success."""
    state = tmp_path / "state.db"
    flow = Login(emu, state, secret_file(tmp_path))
    flow.authorize_url()  # printed after the client check
    token_failure(emu, "500", times=1)
    answer = httpx.get(flow.url, timeout=10)
    page = httpx.get(answer.headers["location"], timeout=30)
    _one_clear_line(flow.finish(), "the token endpoint answered 500 Internal Server Error")
    assert page.status_code == 400 and "did not complete" in page.text
    assert load_tokens(state) is None


def test_a_login_nobody_completes_times_out(tmp_path: Path, emu: EmulatorProcess) -> None:
    flow = Login(emu, tmp_path / "state.db", secret_file(tmp_path), extra=["--timeout", "1s"])
    _one_clear_line(flow.finish(), "no redirect reached", "within 1s")


@pytest.mark.parametrize(
    ("client_id", "secret", "expected"),
    [
        (CLIENT_ID, "not-the-secret", "refused client id 'chanops_ci' (invalid_client"),
        ("nobody_here", CLIENT_SECRET, "refused client id 'nobody_here' (invalid_client"),
    ],
)
def test_wrong_client_credentials_are_one_clear_line(
    tmp_path: Path, emu: EmulatorProcess, client_id: str, secret: str, expected: str
) -> None:
    flow = Login(emu, tmp_path / "state.db", secret_file(tmp_path, secret), client_id=client_id)
    result = flow.finish()
    _one_clear_line(result, expected)
    assert result.stdout == ""  # refused before any URL was offered
    assert "not-the-secret" not in result.stderr


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("html", "the token endpoint answered 200 OK with a text/html body"),
        ("500", "the token endpoint answered 500 Internal Server Error"),
    ],
)
def test_a_token_endpoint_that_answers_no_token_is_one_clear_line(
    tmp_path: Path, emu: EmulatorProcess, mode: str, expected: str
) -> None:
    token_failure(emu, mode, times=1)
    flow = Login(emu, tmp_path / "state.db", secret_file(tmp_path))
    _one_clear_line(flow.finish(), expected)


def test_bad_flags_are_one_clear_line(tmp_path: Path, emu: EmulatorProcess) -> None:
    flow = Login(emu, tmp_path / "state.db", secret_file(tmp_path), client_id="1bad")
    _one_clear_line(flow.finish(), "client id '1bad'")
