"""Options shared by the commands that touch manifests, the platform and the state store.

`settings_from` is where every such command starts: it builds the Settings (which
refuses an operator credential inside a secrets directory, or the token over plain
http to another host) and prints the warnings that do not stop it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from chanops.config import Settings, load_settings
from chanops.errors import ConfigError

if TYPE_CHECKING:
    from chanops.manifests.secrets import OperatorCredential
    from chanops.sources.options import GitOptions

F = TypeVar("F", bound=Callable[..., Any])


# OAuth with Core1 instead of a token, and its API (docs/core1.md).
OAUTH_OPTIONS = (
    click.option(
        "--client-id",
        metavar="ID",
        default=None,
        help="OAuth client id of chanops's app registration on Core1, instead of a "
        "token: the token set `chanops login` stored in --state is used and kept "
        "fresh [env CHANOPS_CLIENT_ID].",
    ),
    click.option(
        "--profile",
        type=click.Choice(["rest", "core1"]),
        default=None,
        help="The platform's API: rest (the contract of the emulator) or core1 (Core1's "
        "RPC methods, mapped by the shipped profile, overridable with core1Profile in "
        "chanops.yaml) [env CHANOPS_PROFILE; default rest].",
    ),
    click.option(
        "--client-secret-file",
        metavar="FILE",
        default=None,
        help="File holding the OAuth client secret [env CHANOPS_CLIENT_SECRET_FILE].",
    ),
)


def common_options(func: F) -> F:
    """--manifests, --platform, --token, --token-file, --client-id, --profile,
    --client-secret-file, --state, --secrets-dir, --config."""
    decorators = [
        click.option(
            "--manifests",
            metavar="DIR",
            default=None,
            help="Manifests root [env CHANOPS_MANIFESTS; default connections.d].",
        ),
        click.option(
            "--platform",
            metavar="URL",
            default=None,
            help="Platform URL, or local:PATH for the embedded emulator "
            "[env CHANOPS_PLATFORM_URL; default local:.chanops/platform.db beside the root].",
        ),
        click.option(
            "--token",
            metavar="TOKEN",
            default=None,
            help="Platform bearer token [env CHANOPS_PLATFORM_TOKEN]. Visible to every "
            "user in the process list: prefer --token-file.",
        ),
        click.option(
            "--token-file",
            metavar="FILE",
            default=None,
            help="File holding the platform token [env CHANOPS_PLATFORM_TOKEN_FILE].",
        ),
        *OAUTH_OPTIONS,
        click.option(
            "--state",
            metavar="PATH",
            default=None,
            help="State store [env CHANOPS_STATE; default .chanops/state.db beside the root].",
        ),
        click.option(
            "--secrets-dir",
            "secrets_dirs",
            metavar="DIR",
            multiple=True,
            help="Directory secretRef.file may read from (repeatable) "
            "[default secrets/ beside the root]. Must not hold the token or other "
            "credentials of chanops itself.",
        ),
        click.option(
            "--insecure-http",
            is_flag=True,
            default=None,
            help="Allow an http:// platform URL to a host that is not loopback (the token "
            "then crosses the network unencrypted) [env CHANOPS_INSECURE_HTTP].",
        ),
        click.option(
            "--config",
            "config_file",
            metavar="FILE",
            default=None,
            help="Settings file [default ./chanops.yaml if present].",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def settings_from(
    *,
    manifests: str | None,
    platform: str | None,
    token: str | None,
    token_file: str | None,
    state: str | None,
    secrets_dirs: tuple[str, ...],
    config_file: str | None,
    insecure_http: bool | None = None,
    client_id: str | None = None,
    client_secret_file: str | None = None,
    profile: str | None = None,
) -> Settings:
    """Build Settings from the common options, turning config problems into usage errors.

    Prints (stderr) one line per warning: a --token on the command line, a token file
    others can read.
    """
    if token:
        click.echo(
            "Warning: --token is visible to every user of this machine in the process "
            "list (ps); prefer --token-file or CHANOPS_PLATFORM_TOKEN_FILE",
            err=True,
        )
    try:
        settings = load_settings(
            manifests=manifests,
            state=state,
            platform=platform,
            token=token,
            token_file=token_file,
            secrets_dirs=secrets_dirs,
            config=config_file,
            insecure_http=insecure_http,
            credentials=_git_credentials(),
            client_id=client_id,
            client_secret_file=client_secret_file,
            profile=profile,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    for warning in settings.warnings:
        click.echo(f"Warning: {warning}", err=True)
    return settings


def _git_credentials() -> list[OperatorCredential]:
    """The git ssh key and webhook secret given to the running command, if any.

    Read from the click context rather than passed in: the commands pop the git options
    out of their keyword arguments (pop_git_options) before calling settings_from, and
    every command must have them checked without each one remembering to pass them.
    """
    from chanops.manifests.secrets import OperatorCredential

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return []
    found = []
    for key, what, flag in (
        ("git_ssh_key", "the git ssh key", "--git-ssh-key"),
        ("webhook_secret_file", "the webhook secret file", "--webhook-secret-file"),
    ):
        value = ctx.params.get(key)
        if value:
            found.append(OperatorCredential(what, Path(value), flag))
    return found


def with_git_checkout(settings: Settings, git: GitOptions | None) -> Settings:
    """For one-shot commands given --git: fetch now and point `manifests` at the checkout.

    A failed fetch is one clear error (exit 1): a plan against a stale checkout would
    mislead a reviewer. The state store and git cache stay where --state puts them.
    """
    if git is None:
        return settings
    import asyncio
    import dataclasses

    from chanops.errors import ChanopsError
    from chanops.sources.options import checkout_once

    try:
        revision = asyncio.run(checkout_once(git.source(settings.state)))
    except ChanopsError as exc:
        raise click.ClickException(str(exc)) from None
    return dataclasses.replace(settings, manifests=revision.path)


def terminal_style(colour: bool) -> Callable[[str, str], str]:
    """The `style` a renderer takes: click's colours on a terminal, plain text otherwise."""

    def style(text: str, what: str) -> str:
        if not colour:
            return text
        if what == "bold":
            return click.style(text, bold=True)
        return click.style(text, fg=what)

    return style
