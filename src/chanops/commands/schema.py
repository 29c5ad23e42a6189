"""`chanops schema [--driver NAME]`: print the JSON Schemas (the single source of truth)."""

from __future__ import annotations

import json

import click


@click.command(name="schema")
@click.option(
    "--driver",
    metavar="NAME",
    default=None,
    help="Print one driver's schema (spec.credentials and spec.settings).",
)
@click.option(
    "--raw",
    is_flag=True,
    help="Print connection.schema.json as shipped (its driver $refs are relative "
    "files) instead of the self-contained bundle.",
)
def command(driver: str | None, raw: bool) -> None:
    """Print the manifest JSON Schema (default: one self-contained bundle for editors)."""
    from chanops.manifests import schemas
    from chanops.manifests.validation import suggest

    if driver is not None:
        names = schemas.driver_names()
        if driver not in names:
            raise click.BadParameter(
                f"unknown driver {driver!r}{suggest(driver, names)} "
                f"(expected one of: {', '.join(names)})",
                param_hint="--driver",
            )
        data = schemas.driver_schema(driver)
    elif raw:
        data = schemas.connection_schema()
    else:
        data = schemas.bundled_schema()
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
