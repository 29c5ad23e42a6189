"""Webhook verification: pure functions, then the /hooks/git route as request/response.

The route is also driven as a bare ASGI app, to see exactly how much of a body it asks
for before it has authenticated the sender.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import Headers
from structlog.testing import capture_logs

from chanops.errors import ConfigError
from chanops.sources.webhook import (
    GithubSignature,
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


# -- streaming verification and what is read before authentication ---------------------


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 4096, 100_003])
def test_streaming_signature_equals_one_shot(size: int) -> None:
    body = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    good, bad = sign(body), sign(body + b"x")
    for split in range(1, 12):
        # Chunks of uneven sizes, as a socket delivers them.
        cuts = sorted(random.Random(split).sample(range(size + 1), min(split, size + 1)))
        chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
        assert b"".join(chunks) == body
        for header in (good, bad, good.upper().replace("SHA256=", "sha256="), None, "sha1=x"):
            streamed = GithubSignature(SECRET)
            for chunk in chunks:
                streamed.update(chunk)
            assert streamed.matches(header) == verify_github(body, header, SECRET)
    assert verify_github(body, good, SECRET) and not verify_github(body, bad, SECRET)


Message = dict[str, Any]


class Body:
    """An ASGI `receive` that counts how often the endpoint asked for the body."""

    def __init__(self, chunks: list[bytes] | None = None, *, block: bool = False) -> None:
        self.chunks = list(chunks or [])
        self.block = block
        self.reads = 0

    async def __call__(self) -> Message:
        self.reads += 1
        if self.block:
            await asyncio.Event().wait()  # a sender that never sends the rest
        if not self.chunks:
            return {"type": "http.request", "body": b"", "more_body": False}
        chunk = self.chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}


async def deliver(app: Starlette, headers: dict[str, str], body: Body) -> tuple[int, Headers]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/hooks/git",
        "raw_path": b"/hooks/git",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.7", 4242),
        "server": ("chanops", 80),
    }
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, body, send)
    return sent[0]["status"], Headers(raw=sent[0]["headers"])


@pytest.fixture
def app(tmp_path: Path) -> tuple[Starlette, list[int]]:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_bytes(SECRET)
    calls: list[int] = []
    return Starlette(routes=[git_webhook_route(lambda: calls.append(1), secret_file)]), calls


BOGUS = {"X-Hub-Signature-256": "sha256=" + "0" * 64}


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({}, 401, "unsigned"),
        ({"X-Hub-Signature-256": "sha1=" + "0" * 40}, 401, "bad signature"),
        ({"X-Gitlab-Token": "guess"}, 401, "bad signature"),
        ({**BOGUS, "Content-Length": str(26 * 1024 * 1024)}, 413, "body too large"),
    ],
)
async def test_refused_from_the_head_alone(
    app: tuple[Starlette, list[int]], headers: dict[str, str], status: int, reason: str
) -> None:
    body = Body([b"x" * 1024] * 4)
    with capture_logs() as logs:
        got, response_headers = await deliver(app[0], headers, body)
    assert got == status
    assert body.reads == 0  # not a byte of the body was asked for
    assert response_headers["connection"] == "close"  # nor will it be drained
    assert [e["reason"] for e in logs if e["event"] == "webhook.rejected"] == [reason]


async def test_github_body_is_streamed_and_capped(
    app: tuple[Starlette, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [BODY[i : i + 7] for i in range(0, len(BODY), 7)]
    body = Body(chunks)
    assert (await deliver(app[0], {"X-Hub-Signature-256": sign(BODY)}, body))[0] == 202
    assert body.reads == len(chunks) and app[1] == [1]
    # Chunked (no Content-Length): refused once the running total passes the cap.
    monkeypatch.setattr("chanops.sources.webhook.MAX_BODY", 20)
    body = Body(chunks)
    status, headers = await deliver(app[0], {"X-Hub-Signature-256": sign(BODY)}, body)
    assert (status, headers["connection"]) == (413, "close")
    assert body.reads == 3  # 21 bytes read, not the whole body


async def test_gitlab_body_is_drained_not_kept(app: tuple[Starlette, list[int]]) -> None:
    body = Body([b"{}"] * 5)
    status, _ = await deliver(app[0], {"X-Gitlab-Token": SECRET.decode()}, body)
    assert status == 202 and body.reads == 5


async def test_a_stalled_body_times_out(
    app: tuple[Starlette, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chanops.sources.webhook.BODY_TIMEOUT", 0.05)
    with capture_logs() as logs:
        status, headers = await deliver(app[0], BOGUS, Body(block=True))
    assert (status, headers["connection"]) == (408, "close")
    assert [e["reason"] for e in logs if e["event"] == "webhook.rejected"] == ["body timeout"]


async def test_at_most_four_deliveries_in_flight(app: tuple[Starlette, list[int]]) -> None:
    slow = [asyncio.create_task(deliver(app[0], BOGUS, Body(block=True))) for _ in range(4)]
    await asyncio.sleep(0.01)  # all four are now reading their bodies
    body = Body([BODY])
    with capture_logs() as logs:
        status, headers = await deliver(app[0], {"X-Hub-Signature-256": sign(BODY)}, body)
    assert (status, headers["retry-after"], headers["connection"]) == (429, "1", "close")
    assert body.reads == 0
    assert [e["reason"] for e in logs if e["event"] == "webhook.rejected"] == ["too many in flight"]
    # A slot is given back however its request ends (here: cancelled).
    for task in slow:
        task.cancel()
    await asyncio.gather(*slow, return_exceptions=True)
    ok = await deliver(app[0], {"X-Hub-Signature-256": sign(BODY)}, Body([BODY]))
    assert ok[0] == 202


async def test_a_sender_that_disconnects_gives_its_slot_back(
    app: tuple[Starlette, list[int]],
) -> None:
    async def gone() -> Message:
        return {"type": "http.disconnect"}

    for _ in range(5):  # more than MAX_IN_FLIGHT: none of them leaked a slot
        with capture_logs() as logs:
            await deliver(app[0], BOGUS, gone)  # type: ignore[arg-type]
        assert [e["reason"] for e in logs if e["event"] == "webhook.rejected"] == [
            "client disconnected"
        ]
    ok = await deliver(app[0], {"X-Hub-Signature-256": sign(BODY)}, Body([BODY]))
    assert ok[0] == 202
