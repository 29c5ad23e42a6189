"""`chanops apply` (placeholder: owned by the issue that builds it)."""

from __future__ import annotations

import click


@click.command(name="apply")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("chanops apply is not built yet")
