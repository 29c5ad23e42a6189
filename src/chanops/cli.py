"""The `chanops` command line: a thin edge that parses flags and calls into the core.

Each command lives in its own module under `chanops.commands` and is imported only
when it runs, so `chanops validate` never pays for the emulator's imports.
"""

from __future__ import annotations

import importlib

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
    "schema": "schema",
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


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chanops")
def main() -> None:
    """Keep Omni-Channel connections equal to YAML manifests in git."""
