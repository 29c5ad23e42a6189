"""Without a reachable PostgreSQL server the tests that need one skip with one line,
except under CI=true, where they fail the run (tests/support/postgres.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(
        "from support.postgres import pytest_terminal_summary  # noqa: F401\n"
    )
    (tmp_path / "test_needs_pg.py").write_text(
        textwrap.dedent(
            """
            from support.postgres import fresh_database

            def test_one() -> None:
                with fresh_database():
                    pass

            def test_two() -> None:
                with fresh_database():
                    pass
            """
        )
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if k != "CI"},
            "PYTHONPATH": str(TESTS),
            # Nothing listens on port 1; the password must not be shown.
            "CHANOPS_TEST_POSTGRES_DSN": "postgresql://postgres:pw-sekret@127.0.0.1:1/postgres",
            **env,
        },
    )


def test_an_unreachable_server_skips_with_one_line(tmp_path: Path) -> None:
    result = _pytest(tmp_path)
    assert result.returncode == 0, result.stdout
    lines = [line for line in result.stdout.splitlines() if "is not reachable" in line]
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("2 tests skipped: PostgreSQL at postgresql://postgres:***@")
    assert "pw-sekret" not in result.stdout + result.stderr
    assert "2 skipped" in result.stdout


def test_under_ci_an_unreachable_server_fails_the_run(tmp_path: Path) -> None:
    result = _pytest(tmp_path, CI="true")
    assert result.returncode == 1, result.stdout
    assert "2 failed" in result.stdout
    assert "is not reachable" in result.stdout and "CI needs it" in result.stdout
    assert "pw-sekret" not in result.stdout + result.stderr
