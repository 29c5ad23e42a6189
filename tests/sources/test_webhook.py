"""Webhook verification: pure functions, then the /hooks/git route as request/response."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from structlog.testing import capture_logs

from chanops.errors import ConfigError
from chanops.sources.webhook import (
    git_webhook_route,
    verify_github,
    verify_gitlab,
    verify_request,
)

SECRET = b"hook-s3cret"
BODY = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_verify_github() -> None:
    assert verify_github(BODY, sign(BODY), SECRET)
    assert verify_github(BODY, sign(BODY).upper().replace("SHA256=", "sha256="), SECRET)
    assert not verify_github(BODY, sign(BODY, b"other"), SECRET)
    assert not verify_github(BODY + b" ", sign(BODY), SECRET)
    assert not verify_github(BODY, None, SECRET)
    assert not verify_github(BODY, "", SECRET)
    assert not verify_github(BODY, sign(BODY).replace("sha256", "sha1"), SECRET)
    assert not verify_github(BODY, "sha256=", SECRET)
    # An empty secret verifies nothing, not even a signature made with it.
    assert not verify_github(BODY, sign(BODY, b""), b"")


def test_verify_gitlab() -> None:
    assert verify_gitlab("hook-s3cret", SECRET)
    assert not verify_gitlab("hook-s3cre", SECRET)
    assert not verify_gitlab(None, SECRET)
    assert not verify_gitlab("", b"")


def test_verify_request_chooses_by_header_case_insensitively() -> None:
    assert verify_request({"X-Hub-Signature-256": sign(BODY)}, BODY, SECRET)
    assert verify_request({"X-Gitlab-Token": "hook-s3cret"}, BODY, SECRET)
    assert not verify_request({"X-Hub-Signature": "sha1=deadbeef"}, BODY, SECRET)
    assert not verify_request({}, BODY, SECRET)
    # A valid GitLab token does not rescue a bad GitHub signature: GitHub's header wins.
    assert not verify_request(
        {"x-hub-signature-256": sign(BODY, b"x"), "x-gitlab-token": "hook-s3cret"}, BODY, SECRET
    )


Hook = tuple[httpx.AsyncClient, list[int], Path]


@pytest.fixture
async def hook(tmp_path: Path) -> AsyncIterator[Hook]:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_bytes(SECRET + b"\n")  # the newline an editor or `echo` adds
    calls: list[int] = []
    app = Starlette(routes=[git_webhook_route(lambda: calls.append(1), secret_file)])
    # In-process ASGI: a pure request/response check, no socket needed.
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://chanops") as client:
        yield client, calls, secret_file


async def test_signed_github_delivery_triggers_a_fetch(hook: Hook) -> None:
    client, calls, _ = hook
    with capture_logs() as logs:
        resp = await client.post(
            "/hooks/git",
            content=BODY,
            headers={
                "X-Hub-Signature-256": sign(BODY),
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": "d-1",
            },
        )
    assert resp.status_code == 202
    assert calls == [1]
    accepted = [e for e in logs if e["event"] == "webhook.accepted"]
    assert accepted[0]["provider"] == "github" and accepted[0]["delivery"] == "d-1"


async def test_gitlab_token_delivery_triggers_a_fetch(hook: Hook) -> None:
    client, calls, _ = hook
    resp = await client.post("/hooks/git", content=BODY, headers={"X-Gitlab-Token": "hook-s3cret"})
    assert resp.status_code == 202
    assert calls == [1]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "unsigned"),
        ({"X-Hub-Signature-256": sign(BODY, b"wrong")}, "bad signature"),
        ({"X-Hub-Signature-256": sign(b"other body")}, "bad signature"),
        ({"X-Gitlab-Token": "guess"}, "bad signature"),
    ],
)
async def test_unsigned_or_wrongly_signed_is_401_and_logged(
    hook: Hook, headers: dict[str, str], reason: str
) -> None:
    client, calls, _ = hook
    with capture_logs() as logs:
        resp = await client.post("/hooks/git", content=BODY, headers=headers)
    assert resp.status_code == 401
    assert calls == []
    rejected = [e for e in logs if e["event"] == "webhook.rejected"]
    assert len(rejected) == 1 and rejected[0]["reason"] == reason
    assert rejected[0]["client"] == "203.0.113.7"  # who tried, for the operator
    # Neither the secret nor the presented signature/token is logged.
    assert "hook-s3cret" not in repr(logs) and "guess" not in repr(logs)


async def test_only_post_is_routed(hook: Hook) -> None:
    client, calls, _ = hook
    assert (await client.get("/hooks/git")).status_code == 405
    assert calls == []


async def test_oversized_body_is_refused_before_verifying(
    hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chanops.sources.webhook.MAX_BODY", 16)
    client, calls, _ = hook
    resp = await client.post(
        "/hooks/git", content=BODY, headers={"X-Hub-Signature-256": sign(BODY)}
    )
    assert resp.status_code == 413
    assert calls == []


async def test_rotated_secret_applies_without_restart(hook: Hook) -> None:
    client, calls, secret_file = hook
    secret_file.write_bytes(b"rotated")
    old = await client.post("/hooks/git", content=BODY, headers={"X-Hub-Signature-256": sign(BODY)})
    new = await client.post(
        "/hooks/git", content=BODY, headers={"X-Hub-Signature-256": sign(BODY, b"rotated")}
    )
    assert (old.status_code, new.status_code) == (401, 202)
    # The file vanishing later keeps the last good secret rather than opening the door.
    secret_file.unlink()
    again = await client.post(
        "/hooks/git", content=BODY, headers={"X-Hub-Signature-256": sign(BODY, b"rotated")}
    )
    assert again.status_code == 202
    assert calls == [1, 1]


def test_missing_or_empty_secret_file_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read webhook secret file"):
        git_webhook_route(lambda: None, tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        git_webhook_route(lambda: None, empty)
