"""`chanops sync` (placeholder: owned by the issue that builds it)."""

from __future__ import annotations

import click


@click.command(name="sync")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("chanops sync is not built yet")
