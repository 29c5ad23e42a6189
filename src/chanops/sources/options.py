"""The git source's settings, as the command line gives them, and a one-shot checkout.

The click options that fill `GitOptions` are `chanops.commands.git_options`; this module
knows no command line, so the daemon and the commands share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chanops.errors import SourceError

if TYPE_CHECKING:
    # Imported when used: every command's options are built at startup, and the git
    # source pulls in structlog (0.1 s) that `plan` wants after its load has forked.
    from chanops.sources.git import GitSource, Revision


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


__all__ = ["GitOptions", "checkout_once", "git_workdir"]
