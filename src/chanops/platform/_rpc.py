"""The platform client over Core1's RPC convention (`--profile core1`).

Every operation is `POST /<Namespace>.<Controller>.<method>` with a JSON body; which
method, what goes in the body and where the answer keeps its result is the profile's
(`chanops.rpcprofile`: the shipped `schemas/core1-profile.yaml`, overridable from
chanops.yaml). `RpcPlatformClient` is the REST client with the operations re-spelt:
the one place requests are sent (`PlatformClient.request`) is the same, so retries,
the breaker, the rate limiter, the OAuth session, the Idempotency-Key of every write
and the checks of every answer work alike for both protocols. An answer whose layout
is not the profile's is an `invalid_response` (retried like a 5xx), and its records
are then checked by the same parsers as REST's.

Differences are the wire's only: lists page by offset (`start`, `limit`, a `total`),
and a save's expected version travels in the body rather than in If-Match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from chanops.platform._shapes import connection_from, driver_from, job_from
from chanops.platform.answers import InvalidAnswer
from chanops.platform.api import page_turned
from chanops.platform.client import MAX_PAGES, PlatformClient, _listing_error
from chanops.platform.models import Connection, CreateResult, Driver, Job
from chanops.rpcprofile import AnswerError, Profile

T = TypeVar("T")


class RpcPlatformClient(PlatformClient):
    """PlatformAPI over Core1 RPC; built by `open_client(..., profile=...)`."""

    def __init__(self, http: Any, *, profile: Profile, **settings: Any) -> None:
        super().__init__(http, **settings)
        self.profile = profile

    async def call(
        self,
        operation: str,
        parse: Callable[[dict[str, Any]], T],
        /,
        *,
        headers: Mapping[str, str] | None = None,
        **arguments: Any,
    ) -> T:
        """`operation` with `arguments`; `parse` gets the answer's parts."""
        profile = self.profile
        body = profile.request(operation, **arguments)

        def parts(answer: Any) -> T:
            try:
                return parse(profile.parts(operation, answer))
            except AnswerError as exc:
                raise InvalidAnswer(f"an answer that is not the profile's ({exc})") from None

        path = profile.operation(operation).path
        return await self.request("POST", path, parts, json=body, headers=headers)

    async def _paged(self, name: str, parse: Callable[[Any, str], T], **arguments: Any) -> list[T]:
        path = self.profile.operation(name).path
        items: list[T] = []
        for _ in range(MAX_PAGES):
            start = len(items)
            page, total = await self.call(
                name,
                lambda p: (_rows(p, parse), p.get("total")),
                start=start,
                limit=self.page_size,
                **arguments,
            )
            items.extend(page)
            if not page or len(page) < self.page_size:
                return items
            if isinstance(total, int) and len(items) >= total:
                return items
            await page_turned()
        raise _listing_error(path, f"more than {MAX_PAGES} pages")

    # -- PlatformAPI ----------------------------------------------------------------------

    async def list_drivers(self) -> list[Driver]:
        return await self.call("list_drivers", lambda p: _rows(p, driver_from))

    async def list_connections(self) -> list[Connection]:
        connections = await self._paged("list_connections", connection_from)
        if len({c.id for c in connections}) != len(connections):
            path = self.profile.operation("list_connections").path
            raise _listing_error(path, "the same connection id twice")
        return connections

    async def get_connection(self, connection_id: int) -> Connection:
        return await self.call(
            "get_connection", lambda p: connection_from(p["connection"]), id=connection_id
        )

    async def create_connection(
        self,
        *,
        name: str,
        driver: str,
        credentials: Mapping[str, Any],
        automation: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> CreateResult:
        def result(p: dict[str, Any]) -> CreateResult:
            job = p.get("initial_job")
            return CreateResult(
                connection_from(p["connection"]),
                job_from(job, "initial_job") if job is not None else None,
            )

        return await self.call(
            "create_connection",
            result,
            headers={"Idempotency-Key": idempotency_key} if idempotency_key else None,
            name=name,
            driver=driver,
            credentials=dict(credentials),
            automation=dict(automation) if automation else None,
        )

    async def update_connection(
        self,
        connection_id: int,
        patch: Mapping[str, Any],
        *,
        if_match: int | None = None,
    ) -> Connection:
        return await self.call(
            "update_connection",
            lambda p: connection_from(p["connection"]),
            id=connection_id,
            if_match=if_match,
            patch=dict(patch),
        )

    async def delete_connection(self, connection_id: int) -> Job:
        return await self.call("delete_connection", lambda p: job_from(p["job"]), id=connection_id)

    async def _bulk(self, action: str, ids: Sequence[int]) -> list[Connection]:
        out: list[Connection] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), self.page_size):
            chunk = unique[start : start + self.page_size]
            out.extend(await self.call(action, lambda p: _rows(p, connection_from), ids=chunk))
        return out

    async def trigger_sync(self, connection_id: int) -> Job:
        return await self.call("trigger_sync", lambda p: job_from(p["job"]), id=connection_id)

    async def get_job(self, job_id: int) -> Job:
        return await self.call("get_job", lambda p: job_from(p["job"]), id=job_id)

    async def list_jobs(
        self, *, connection_id: int | None = None, state: str | None = None
    ) -> list[Job]:
        wanted = {"connection_id": connection_id, "state": state}
        return await self._paged("list_jobs", job_from, filter=wanted)


def _rows(parts: Mapping[str, Any], parse: Callable[[Any, str], T]) -> list[T]:
    rows = parts["rows"]
    return [parse(row, f"data[{i}]") for i, row in enumerate(rows)]
