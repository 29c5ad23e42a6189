"""Who may read the status page: the pure rule (the HTTP side is in test_http.py)."""

from __future__ import annotations

import base64

from chanops.daemon.ui._app import plan_class
from chanops.daemon.ui._auth import UIAuth, decide, is_loopback


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def test_loopback_is_open_and_any_other_address_is_locked() -> None:
    assert decide(UIAuth(), {}).status == 200
    locked = decide(UIAuth(exposed=True), {})
    assert locked.status == 403
    assert "--ui-password-file" in locked.message and "--ui-trusted-header" in locked.message
    assert [is_loopback(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "localhost")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com")] == [False] * 4


def test_password_needs_basic_with_the_right_password() -> None:
    auth = UIAuth(password=b"correct horse", exposed=True)
    assert decide(auth, basic("anyone", "correct horse")).status == 200
    assert decide(auth, basic("anyone", "correct hors")).status == 401
    assert decide(auth, basic("correct horse", "")).status == 401
    assert decide(auth, {}).status == 401
    assert decide(auth, {"authorization": "Basic !!notbase64"}).status == 401
    assert decide(auth, {"authorization": "Bearer correct horse"}).status == 401
    # Loopback or not, a configured password is asked for.
    assert decide(UIAuth(password=b"pw"), {}).status == 401


def test_trusted_header_lets_in_what_the_proxy_vouched_for() -> None:
    auth = UIAuth(trusted_header="X-Forwarded-Email", exposed=True)
    let_in = decide(auth, {"x-forwarded-email": "ops@example.com"})
    assert (let_in.status, let_in.user) == (200, "ops@example.com")
    assert decide(auth, {"x-forwarded-email": "  "}).status == 401
    assert decide(auth, {}).status == 401
    both = UIAuth(password=b"pw", trusted_header="X-User", exposed=True)
    assert decide(both, basic("u", "pw")).status == 200
    assert decide(both, {"x-user": "me"}).status == 200


def test_plan_lines_are_coloured_by_their_symbol() -> None:
    lines = [
        "  # shop will be created (new)",
        '  + connection "shop" {',
        "      ~ settings.a = 1 -> 2",
        '  - connection "old" { driver = "sfcc" }',
        '  -/+ connection "x" {',
        "  ! delete y: mass delete",
        "No changes.",
    ]
    assert [plan_class(line) for line in lines] == [
        "p-head",
        "p-add",
        "p-change",
        "p-del",
        "p-del",
        "p-bad",
        "p-plain",
    ]
