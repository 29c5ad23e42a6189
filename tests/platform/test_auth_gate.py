"""The daemon's view of a refused grant (daemon/auth.py): readiness and /status (pure)."""

from __future__ import annotations

from typing import Any

from chanops.daemon._outcomes import UNREACHABLE
from chanops.daemon.auth import AuthGate, auth_readiness, with_auth
from chanops.daemon.ui._views import health


class Session:
    """What AuthGate reads of an OAuthSession."""

    def __init__(self, awaiting: bool) -> None:
        self.awaiting_authorization = awaiting
        self.awaiting_reason = "the platform refused the refresh token: run chanops login"
        self.awaiting_since = 1_700_000_000.0


def _document() -> dict[str, Any]:
    ready = {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
             "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
    amazon = {"type": "AwaitingAuthorization", "status": "True", "reason": "MarketplaceOAuth",
              "message": "authorise in the marketplace", "lastTransitionTime": ""}  # fmt: skip
    return {
        "ready": True,
        "reasons": [],
        "connections": [
            {"name": "a", "conditions": [ready]},
            {"name": "b", "conditions": [amazon]},
            {"name": "c", "conditions": []},
        ],
    }


def test_nothing_changes_while_authorised() -> None:
    gate = AuthGate(Session(awaiting=False))  # type: ignore[arg-type]
    assert auth_readiness(gate, (True, [])) == (True, [])
    assert with_auth(gate, _document()) == _document()
    assert with_auth(None, _document()) == _document()


def test_awaiting_a_login_is_not_ready_with_the_reason() -> None:
    gate = AuthGate(Session(awaiting=True))  # type: ignore[arg-type]
    ok, reasons = auth_readiness(gate, (True, []))
    assert not ok
    assert reasons == [
        "awaiting authorization: the platform refused the refresh token: run chanops login"
    ]


def test_awaiting_a_login_tells_one_story_not_an_unreachable_platform() -> None:
    """No call goes out while a login is awaited: the failed resync's reason is the
    authorisation, not the platform (the other reasons stay)."""
    gate = AuthGate(Session(awaiting=True))  # type: ignore[arg-type]
    ok, reasons = auth_readiness(gate, (False, ["first reconcile not finished", UNREACHABLE]))
    assert not ok
    assert reasons[0] == "first reconcile not finished"
    assert UNREACHABLE not in reasons and reasons[1].startswith("awaiting authorization:")
    assert len(reasons) == 2
    # Status.readiness adds it, and /status's with_auth again: said once.
    assert auth_readiness(gate, (ok, reasons)) == (ok, reasons)


def test_every_connection_shows_awaiting_authorization_and_is_not_ready() -> None:
    gate = AuthGate(Session(awaiting=True))  # type: ignore[arg-type]
    document = with_auth(gate, _document())
    assert document["ready"] is False
    assert document["reasons"][-1].startswith("awaiting authorization:")
    for connection in document["connections"]:
        awaiting = [c for c in connection["conditions"] if c["type"] == "AwaitingAuthorization"]
        assert len(awaiting) == 1, connection  # one per type: chanops's replaces Amazon's
        assert awaiting[0]["reason"] == "ReauthorizationRequired"
        assert awaiting[0]["lastTransitionTime"] == "2023-11-14T22:13:20Z"
        assert "run chanops login" in awaiting[0]["message"]
    ready = document["connections"][0]["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == (
        "Ready",
        "False",
        "ReauthorizationRequired",
    )


def test_the_status_page_banner_says_authorisation_not_an_outage() -> None:
    """While a login is awaited the resync's retry is scheduled (platformRetry), yet the
    banner tells the refused grant, the one thing to fix."""
    gate = AuthGate(Session(awaiting=True))  # type: ignore[arg-type]
    _, reasons = auth_readiness(gate, (False, [UNREACHABLE]))
    doc = {"ready": False, "reasons": reasons, "platformRetry": {"error": "Reauth..."}}
    shown = health(doc, {"failing": 2}, reconciling=False)
    assert (shown.kind, shown.title) == ("authorization", "Authorisation required")
    assert "run chanops login" in shown.detail
    outage = health({"ready": False, "reasons": [UNREACHABLE]}, {}, reconciling=False)
    assert outage.title == "Platform unreachable"
