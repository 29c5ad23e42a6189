"""Options shared by the commands that touch manifests, the platform and the state store."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from chanops.config import Settings, load_settings
from chanops.errors import ConfigError

if TYPE_CHECKING:
    from chanops.sources.options import GitOptions

F = TypeVar("F", bound=Callable[..., Any])


def common_options(func: F) -> F:
    """--manifests, --platform, --token, --token-file, --state, --secrets-dir, --config."""
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
            help="Platform bearer token [env CHANOPS_PLATFORM_TOKEN]. Prefer --token-file.",
        ),
        click.option(
            "--token-file",
            metavar="FILE",
            default=None,
            help="File holding the platform token [env CHANOPS_PLATFORM_TOKEN_FILE].",
        ),
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
            "[default /run/secrets and secrets/ beside the root].",
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
) -> Settings:
    """Build Settings from the common options, turning config problems into usage errors."""
    try:
        return load_settings(
            manifests=manifests,
            state=state,
            platform=platform,
            token=token,
            token_file=token_file,
            secrets_dirs=secrets_dirs,
            config=config_file,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


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
