"""The `chanops` command line: a thin edge that parses flags and calls into the core.

Each command lives in its own module under `chanops.commands` and is imported only
when it runs, so `chanops validate` never pays for the emulator's imports.
"""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import click

from chanops import __version__

# name -> module under chanops.commands exposing `command: click.Command`
COMMANDS: dict[str, str] = {
    "validate": "validate",
    "plan": "plan",
    "apply": "apply",
    "run": "run",
    "status": "status",
    "sync": "sync",
    "export": "export",
    "emulator": "emulator",
    "login": "login",
    "doctor": "doctor",
    "schema": "schema",
    "state": "state",
    "notify": "notify",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"chanops.commands.{module_name}")
        command: click.Command = module.command
        return command


def development_commit() -> str | None:
    """The checked-out commit when chanops runs from a git work tree (an editable install).

    The version written at install time goes stale as commits land on top of it, so a
    development install asks git; an installed wheel has no work tree and answers None.
    """
    package = Path(__file__).resolve().parent
    if not (package.parent.parent / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    commit = development_commit()
    suffix = f" (commit {commit})" if commit else ""
    click.echo(f"chanops {__version__}{suffix}")
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=print_version,
    help="Show the version (and, for a development install, the commit) and exit.",
)
def main() -> None:
    """Keep Omni-Channel connections equal to YAML manifests in git."""
