"""`chanops export [--out DIR]`: manifests for existing platform connections.

Writes one `<name>.yaml` per connection into DIR (or every manifest to stdout as one
multi-document stream). Each binds by `spec.connectionId`, so `chanops apply` adopts
the connection rather than creating another. Secrets become `secretRef` placeholders
(the platform never returns them), labelled with the platform's field labels.
`--unmanaged-only` skips connections chanops already manages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from chanops.commands.common import common_options


@click.command(name="export")
@common_options
@click.option("--out", "out_dir", metavar="DIR", default=None, help="Write files here.")
@click.option("--unmanaged-only", is_flag=True, help="Skip connections chanops manages.")
@click.option("--force", is_flag=True, help="Overwrite existing files in DIR.")
@click.option("--log-level", default="warning", show_default=True, help="Events on stderr.")
def command(
    out_dir: str | None, unmanaged_only: bool, force: bool, log_level: str, **common: Any
) -> None:
    """Write manifests for the platform's existing connections."""
    from chanops.commands.session import cli_logging, cli_settings, open_session, run_cli
    from chanops.engine.export import export_manifest, manifest_name
    from chanops.platform.models import Connection

    settings = cli_settings(**common)
    cli_logging(log_level)

    async def body() -> tuple[list[Connection], dict[int, str]]:
        async with open_session(settings, readonly=True) as session:
            managed = {
                r.connection_id: r.name
                for r in session.store.records().values()
                if r.connection_id is not None
            }
            return await session.client.list_connections(), managed

    connections, managed = run_cli(body)
    taken: set[str] = set()
    docs: list[tuple[str, str]] = []
    for conn in sorted(connections, key=lambda c: c.id):
        if conn.status == "deleting" or (unmanaged_only and conn.id in managed):
            continue
        name = managed.get(conn.id) or manifest_name(conn, taken)
        taken.add(name)
        docs.append((name, export_manifest(conn, name)))
    if out_dir is None:
        click.echo("---\n".join(text for _, text in docs), nl=False)
        return
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, text in docs:
        path = target / f"{name}.yaml"
        if path.exists() and not force:
            click.echo(f"{path}: exists, skipped (use --force to overwrite)", err=True)
            continue
        path.write_text(text, encoding="utf-8")
        written += 1
    click.echo(f"Wrote {written} manifest(s) to {target}.")
