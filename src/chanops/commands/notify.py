"""`chanops notify test`: send a test message through the configured providers.

Also `notifications_from`, which `chanops run` uses to read the `notifications:` section
of chanops.yaml at start: a bad section is one line on stderr and exit 1.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from chanops.config import Settings
    from chanops.notify.config import LoadedNotifications


def notifications_from(config_file: str | None, settings: Settings) -> LoadedNotifications | None:
    """The notifications section, read and checked; one line and exit 1 if it is wrong."""
    from chanops.config import load_notifications
    from chanops.errors import ConfigError

    try:
        return load_notifications(config_file, settings.secrets_dirs)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


@click.group(name="notify")
def command() -> None:
    """Notifications (docs/notifications.md)."""


@command.command(name="test")
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    default=None,
    help="Settings file holding `notifications:` [default ./chanops.yaml].",
)
@click.option(
    "--provider",
    "provider",
    default=None,
    metavar="NAME",
    help="Send to this provider only [default: every configured provider].",
)
def test(config_file: str | None, provider: str | None) -> None:
    """Send a test message; exit 0 when every provider took it, 1 otherwise."""
    from chanops.config import load_settings
    from chanops.errors import ConfigError
    from chanops.notify.dispatch import Notifier

    try:
        # For the secrets directories the credential files must stay out of.
        settings = load_settings(config=config_file)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    loaded = notifications_from(config_file, settings)
    if loaded is None or not loaded.config.providers:
        click.echo(
            "Error: no notification providers are configured (notifications: in chanops.yaml)",
            err=True,
        )
        sys.exit(1)
    names = [p.name for p in loaded.config.providers]
    if provider is not None and provider not in names:
        click.echo(
            f"Error: no provider named {provider!r} in {loaded.path}; "
            f"configured: {', '.join(names)}",
            err=True,
        )
        sys.exit(1)
    notifier = Notifier(loaded.config, loaded.credentials)
    failed = 0
    for name in [provider] if provider else names:
        error = notifier.send_test(name, where=loaded.path)
        if error is None:
            click.echo(f"sent a test message to {name}")
        else:
            failed += 1
            click.echo(f"Error: sending to {name} failed: {error}", err=True)
    sys.exit(1 if failed else 0)
