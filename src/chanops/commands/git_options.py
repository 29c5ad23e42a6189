"""The git source's command-line options, shared by `run`, `plan` and `apply`.

Wiring a command takes three lines:

    @click.command()
    @common_options
    @git_options(webhook=True)          # webhook=False for plan/apply
    def command(**kw):
        git = pop_git_options(kw)       # before settings_from(**kw): it takes no git keys
        settings = settings_from(**kw)
        source = git.source(settings.state) if git else None

A one-shot command (plan, apply) then calls `await checkout_once(source)`
(`chanops.sources.options`) and loads manifests from `revision.path`; the daemon
iterates `source.updates()`.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from chanops.sources.options import GitOptions

F = TypeVar("F", bound=Callable[..., Any])

_KEYS = ("git", "git_ref", "git_path", "git_interval", "git_ssh_key", "webhook_secret_file")


def _interval(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from chanops.manifests.durations import parse_duration

    text = value.strip()
    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds < 1:
        raise click.BadParameter("must be at least 1s")
    return seconds


def git_options(*, webhook: bool = False) -> Callable[[F], F]:
    """--git, --git-ref, --git-path, --git-interval, --git-ssh-key [, --webhook-secret-file]."""

    def decorate(func: F) -> F:
        options = [
            click.option(
                "--git",
                metavar="URL",
                default=None,
                envvar="CHANOPS_GIT_URL",
                help="Read manifests from this git repository instead of --manifests "
                "[env CHANOPS_GIT_URL].",
            ),
            click.option(
                "--git-ref",
                metavar="REF",
                default="main",
                show_default=True,
                envvar="CHANOPS_GIT_REF",
                help="Branch or tag to follow (force-pushes and resets are followed).",
            ),
            click.option(
                "--git-path",
                metavar="DIR",
                default="connections.d",
                show_default=True,
                envvar="CHANOPS_GIT_PATH",
                help="Manifests root inside the repository.",
            ),
            click.option(
                "--git-interval",
                metavar="DURATION",
                default="60s",
                show_default=True,
                callback=_interval,
                help="How often to fetch (a push webhook fetches at once).",
            ),
            click.option(
                "--git-ssh-key",
                metavar="FILE",
                default=None,
                type=click.Path(dir_okay=False, path_type=Path),
                help="Private key for an ssh URL (host key trusted on first use).",
            ),
        ]
        if webhook:
            options.append(
                click.option(
                    "--webhook-secret-file",
                    metavar="FILE",
                    default=None,
                    type=click.Path(dir_okay=False, path_type=Path),
                    help="Secret that POST /hooks/git deliveries are verified against "
                    "(GitHub X-Hub-Signature-256, GitLab X-Gitlab-Token).",
                )
            )
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def pop_git_options(kwargs: MutableMapping[str, Any]) -> GitOptions | None:
    """Take the git options out of a command's kwargs; None without --git.

    Git-only flags given without --git are a usage error rather than silently ignored.
    """
    values = {key: kwargs.pop(key, None) for key in _KEYS}
    url = values["git"]
    if not url:
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            given = [
                "--" + key.replace("_", "-")
                for key in _KEYS[1:]
                if key in ctx.params
                and ctx.get_parameter_source(key) is click.core.ParameterSource.COMMANDLINE
            ]
            if given:
                raise click.UsageError(f"{', '.join(given)} need --git URL")
        return None
    from chanops.sources.options import GitOptions  # not at the top: it re-exports this module

    return GitOptions(
        url=str(url),
        ref=str(values["git_ref"] or "main"),
        path=str(values["git_path"] or "connections.d"),
        interval=float(values["git_interval"] or 60.0),
        ssh_key=values["git_ssh_key"],
        webhook_secret_file=values["webhook_secret_file"],
    )
