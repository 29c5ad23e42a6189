"""`chanops export` (placeholder: owned by the issue that builds it)."""

from __future__ import annotations

import click


@click.command(name="export")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("chanops export is not built yet")
