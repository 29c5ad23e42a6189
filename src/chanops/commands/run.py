"""`chanops run` (placeholder: owned by the issue that builds it)."""

from __future__ import annotations

import click


@click.command(name="run")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("chanops run is not built yet")
