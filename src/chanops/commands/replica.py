"""`chanops run` on a shared PostgreSQL store: the lease flags and the replica's wiring.

With `--state postgresql://...` every `chanops run` process is a replica: it opens the
store fenced (a standby writes nothing), elects a leader through the lease, and gives
the daemon a platform client whose writes pass only while it leads (docs/ha.md). With
a SQLite store nothing here applies: the file lock admits one daemon.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from chanops.config import Settings
    from chanops.daemon.leader import Leadership
    from chanops.events import EventSink
    from chanops.observability.metrics import Metrics
    from chanops.platform.api import PlatformAPI
    from chanops.state.protocol import Store

F = TypeVar("F", bound=Callable[..., Any])

_KEYS = ("lease_duration", "renew_interval")


@dataclass(frozen=True, slots=True)
class LeaseFlags:
    lease_seconds: float = 10.0
    renew_seconds: float = 2.0


def _seconds(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from chanops.manifests.durations import parse_flag_duration

    try:
        seconds = parse_flag_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter("must be longer than 0s, e.g. 2s")
    return seconds


def lease_options(func: F) -> F:
    """--lease-duration, --renew-interval (replicas on a PostgreSQL store only)."""
    func = click.option(
        "--renew-interval",
        default="2s",
        show_default=True,
        metavar="DURATION",
        callback=_seconds,
        help="Replicas (PostgreSQL --state): how often the leader renews its lease.",
    )(func)
    return click.option(
        "--lease-duration",
        default="10s",
        show_default=True,
        metavar="DURATION",
        callback=_seconds,
        help="Replicas (PostgreSQL --state): how long a lease lasts unrenewed; a standby "
        "takes over about this long after the leader dies.",
    )(func)


def pop_lease_flags(kwargs: MutableMapping[str, Any]) -> LeaseFlags:
    values = {key: kwargs.pop(key) for key in _KEYS}
    lease, renew = values["lease_duration"], values["renew_interval"]
    if renew * 2 > lease:
        raise click.BadParameter(
            f"--renew-interval ({renew:g}s) must be at most half of --lease-duration "
            f"({lease:g}s): a leader renews at least twice per lease"
        )
    return LeaseFlags(lease, renew)


def open_state(settings: Settings) -> Store:
    """The daemon's store: SQLite (locked), or PostgreSQL opened fenced for election."""
    from chanops.state.factory import open_store

    if settings.state_dsn is not None:
        return open_store(settings.state_dsn, fenced=True)
    settings.state.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return open_store(settings.state)


def leadership(
    settings: Settings, flags: LeaseFlags, *, store: Store, events: EventSink, metrics: Metrics
) -> Leadership | None:
    """This replica's election, or None on SQLite."""
    if settings.state_dsn is None:
        return None
    from chanops.daemon.leader import Leadership
    from chanops.state.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    return Leadership(
        dsn=settings.state_dsn,
        store=store,
        events=events,
        metrics=metrics,
        lease_seconds=flags.lease_seconds,
        renew_seconds=flags.renew_seconds,
    )


def fenced(client: PlatformAPI, leader: Leadership | None) -> PlatformAPI:
    """The platform client the daemon writes through: gated by the lease on a replica."""
    if leader is None:
        return client
    from chanops.daemon.leader import FencedPlatform

    return FencedPlatform(client, leader)


def state_shown(settings: Settings) -> str:
    """The store for a message: a path, or the DSN without its password."""
    if settings.state_dsn is None:
        return str(settings.state)
    from chanops.state.postgres import display_dsn

    return display_dsn(settings.state_dsn)
