"""`chanops validate` (placeholder: owned by the issue that builds it)."""

from __future__ import annotations

import click


@click.command(name="validate")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("chanops validate is not built yet")
