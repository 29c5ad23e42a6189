"""`chanops status` (placeholder: owned by the issue that builds it)."""

from __future__ import annotations

import click


@click.command(name="status")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("chanops status is not built yet")
