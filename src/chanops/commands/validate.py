"""`chanops validate [PATH...]`: offline checks of manifests, the CI gate.

Exit 0 when every manifest is valid, 1 when any is not, 2 on usage errors (click).
Every problem in every file is reported in one run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from chanops.config import DEFAULT_MANIFESTS, pick
from chanops.manifests.model import Diagnostic, LoadResult


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostic: Diagnostic) -> str:
    """A GitHub Actions workflow command: an annotation on the file and line."""
    where = f"{diagnostic.path}: " if diagnostic.path else ""
    return (
        f"::{diagnostic.severity} file={_escape_property(diagnostic.file)},"
        f"line={diagnostic.line},col={diagnostic.column},"
        f"title={_escape_property('chanops validate')}::{_escape_data(where + diagnostic.message)}"
    )


def render_json(result: LoadResult) -> str:
    return json.dumps(
        {
            "valid": result.ok,
            "files": len(result.files),
            "manifests": len(result.manifests),
            "errors": len(result.errors),
            "warnings": len(result.diagnostics) - len(result.errors),
            "diagnostics": [
                {
                    "severity": d.severity,
                    "file": d.file,
                    "line": d.line,
                    "column": d.column,
                    "path": d.path,
                    "code": d.code,
                    "message": d.message,
                }
                for d in result.diagnostics
            ],
        },
        indent=2,
    )


def summary(result: LoadResult) -> str:
    errors = len(result.errors)
    warnings = len(result.diagnostics) - errors
    verdict = "valid" if result.ok else "INVALID"
    return (
        f"{verdict}: {len(result.manifests)} manifests in {len(result.files)} files, "
        f"{errors} errors, {warnings} warnings"
    )


@click.command(name="validate")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="github: GitHub Actions ::error annotations.",
)
@click.option("--strict", is_flag=True, help="Treat warnings (e.g. literal secrets) as errors.")
@click.option(
    "--check-secrets",
    is_flag=True,
    help="Also require every secret reference to resolve (values are never printed).",
)
@click.option(
    "--secrets-dir",
    "secrets_dirs",
    metavar="DIR",
    multiple=True,
    help="Directory secretRef.file may read from (repeatable) "
    "[default secrets/ beside the manifests root].",
)
def command(
    paths: Sequence[str],
    output_format: str,
    strict: bool,
    check_secrets: bool,
    secrets_dirs: Sequence[str],
) -> None:
    """Validate manifests offline: YAML, schemas, unique names and connection IDs.

    PATH is a directory (searched recursively for *.yaml/*.yml) or a file; the default
    is the manifests root [env CHANOPS_MANIFESTS; default connections.d].
    """
    from chanops.manifests import load_manifests

    targets = list(paths) or [pick(None, "MANIFESTS", {}, "manifests") or DEFAULT_MANIFESTS]
    missing = [p for p in targets if not Path(p).exists() and not Path(p).is_symlink()]
    if missing:
        raise click.UsageError(f"no such file or directory: {', '.join(missing)}")
    result = load_manifests(
        targets,
        secrets_dirs=[Path(d) for d in secrets_dirs],
        strict=strict,
        check_secrets=check_secrets,
        identities_only=True,
        parallel=True,  # the composition root: forked workers for a large root
    )
    if output_format == "json":
        click.echo(render_json(result))
    elif output_format == "github":
        for diagnostic in result.diagnostics:
            click.echo(render_github(diagnostic))
        click.echo(summary(result), err=True)
    else:
        for diagnostic in result.diagnostics:
            click.echo(str(diagnostic))
        click.echo(summary(result))
    raise SystemExit(0 if result.ok else 1)
