"""Failures are classified once, where they are caught (`error_info`), not parsed later."""

from __future__ import annotations

import pytest

from chanops import errors
from chanops.engine._outcome import ErrorInfo, error_info


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            errors.InvalidCredentials("the API key was refused"),
            ErrorInfo(
                "invalid_credentials",
                False,
                True,
                "invalid_credentials: the API key was refused",
            ),
        ),
        (
            errors.LockedSetting("locked", field="settings.x"),
            ErrorInfo("locked_setting", False, True, "locked_setting: locked (field settings.x)"),
        ),
        (errors.Forbidden("no"), ErrorInfo("forbidden", False, True, "forbidden: no")),
        # 409, 412 and 429 can succeed later without a manifest change: not refusals.
        (errors.Conflict("busy"), ErrorInfo("conflict", False, False, "conflict: busy")),
        (
            errors.PreconditionFailed("moved"),
            ErrorInfo("precondition_failed", False, False, "precondition_failed: moved"),
        ),
        (
            errors.RateLimited("slow down"),
            ErrorInfo("rate_limited", True, False, "rate_limited: slow down"),
        ),
        (errors.ServerError("oops"), ErrorInfo("server_error", True, False, "server_error: oops")),
        (
            errors.PlatformUnavailable("no answer"),
            ErrorInfo("platform", True, False, "no answer"),
        ),
        (ValueError("bug"), ErrorInfo("ValueError", False, False, "ValueError: bug")),
    ],
)
def test_error_info_classifies_each_failure(exc: BaseException, expected: ErrorInfo) -> None:
    assert error_info(exc) == expected
