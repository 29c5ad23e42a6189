"""What the daemon knows between reconciles: the platform's connections and the store's
records, as caches that its batches plan against.

`ObservedCache`: a full resync lists the platform once and keeps the list; its batches
plan against it (`snapshot`, a complete `Observed`) instead of reading again. Batches
that read connections themselves (an edit reads its connections by id) and connections
re-read after a write update it. A listing is slower than a batch: entries written while
it was in flight are fresher than what it returns, so `replace_all` keeps them.

`RecordCache`: a copy of the state store's records (reading all 10,000 rows costs about
0.2 s, too much for every batch). Filled once at startup, then kept current by the
workers, which re-read after every batch the rows it wrote (`ReconcileResult.written`;
every row of the batch when it failed); the store is written by those batches (and by
the scheduler's last-sync fields, which no plan reads).
"""

from __future__ import annotations

import itertools
from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView

from chanops.engine.diff import Observed
from chanops.platform.models import Connection
from chanops.state.protocol import Store
from chanops.state.store import Record


class ObservedCache:
    def __init__(self) -> None:
        self._by_id: dict[int, Connection] = {}
        self._clock = itertools.count(1)
        self._touched: dict[int, int] = {}  # id -> tick of its last update (or removal)
        self.complete = False  # a listing has been taken: `snapshot` is the whole platform
        self._snapshot: Observed | None = None  # until the next change

    def tick(self) -> int:
        """A point in time, to pass to `replace_all` when its listing starts."""
        return next(self._clock)

    def replace_all(self, listing: Iterable[Connection], since: int) -> None:
        """A fresh listing, begun at `since`: entries updated after that stay as they are."""
        fresher = {cid for cid, tick in self._touched.items() if tick > since}
        by_id = {c.id: c for c in listing if c.id not in fresher}
        for cid in fresher:
            if cid in self._by_id:
                by_id[cid] = self._by_id[cid]
        self._by_id = by_id
        self._snapshot = None
        self._touched = {cid: t for cid, t in self._touched.items() if t > since}
        self.complete = True

    def update(self, connections: Iterable[Connection]) -> None:
        self._snapshot = None
        for conn in connections:
            self._by_id[conn.id] = conn
            self._touched[conn.id] = next(self._clock)

    def remove(self, connection_id: int) -> None:
        self._snapshot = None
        self._by_id.pop(connection_id, None)
        self._touched[connection_id] = next(self._clock)

    def snapshot(self) -> Observed:
        """Every cached connection as a complete observation (scope None); the same
        object until the cache changes, so its index by id is built once per listing."""
        if self._snapshot is None:
            self._snapshot = Observed(tuple(self._by_id.values()))
        return self._snapshot

    def get(self, connection_id: int) -> Connection | None:
        return self._by_id.get(connection_id)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._by_id


class RecordCache(Mapping[str, Record]):
    def __init__(self, store: Store) -> None:
        self._store = store
        self._records: dict[str, Record] = {}
        self._by_id: dict[int, str] = {}  # connection id -> name

    def read_all(self) -> dict[str, Record]:
        """Every record as the store has it now (a thread may run this)."""
        return self._store.records()

    def replace(self, records: dict[str, Record]) -> None:
        """Take every record from `read_all`."""
        self._records = records
        self._by_id = {r.connection_id: n for n, r in records.items() if r.connection_id}

    def read(self, names: Iterable[str]) -> dict[str, Record | None]:
        """The named records as the store has them now (a thread may run this)."""
        return self._store.get_many(names)

    def apply(self, rows: Mapping[str, Record | None]) -> dict[str, Record | None]:
        """Take rows from `read`; returns every record that changed (None: gone).

        A record written with a connection id takes that id from any other name (a
        rename of a manifest moves its connection), so such names are re-read too.
        """
        changed: dict[str, Record | None] = {}
        pending = dict(rows)
        while pending:
            name, record = pending.popitem()
            if name in changed:
                continue
            old = self._records.pop(name, None)
            if old is not None and old.connection_id is not None:
                self._forget_id(old.connection_id, name)
            changed[name] = record
            if record is None:
                continue
            self._records[name] = record
            if record.connection_id is not None:
                other = self._by_id.get(record.connection_id)
                if other is not None and other != name and other not in changed:
                    pending.setdefault(other, self._store.get(other))
                self._by_id[record.connection_id] = name
        return changed

    def _forget_id(self, connection_id: int, name: str) -> None:
        if self._by_id.get(connection_id) == name:
            del self._by_id[connection_id]

    def snapshot(self) -> dict[str, Record]:
        return dict(self._records)

    def __getitem__(self, name: str) -> Record:
        return self._records[name]

    # The dict's own views: the Mapping defaults look every key up again, and the gauges
    # walk all 10,000 records after every batch.
    def values(self) -> ValuesView[Record]:
        return self._records.values()

    def items(self) -> ItemsView[str, Record]:
        return self._records.items()

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)
