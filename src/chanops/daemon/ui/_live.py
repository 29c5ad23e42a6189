"""Live updates: one subscriber on the event sink, one server-sent event stream per page.

Every domain event moves `version` on; a stream tells its page what changed
(`event: change`, data: the version and the names of the connections concerned, or `*`
when the change concerns no single connection; no other event content leaves this
way), and a page that shows it fetches itself again. Changes are coalesced: at most one message per
`MIN_GAP` seconds per stream, so a resync of 10,000 connections costs a page a refresh
a second, not 10,000. A change while a reconcile runs is held back until it ends (at
most `HOLD_SECONDS`): the pages fetch after its writes, not during them, so open pages
do not slow the edit-to-write path, and they see its outcome in one fetch.

An idle daemon must not wake for its pages: a stream waits on the next change (one
shared asyncio.Event, replaced after it fires), with a keep-alive comment every
`PING_SECONDS` so proxies and dead clients are noticed. No polling loop, which is why
this is Starlette's streaming response rather than sse-starlette (whose shutdown
watcher polls twice a second while any stream is open). The streams end when the
daemon emits `daemon.stopping`, before the HTTP server stops.

The sink may call from another thread (work done in `asyncio.to_thread`): waking the
streams goes through the loop then.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from chanops.events import Event

MIN_GAP = 0.5
HOLD_SECONDS = 0.5  # a change during a reconcile waits for its end this long at most
PING_SECONDS = 30.0
RETRY_MS = 2000  # the browser reconnects this long after a dropped stream
MAX_STREAMS = 128  # open streams at once; past that a page is served without live updates
RECONCILES_KEPT = 10
CHANGES_KEPT = 4096  # changes a stream can name since its last message
MAX_NAMES_SENT = 50  # more changed connections than this are sent as `*`
_SYNC_ENDS = frozenset({"sync.completed", "sync.failed", "sync.stuck", "sync.skipped"})
_EVERY_ROW = ("manifest", "platform.", "daemon.", "git.", "root.", "leader.", "auth.")
_RECONCILE_FIELDS = (
    "reconcile_id",
    "kind",
    "reason",
    "revision",
    "subject",
    "timestamp",
    "duration_ms",
    "actions",
    "failed",
    "blocked",
    "waiting",
    "drift",
    "converged",
    "error",
)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LiveFeed:
    """The sink consumer behind the pages: change version, reconciles, stream bell."""

    def __init__(
        self,
        *,
        scrub: Callable[[dict[str, Any]], dict[str, Any]],
        revision: Callable[[], str | None],
        resync_seconds: float,
    ) -> None:
        self.scrub = scrub
        self.revision = revision
        self.resync_seconds = resync_seconds
        self.version = 0
        self.closed = False
        self.streams = 0
        self.reconciles: deque[dict[str, Any]] = deque(maxlen=RECONCILES_KEPT)
        self.running: dict[str, dict[str, Any]] = {}  # reconcile id -> its start
        self.next_resync = ""
        self.last_sync: dict[str, dict[str, Any]] = {}  # name -> the last sync's outcome
        # What changed since the snapshot last took it: names, or everything.
        self._names: set[str] = set()
        self._everything = False
        # (version, name) per change for the streams; None: not one connection's change.
        self._log: deque[tuple[int, str | None]] = deque(maxlen=CHANGES_KEPT)
        self._forgotten = 0  # the version of the last change the full log let go
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._bell: asyncio.Event | None = None

    # -- the sink side ------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        self.version += 1
        name = event.fields.get("connection")
        if isinstance(name, str):
            self._names.add(name)
            self._remember(name)
            if event.name in _SYNC_ENDS:
                self._synced(name, event)
        elif _touches_every_row(event):
            self._everything = True
            self._remember(None)
        if event.name == "reconcile.started":
            rid = str(event.fields.get("reconcile_id", ""))
            self.running[rid] = {
                "kind": event.fields.get("kind"),
                "reason": event.fields.get("reason"),  # reconcile.completed carries none
                "since": _now_iso(),
            }
        elif event.name in ("reconcile.completed", "reconcile.failed"):
            self._finished(event)
        elif event.name == "daemon.stopping":
            self.closed = True
        self._ring()

    def _finished(self, event: Event) -> None:
        fields = event.fields
        started = self.running.pop(str(fields.get("reconcile_id", "")), None) or {}
        record = {k: fields[k] for k in _RECONCILE_FIELDS if k in fields}
        if started.get("reason") and not record.get("reason"):
            record["reason"] = started["reason"]
        record.setdefault("revision", self.revision())
        record["result"] = _result(event)
        record["finished"] = _now_iso()
        self.reconciles.append(self.scrub(record))
        if fields.get("kind") == "full":
            due = datetime.now(UTC) + timedelta(seconds=self.resync_seconds)
            self.next_resync = due.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _synced(self, name: str, event: Event) -> None:
        job = event.fields.get("job_id")
        self.last_sync[name] = {
            "job": job or None,
            "outcome": event.name.removeprefix("sync."),
            "at": _now_iso(),
        }

    def _remember(self, name: str | None) -> None:
        if len(self._log) == self._log.maxlen:
            self._forgotten = self._log[0][0]
        self._log.append((self.version, name))

    def take_changes(self) -> tuple[set[str], bool]:
        """The names changed since the last call, and whether every row may have."""
        names, everything = self._names, self._everything
        self._names, self._everything = set(), False
        return names, everything

    def changed_since(self, seen: int) -> str:
        """What changed after version `seen`: connection names, or `*` for anything else."""
        if seen < self._forgotten:
            return "*"  # older than the log reaches: assume everything
        names: set[str] = set()
        for version, name in reversed(self._log):
            if version <= seen:
                break
            if name is None or len(names) >= MAX_NAMES_SENT:
                return "*"
            names.add(name)
        return " ".join(sorted(names)) or "-"

    def _ring(self) -> None:
        loop = self._loop
        if loop is None or self._bell is None:
            return  # no stream has waited yet
        if threading.get_ident() == self._thread:
            self._swap_bell()
        else:
            loop.call_soon_threadsafe(self._swap_bell)

    def _swap_bell(self) -> None:
        if self._bell is not None:
            self._bell.set()
        self._bell = asyncio.Event()

    # -- the stream side ------------------------------------------------------------------

    def _bind(self) -> asyncio.Event:
        if self._bell is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.get_ident()
            self._bell = asyncio.Event()
        return self._bell

    async def changed(self, seen: int, within: float) -> bool:
        """Wait until the version moves past `seen` (True) or `within` seconds pass (False)."""
        bell = self._bind()
        if self.version != seen or self.closed:
            return True
        try:
            await asyncio.wait_for(bell.wait(), within)
        except TimeoutError:
            return False
        return True

    async def _settle(self) -> None:
        """While a reconcile runs, wait for its end, `HOLD_SECONDS` at most."""
        until = time.monotonic() + HOLD_SECONDS
        while self.running and not self.closed:
            left = until - time.monotonic()
            if left <= 0:
                return
            await self.changed(self.version, left)

    async def stream(self) -> AsyncIterator[str]:
        """The text of one page's event stream, until the daemon stops."""
        self.streams += 1
        try:
            seen = self.version
            yield f"retry: {RETRY_MS}\nevent: hello\ndata: {seen}\n\n"
            sent = 0.0
            while not self.closed:
                if not await self.changed(seen, PING_SECONDS):
                    yield ": keep-alive\n\n"
                    continue
                if self.closed:
                    break
                await self._settle()
                # Coalesce a burst: wait out the gap since the last message, then report
                # where the burst got to.
                await asyncio.sleep(max(0.0, sent + MIN_GAP - time.monotonic()))
                what = self.changed_since(seen)
                seen = self.version
                sent = time.monotonic()
                yield f"event: change\ndata: {seen} {what}\n\n"
            yield "event: bye\ndata: stopping\n\n"
        finally:
            self.streams -= 1


def _touches_every_row(event: Event) -> bool:
    """An event of no single connection that may change every row (a resync's listing,
    a manifest file that fails, the platform's reachability): the snapshot is rebuilt."""
    if event.name in ("reconcile.completed", "reconcile.failed"):
        return event.fields.get("kind") == "full"
    return event.name.startswith(_EVERY_ROW)


def reconciles_shown(
    own: Iterable[Mapping[str, Any]], history: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The last reconciles: this replica's (`LiveFeed.reconciles`) and those the event
    history holds (an earlier term's, the leader's when this replica stands by)."""
    mine = [dict(r) for r in own]
    seen = {r.get("reconcile_id") for r in mine}
    reasons: dict[Any, Any] = {}
    found: list[dict[str, Any]] = []
    for e in history:
        rid, name = e.get("reconcile_id"), e.get("event")
        if name == "reconcile.started":
            reasons[rid] = e.get("reason")
        elif name in ("reconcile.completed", "reconcile.failed") and rid not in seen:
            record = {k: e[k] for k in _RECONCILE_FIELDS if k in e}
            if reasons.get(rid) and not record.get("reason"):
                record["reason"] = reasons[rid]
            converged = "converged" if e.get("converged") else "not converged"
            record["result"] = "failed" if name == "reconcile.failed" else converged
            record["finished"] = str(e.get("timestamp", ""))[:19] + "Z"
            found.append(record)
    shown = sorted([*found, *mine], key=lambda r: str(r.get("finished", "")))
    return shown[-RECONCILES_KEPT:]


def _result(event: Event) -> str:
    if event.name == "reconcile.failed":
        return "failed"
    return "converged" if event.fields.get("converged") else "not converged"
