"""The platform operations the engine needs, as a Protocol.

`chanops.platform.client.PlatformClient` implements it over HTTP (or in-process over
`local:PATH`). The engine and daemon depend on this Protocol, not on the client.

Write semantics (the contract in schemas/platform-api.yaml):
- `update_connection` sends a JSON Merge Patch (RFC 7396) over
  {name, credentials, settings, automation}: objects merge key by key, `None` removes a
  key, lists and scalars replace. `if_match` is the connection's `version`; a lost
  update raises PreconditionFailed.
- Every POST carries an Idempotency-Key; pass `idempotency_key` to make a retried
  create (after a crash) return the first response instead of a second connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Protocol

from chanops.platform.models import Connection, CreateResult, Driver, Job

# Awaited between two pages of a listing, when set in the listing task's context. The
# daemon sets it for the listings of a resync (background work): between pages it waits
# while an edit is being reconciled, so the edit's reads and write are not queued behind
# 10,000 connections' pages at the platform and in the event loop.
between_pages: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "between_pages", default=None
)


async def page_turned() -> None:
    """What a paged listing calls between two pages (see `between_pages`)."""
    pause = between_pages.get()
    if pause is not None:
        await pause()


class PlatformAPI(Protocol):
    async def list_drivers(self) -> list[Driver]: ...

    async def list_connections(self) -> list[Connection]:
        """Every connection, all pages."""
        ...

    async def get_connection(self, connection_id: int) -> Connection: ...

    async def create_connection(
        self,
        *,
        name: str,
        driver: str,
        credentials: Mapping[str, Any],
        automation: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> CreateResult: ...

    async def update_connection(
        self,
        connection_id: int,
        patch: Mapping[str, Any],
        *,
        if_match: int | None = None,
    ) -> Connection: ...

    async def delete_connection(self, connection_id: int) -> Job: ...

    async def enable(self, ids: Sequence[int]) -> list[Connection]: ...

    async def disable(self, ids: Sequence[int]) -> list[Connection]: ...

    async def trigger_sync(self, connection_id: int) -> Job:
        """Start a sync; while one runs the platform returns the running job."""
        ...

    async def get_job(self, job_id: int) -> Job: ...

    async def list_jobs(
        self, *, connection_id: int | None = None, state: str | None = None
    ) -> list[Job]: ...

    async def aclose(self) -> None: ...
