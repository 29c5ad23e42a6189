"""`chanops schema` (placeholder: owned by the issue that builds it)."""

from __future__ import annotations

import click


@click.command(name="schema")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("chanops schema is not built yet")
