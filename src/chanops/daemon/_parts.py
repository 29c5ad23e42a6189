"""The parts every concern of the daemon shares, built once by the service (`Daemon`).

`Parts` is the composition: the platform client, the state store and the reconciler
(given), and what the daemon keeps between reconciles: the queue of names, the file ->
names index, the caches of the store's records and of the platform's connections, the
sync scheduler, metrics and the logging handles. Each concern takes what it uses from
it; none of them builds another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chanops.daemon._cache import ObservedCache, RecordCache
from chanops.daemon._index import FileIndex
from chanops.daemon._queue import WorkQueue
from chanops.daemon._scheduler import SyncScheduler
from chanops.engine.reconciler import Reconciler
from chanops.events import EventSink
from chanops.observability.logging import LogConfig
from chanops.observability.metrics import Metrics
from chanops.platform.api import PlatformAPI
from chanops.state.protocol import Store

if TYPE_CHECKING:
    from chanops.sources.git import GitSource, Revision


@dataclass(slots=True)
class Sources:
    """Where the manifests come from now (the git revision changes between resyncs)."""

    root: str
    source: GitSource | None = None
    revision: Revision | None = None  # the checkout the last load read
    next_revision: Revision | None = None  # ... and the one to switch to


@dataclass(frozen=True, slots=True)
class Parts:
    client: PlatformAPI
    store: Store
    reconciler: Reconciler
    metrics: Metrics
    logging: LogConfig
    sources: Sources
    index: FileIndex
    records: RecordCache
    observed: ObservedCache
    queue: WorkQueue
    scheduler: SyncScheduler
    events: EventSink  # every domain event goes here; logs, metrics, /status subscribe
