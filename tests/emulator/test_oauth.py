"""The emulator's OAuth 2.0 server, over real HTTP against `chanops emulator --oauth-client`.

The code flow with PKCE, expiry, rotation with a grace period, revocation, the token
endpoint's failure knob and every refusal; the API accepting the access tokens and
answering 401 `invalid_token` to any other.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

from chanops.commands.emulator import command
from chanops.emulator.app import create_app
from chanops.emulator.oauth import AUTHORIZE_PATH, TOKEN_PATH, OAuthClient, OAuthConfig
from support.emulator import EmulatorProcess, start_emulator

CLIENT_ID = "chanops_test"
SECRET = "s3cret:with-colon"  # a secret may hold the separator
REDIRECT = "http://127.0.0.1:53682/callback"
TTL_S = 2.0  # short, with a margin for a loaded machine between issue and use
GRACE_S = 2.0
LIST = "/api/v1/connections"
RPC_LIST = "/Actindo.Modules.Actindo.Channels.Connections.getList"
TESTING = "/api/v1/testing/oauth"


class Core1:
    """The emulator process and one HTTP client for it (a connection pool, not one per call)."""

    def __init__(self, process: EmulatorProcess, http: httpx.Client) -> None:
        self.process = process
        self.http = http
        self.admin = process.admin
        self.token = process.token

    def logs(self) -> str:
        return self.process.logs()


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core1]:
    args = [
        "--oauth-client",
        f"{CLIENT_ID}:{SECRET}",
        "--oauth-client",
        "other_app:other-secret",
        "--access-token-ttl",
        f"{TTL_S:g}s",
        "--rotate-refresh-tokens",
        "--refresh-grace",
        f"{GRACE_S:g}s",
    ]
    with (
        start_emulator(tmp_path_factory.mktemp("oauth"), extra_args=args) as process,
        httpx.Client(base_url=process.url, timeout=10) as http,
    ):
        yield Core1(process, http)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorize(emu: Core1, **params: str) -> httpx.Response:
    query = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT}
    query.update(params)
    return emu.http.get(AUTHORIZE_PATH, params=query)


def redirected(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def token(emu: Core1, **form: str) -> httpx.Response:
    body = {"client_id": CLIENT_ID, "client_secret": SECRET, **form}
    return emu.http.post(TOKEN_PATH, data=body)


def login(emu: Core1) -> dict[str, Any]:
    """The whole code flow with PKCE, as `chanops login` runs it; the token answer."""
    verifier, challenge = pkce()
    back = redirected(
        authorize(emu, state="st-1", code_challenge=challenge, code_challenge_method="S256")
    )
    assert back["state"] == "st-1"
    r = token(
        emu,
        grant_type="authorization_code",
        code=back["code"],
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def refresh(emu: Core1, refresh_token: str) -> httpx.Response:
    return token(emu, grant_type="refresh_token", refresh_token=refresh_token)


def api(emu: Core1, access_token: str, rpc: bool = False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {access_token}"}
    if rpc:
        return emu.http.post(RPC_LIST, json={"start": 0, "limit": 5}, headers=headers)
    return emu.http.get(LIST, headers=headers)


def oauth_error(r: httpx.Response) -> tuple[int, str]:
    body = r.json()
    assert body["error_description"]
    return r.status_code, body["error"]


def test_the_code_flow_with_pkce_gives_tokens_both_apis_accept(emu: Core1) -> None:
    tokens = login(emu)
    assert set(tokens) == {"access_token", "expires_in", "token_type", "scope", "refresh_token"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == TTL_S
    assert tokens["scope"] == "api"
    assert api(emu, tokens["access_token"]).status_code == 200
    r = api(emu, tokens["access_token"], rpc=True)
    assert r.status_code == 200 and "data" in r.json()
    # the static token keeps working beside OAuth
    assert api(emu, emu.token).status_code == 200


def test_an_expired_or_unknown_access_token_is_401_invalid_token(emu: Core1) -> None:
    tokens = login(emu)
    assert api(emu, tokens["access_token"]).status_code == 200
    time.sleep(TTL_S + 0.2)
    for rpc in (False, True):
        r = api(emu, tokens["access_token"], rpc=rpc)
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_token"
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert api(emu, "never-issued").json()["error"] == "invalid_token"
    renewed = refresh(emu, tokens["refresh_token"])
    assert renewed.status_code == 200
    assert api(emu, renewed.json()["access_token"]).status_code == 200


def test_rotation_retires_a_refresh_token_after_the_grace_period(emu: Core1) -> None:
    first = login(emu)["refresh_token"]
    r = refresh(emu, first)
    assert r.status_code == 200
    second = r.json()["refresh_token"]
    assert second != first
    # within the grace period the previous one still works (a client that crashed
    # before storing `second` is not locked out)
    again = refresh(emu, first)
    assert again.status_code == 200 and again.json()["refresh_token"] not in (first, second)
    time.sleep(GRACE_S + 0.2)
    assert oauth_error(refresh(emu, first)) == (400, "invalid_grant")
    assert refresh(emu, second).status_code == 200


def test_revoke_ends_every_session_but_not_the_static_token(emu: Core1) -> None:
    tokens = login(emu)
    revoked = emu.admin.oauth_revoke()
    assert revoked["refresh_tokens"] >= 1 and revoked["access_tokens"] >= 1
    assert oauth_error(refresh(emu, tokens["refresh_token"])) == (400, "invalid_grant")
    assert api(emu, tokens["access_token"]).json()["error"] == "invalid_token"
    assert api(emu, emu.token).status_code == 200
    assert login(emu)["access_token"]  # a new login works again


def test_stats_count_token_requests_and_refreshes(emu: Core1) -> None:
    emu.admin.oauth_reset_stats()
    tokens = login(emu)
    for _ in range(3):
        tokens = refresh(emu, tokens["refresh_token"]).json()
    refresh(emu, "bogus")
    stats = emu.admin.oauth_stats()
    assert stats["token_requests"] == 5
    assert stats["code_exchanges"] == 1
    assert stats["refreshes"] == 3
    assert stats["refused.invalid_grant"] == 1
    assert stats["access_tokens_valid"] >= 1


def test_authorize_refuses_an_unknown_client_or_redirect_without_redirecting(
    emu: Core1,
) -> None:
    r = authorize(emu, client_id="nobody")
    assert "location" not in r.headers
    assert oauth_error(r) == (400, "invalid_client")
    assert "nobody" in r.json()["error_description"]
    for bad in ("https://evil.example/cb", "http://evil.example:80/cb", "not a url"):
        r = authorize(emu, redirect_uri=bad)
        assert "location" not in r.headers
        assert oauth_error(r) == (400, "invalid_request")
        assert "redirect_uri" in r.json()["error_description"]


def test_authorize_redirects_other_mistakes_back_with_the_state(emu: Core1) -> None:
    back = redirected(authorize(emu, state="s", code_challenge="x", code_challenge_method="plain"))
    assert back["error"] == "invalid_request" and back["state"] == "s" and "code" not in back
    back = redirected(authorize(emu, state="s", response_type="token"))
    assert back["error"] == "unsupported_response_type"


def test_a_code_is_checked_and_used_once(emu: Core1) -> None:
    verifier, challenge = pkce()
    code = redirected(authorize(emu, code_challenge=challenge, code_challenge_method="S256"))
    exchange = {"grant_type": "authorization_code", "code": code["code"]}
    wrong_verifier = token(emu, **exchange, redirect_uri=REDIRECT, code_verifier=pkce()[0])
    assert oauth_error(wrong_verifier) == (400, "invalid_grant")
    # a failed exchange spent the code (one use only)
    right = token(emu, **exchange, redirect_uri=REDIRECT, code_verifier=verifier)
    assert oauth_error(right) == (400, "invalid_grant")
    code = redirected(authorize(emu))["code"]
    other_redirect = token(
        emu, grant_type="authorization_code", code=code, redirect_uri="http://127.0.0.1:1/x"
    )
    assert oauth_error(other_redirect) == (400, "invalid_grant")
    code = redirected(authorize(emu))["code"]
    other_client = {"client_id": "other_app", "client_secret": "other-secret"}
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    r = emu.http.post(TOKEN_PATH, data={**form, **other_client})
    assert oauth_error(r) == (400, "invalid_grant")
    assert "another client" in r.json()["error_description"]


def test_the_token_endpoint_refuses_bad_clients_and_grants(emu: Core1) -> None:
    r = token(emu, grant_type="refresh_token", refresh_token="x", client_secret="wrong")
    assert oauth_error(r) == (401, "invalid_client")
    assert r.headers["www-authenticate"].startswith("Basic")
    assert "wrong client secret" in r.json()["error_description"]
    assert SECRET not in r.text
    r = token(emu, grant_type="refresh_token", client_id="nobody")
    assert oauth_error(r) == (401, "invalid_client")
    assert oauth_error(token(emu, grant_type="password")) == (400, "unsupported_grant_type")
    assert oauth_error(token(emu)) == (400, "invalid_request")
    r = emu.http.post(TOKEN_PATH, json={"grant_type": "refresh_token"})
    assert oauth_error(r) == (400, "invalid_request")


def test_client_credentials_may_come_by_http_basic(emu: Core1) -> None:
    tokens = login(emu)
    r = emu.http.post(
        TOKEN_PATH,
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(CLIENT_ID, SECRET),
    )
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"


def test_the_token_endpoint_can_be_made_to_answer_html_or_500(emu: Core1) -> None:
    tokens = login(emu)
    assert emu.admin.post(f"{TESTING}/token-failure", json={"mode": "html", "times": 1}) == {
        "mode": "html",
        "times": 1,
    }
    r = refresh(emu, tokens["refresh_token"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert refresh(emu, tokens["refresh_token"]).status_code == 200  # one time only
    emu.admin.token_failure("500")
    for _ in range(2):
        r = refresh(emu, tokens["refresh_token"])
        assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    emu.admin.token_failure("none")
    assert refresh(emu, tokens["refresh_token"]).status_code == 200
    bad = emu.admin.request("POST", f"{TESTING}/token-failure", json={"mode": "teapot"})
    assert bad.status_code == 400 and "mode must be one of none, html, 500" in bad.text


def test_the_testing_routes_need_the_emulator_token(emu: Core1) -> None:
    r = emu.http.post(f"{TESTING}/revoke")
    assert r.status_code == 401


# -- without rotation, and without OAuth at all (the app in process) ----------------------


async def _in_process(oauth: OAuthConfig | None) -> httpx.AsyncClient:
    app = create_app(db=":memory:", token="static", oauth=oauth)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emu")


async def test_without_rotation_a_refresh_keeps_the_refresh_token() -> None:
    config = OAuthConfig([OAuthClient(CLIENT_ID, SECRET)])
    async with await _in_process(config) as client:
        back = await client.get(
            AUTHORIZE_PATH,
            params={"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT},
        )
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        form = {"client_id": CLIENT_ID, "client_secret": SECRET}
        exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        first = await client.post(TOKEN_PATH, data={**form, **exchange})
        assert first.json()["expires_in"] == 3600  # the default lifetime, 1h
        rt = first.json()["refresh_token"]
        for _ in range(2):
            r = await client.post(
                TOKEN_PATH, data={**form, "grant_type": "refresh_token", "refresh_token": rt}
            )
            assert r.json()["refresh_token"] == rt


async def test_without_oauth_the_urls_are_404_and_a_wrong_token_stays_403() -> None:
    async with await _in_process(None) as client:
        r = await client.post(TOKEN_PATH, data={"grant_type": "refresh_token"})
        assert r.status_code == 404 and "--oauth-client" in r.json()["message"]
        r = await client.get(LIST, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 403 and r.json()["error"] == "forbidden"


# -- the command line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--oauth-client", "chanops"], "expected ID:SECRET"),
        (["--oauth-client", "1abc:x"], "4-31 letters, digits or underscores"),
        (
            ["--oauth-client", "abcd:first-secret", "--oauth-client", "abcd:second-secret"],
            "'abcd' is given twice",
        ),
        (["--oauth-client", "abcd:x", "--access-token-ttl", "0s"], "must be positive"),
        (["--oauth-client", "abcd:x", "--refresh-grace", "soon"], "invalid duration 'soon'"),
    ],
)
def test_the_command_line_names_a_bad_oauth_flag(
    tmp_path: Path, args: list[str], message: str
) -> None:
    # the flags are checked before anything is served: the command in process suffices
    db = str(tmp_path / "e.db")
    res = CliRunner().invoke(command, ["--db", db, "--token", "t", *args])
    assert res.exit_code == 2
    assert message in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "first-secret" not in res.output and "second-secret" not in res.output


def test_the_clients_may_come_from_the_environment(tmp_path: Path) -> None:
    # the variable is read like repeated flags: a bad entry is named like a bad flag
    # (a bad --faults too, so that if the variable were ignored the command would stop
    # on that instead of serving)
    res = CliRunner().invoke(
        command,
        ["--db", str(tmp_path / "e.db"), "--token", "t", "--faults", "bogus=1"],
        env={"CHANOPS_EMULATOR_OAUTH_CLIENT": "good_app:env-secret-1 bad"},
    )
    assert res.exit_code == 2
    assert "expected ID:SECRET" in res.output and "env-secret-1" not in res.output


def test_the_process_says_which_oauth_clients_it_serves_and_never_a_secret(
    emu: Core1,
) -> None:
    logs = emu.logs()
    assert f"oauth {CLIENT_ID},other_app" in logs
    login(emu)
    assert SECRET not in logs and "other-secret" not in emu.logs()
