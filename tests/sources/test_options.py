"""The git flags as a command sees them, and the one-shot checkout for plan/apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from chanops.commands.git_options import git_options, pop_git_options
from chanops.errors import SourceError
from chanops.sources.options import GitOptions, checkout_once
from sources.test_git_source import Upstream

seen: list[tuple[GitOptions | None, dict[str, Any]]] = []


@click.command()
@click.option("--state", default="state.db")
@git_options(webhook=True)
def cmd(**kw: Any) -> None:
    git = pop_git_options(kw)
    seen.append((git, kw))


def invoke(*args: str) -> tuple[int, str, GitOptions | None, dict[str, Any]]:
    seen.clear()
    res = CliRunner().invoke(cmd, list(args), env={"CHANOPS_GIT_URL": None})
    git, rest = seen[0] if seen else (None, {})
    return res.exit_code, res.output, git, rest


def test_without_git_the_command_sees_no_git_keys() -> None:
    code, _, git, rest = invoke()
    assert code == 0 and git is None
    assert rest == {"state": "state.db"}  # safe to pass on to settings_from(**kw)


def test_git_flags_are_parsed() -> None:
    code, out, git, _ = invoke(
        "--git",
        "https://example.com/m.git",
        "--git-ref",
        "prod",
        "--git-interval",
        "5m",
        "--git-path",
        "conn",
        "--webhook-secret-file",
        "/run/secrets/hook",
    )
    assert code == 0, out
    assert git == GitOptions(
        url="https://example.com/m.git",
        ref="prod",
        path="conn",
        interval=300.0,
        ssh_key=None,
        webhook_secret_file=Path("/run/secrets/hook"),
    )
    assert git.source(Path("/var/lib/chanops/state.db")).workdir == Path("/var/lib/chanops/git")


def test_git_only_flags_without_git_are_a_usage_error() -> None:
    code, out, _, _ = invoke("--git-ref", "prod")
    assert code == 2
    assert "--git-ref need --git URL" in out


@pytest.mark.parametrize("value", ["soon", "0.5"])
def test_bad_interval_is_a_usage_error(value: str) -> None:
    code, out, _, _ = invoke("--git", "u", "--git-interval", value)
    assert code == 2 and "--git-interval" in out


async def test_checkout_once(tmp_path: Path) -> None:
    upstream = Upstream(tmp_path)
    sha = upstream.commit()
    opts = GitOptions(str(upstream.bare), "main", "connections.d", 60.0, None, None)
    source = opts.source(tmp_path / "state" / "state.db")
    rev = await checkout_once(source)
    assert rev.sha == sha and (rev.path / "a.yaml").exists()
    assert await source.read() == sha
    # Unchanged remote: the current checkout, not None.
    assert (await checkout_once(source)).sha == sha
    # A one-shot command fails on a fetch error instead of planning against stale files.
    git_fail = GitOptions(str(tmp_path / "gone.git"), "main", "connections.d", 60.0, None, None)
    with pytest.raises(SourceError):
        await checkout_once(git_fail.source(tmp_path / "state" / "state.db"))
