"""`chanops emulator` (placeholder: owned by the issue that builds it)."""

from __future__ import annotations

import click


@click.command(name="emulator")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("chanops emulator is not built yet")
