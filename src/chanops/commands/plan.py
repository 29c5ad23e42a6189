"""`chanops plan` (placeholder: owned by the issue that builds it)."""

from __future__ import annotations

import click


@click.command(name="plan")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("chanops plan is not built yet")
