"""The git source's command-line options, shared by `run`, `plan` and `apply`.

Wiring a command takes three lines:

    @click.command()
    @common_options
    @git_options(webhook=True)          # webhook=False for plan/apply
    def command(**kw):
        git = pop_git_options(kw)       # before settings_from(**kw): it takes no git keys
        settings = settings_from(**kw)
        source = git.source(settings.state) if git else None

A one-shot command (plan, apply) then calls `await checkout_once(source)` and loads
manifests from `revision.path`; the daemon iterates `source.updates()`.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from chanops.errors import SourceError

if TYPE_CHECKING:
    # Imported when used: every command's options are built at startup, and the git
    # source pulls in structlog (0.1 s) that `plan` wants after its load has forked.
    from chanops.sources.git import GitSource, Revision

F = TypeVar("F", bound=Callable[..., Any])

_KEYS = ("git", "git_ref", "git_path", "git_interval", "git_ssh_key", "webhook_secret_file")


@dataclass(frozen=True, slots=True)
class GitOptions:
    url: str
    ref: str
    path: str
    interval: float
    ssh_key: Path | None
    webhook_secret_file: Path | None

    def source(self, state: Path) -> GitSource:
        """A GitSource whose cache and checkouts live in `git/` beside the state store."""
        from chanops.sources.git import GitSource

        return GitSource(
            self.url,
            self.ref,
            self.path,
            workdir=git_workdir(state),
            ssh_key=self.ssh_key,
            interval=self.interval,
        )


def git_workdir(state: Path) -> Path:
    """Where the git cache goes: beside the state store, on the same (persistent) volume."""
    return state.resolve().parent / "git"


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
    return GitOptions(
        url=str(url),
        ref=str(values["git_ref"] or "main"),
        path=str(values["git_path"] or "connections.d"),
        interval=float(values["git_interval"] or 60.0),
        ssh_key=values["git_ssh_key"],
        webhook_secret_file=values["webhook_secret_file"],
    )


async def checkout_once(source: GitSource) -> Revision:
    """For one-shot commands: fetch now and return the checkout to load manifests from.

    A failed fetch is an error here (a plan against a stale checkout would mislead a
    reviewer), unlike in the daemon, which keeps running on the last good checkout.
    """
    fresh = await source.refresh()
    revision = fresh or source.current()
    if revision is None:  # pragma: no cover - refresh() either checks out or raises
        raise SourceError(f"no checkout of {source.display_url} ({source.ref})")
    return revision
