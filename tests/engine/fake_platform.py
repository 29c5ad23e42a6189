"""A pure in-memory model of the platform, for property tests of plan + apply.

Not a mock of the HTTP layer: it models the documented semantics the engine relies on
(merge-patch updates, write-only secrets, versions, disable-before-delete, creatable
drivers, idempotency keys, default automation) so hypothesis can run hundreds of
reconciles in seconds. The emulator tests check the same rules over real HTTP.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chanops import errors
from chanops.platform.models import Connection, CreateResult, Driver, Job

SECRETS = {
    "shopware6": {"secretAccessKey"},
    "tradebyte": {"restPassword", "sftpPassword"},
    "shopify": {"apiKey"},
    "actindo-pos": set(),
}
CREATABLE = {"shopware6": True, "tradebyte": True, "shopify": False, "actindo-pos": False}
DEFAULT_AUTOMATION = {"orderDownload": "never", "returnDownload": "never"}


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@dataclass
class Row:
    id: int
    name: str
    driver: str
    status: str = "active"
    version: int = 1
    credentials: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    automation: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_AUTOMATION))


class FakePlatform:
    """PlatformAPI in memory. `writes[id]` counts the writes each connection received."""

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.ids = itertools.count(1)
        self.jobs = itertools.count(1)
        self.idempotency: dict[str, CreateResult] = {}
        self.writes: dict[int, int] = {}
        self.calls: list[str] = []

    # -- helpers for tests ---------------------------------------------------------

    def install(self, driver: str, name: str, **fields: Any) -> int:
        cid = next(self.ids)
        self.rows[cid] = Row(cid, name, driver, **fields)
        return cid

    def ui_edit(self, cid: int, **changes: Any) -> None:
        row = self.rows[cid]
        for key, value in changes.items():
            setattr(row, key, value)
        row.version += 1

    def _wire(self, row: Row) -> Connection:
        secret = SECRETS.get(row.driver, set())
        creds = {k: (None if k in secret else copy.deepcopy(v)) for k, v in row.credentials.items()}
        return Connection(
            id=row.id,
            name=row.name,
            driver=row.driver,
            status=row.status,  # type: ignore[arg-type]
            version=row.version,
            credentials=creds,
            settings=copy.deepcopy(row.settings),
            automation=dict(row.automation),
        )

    def _row(self, cid: int) -> Row:
        if cid not in self.rows:
            raise errors.NotFound(f"connection {cid} not found")
        return self.rows[cid]

    def _wrote(self, cid: int) -> None:
        self.writes[cid] = self.writes.get(cid, 0) + 1

    def _job(self, cid: int, kind: str) -> Job:
        return Job(id=next(self.jobs), kind=kind, connection_id=cid, state="succeeded")  # type: ignore[arg-type]

    # -- PlatformAPI -------------------------------------------------------------

    async def list_drivers(self) -> list[Driver]:
        return [Driver(d, d, c) for d, c in CREATABLE.items()]

    async def list_connections(self) -> list[Connection]:
        self.calls.append("list")
        return [self._wire(r) for r in sorted(self.rows.values(), key=lambda r: r.id)]

    async def get_connection(self, connection_id: int) -> Connection:
        self.calls.append("get")
        return self._wire(self._row(connection_id))

    async def create_connection(
        self,
        *,
        name: str,
        driver: str,
        credentials: Mapping[str, Any],
        automation: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> CreateResult:
        self.calls.append("create")
        if idempotency_key and idempotency_key in self.idempotency:
            return self.idempotency[idempotency_key]
        if not CREATABLE.get(driver, False):
            raise errors.NotCreatable(f"{driver} connections cannot be created")
        cid = next(self.ids)
        row = Row(cid, name, driver, credentials=copy.deepcopy(dict(credentials)))
        row.automation.update(automation or {})
        self.rows[cid] = row
        self._wrote(cid)
        result = CreateResult(self._wire(row), self._job(cid, "initial_sync"))
        if idempotency_key:
            self.idempotency[idempotency_key] = result
        return result

    async def update_connection(
        self, connection_id: int, patch: Mapping[str, Any], *, if_match: int | None = None
    ) -> Connection:
        self.calls.append("update")
        row = self._row(connection_id)
        if if_match is not None and if_match != row.version:
            raise errors.PreconditionFailed(f"version {row.version}, not {if_match}")
        before = (row.name, row.credentials, row.settings, row.automation)
        name = patch.get("name", row.name)
        creds = merge_patch(row.credentials, patch.get("credentials", {}))
        settings = merge_patch(row.settings, patch.get("settings", {}))
        automation = {
            **DEFAULT_AUTOMATION,
            **merge_patch(row.automation, patch.get("automation", {})),
        }
        if (name, creds, settings, automation) != before:
            row.name, row.credentials, row.settings, row.automation = (
                name,
                creds,
                settings,
                automation,
            )
            row.version += 1
        self._wrote(connection_id)
        return self._wire(row)

    async def delete_connection(self, connection_id: int) -> Job:
        self.calls.append("delete")
        row = self._row(connection_id)
        if row.status == "active":
            raise errors.Conflict(f"connection {connection_id} is active")
        self._wrote(connection_id)
        del self.rows[connection_id]
        return self._job(connection_id, "delete")

    async def _status(self, ids: Sequence[int], status: str) -> list[Connection]:
        out = []
        for cid in ids:
            row = self._row(cid)
            self._wrote(cid)
            if row.status != status:
                row.status = status
                row.version += 1
            out.append(self._wire(row))
        return out

    async def enable(self, ids: Sequence[int]) -> list[Connection]:
        self.calls.append("enable")
        return await self._status(ids, "active")

    async def disable(self, ids: Sequence[int]) -> list[Connection]:
        self.calls.append("disable")
        return await self._status(ids, "inactive")

    async def trigger_sync(self, connection_id: int) -> Job:
        self.calls.append("sync")
        return self._job(connection_id, "sync")

    async def get_job(self, job_id: int) -> Job:
        return Job(id=job_id, kind="sync", connection_id=0, state="succeeded")

    async def list_jobs(
        self, *, connection_id: int | None = None, state: str | None = None
    ) -> list[Job]:
        return []

    async def aclose(self) -> None:
        return None
