"""The emulator's Core1 RPC surface: `POST /<Namespace>.<Controller>.<method>` per the profile.

Each method of the profile (`chanops.rpcprofile`, the shipped core1 profile unless the
app was given another) is served over the same `store.Platform` as the REST API, with
the same checks (`chanops.emulator._parse`), rules and error answers (the HTTP status
and `{error, message, field}`, the field under its Core1 name), so both protocols see
the same connections and refuse the same things. Differences are the wire's only:
every success answers 200 with the profile's answer layout, lists page by offset
(`start`, `limit`, a `total`), a save's version travels in the body, not in If-Match.
Writes honour an Idempotency-Key header like the REST API's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chanops.emulator import rules
from chanops.emulator._parse import (
    MAX_ID,
    MAX_LIMIT,
    check_create,
    check_ids,
    check_int,
    check_job_state,
    check_patch,
    idempotency_key,
    json_object,
)
from chanops.emulator._routes import error_response, respond
from chanops.emulator._store import LIST_SQL, Platform, Problem, problem
from chanops.emulator._wire import connection_wire
from chanops.rpcprofile import Argument, Operation, Profile, RequestError

__all__ = ["RPC_TEMPLATE", "rpc_routes"]

RPC_TEMPLATE = "/{method}"

Parts = dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Call:
    """One RPC call: the platform, its arguments, and what makes a write idempotent."""

    platform: Platform
    args: Mapping[str, Any]
    key: str | None
    fingerprint: str

    def write(self, run: Callable[[float], tuple[int, Any]]) -> tuple[Any, bool]:
        _, out, replayed = self.platform.idempotent(self.key, self.fingerprint, run)
        return out, replayed

    def id(self, name: str = "id") -> int:
        value = self.args.get(name)
        if type(value) is int and value > MAX_ID:
            raise problem(404, "not_found", f"{value} does not exist", name)
        return check_int(value, name, 1, MAX_ID)

    def paging(self) -> tuple[int, int]:
        start = check_int(self.args.get("start"), "start", 0, MAX_ID)
        return start, check_int(self.args.get("limit"), "limit", 1, MAX_LIMIT)


def connections_page(platform: Platform, start: int, limit: int) -> tuple[list[Any], int]:
    """Rows `start` to `start + limit` by id, and how many connections there are."""
    with platform.tx():
        conn = platform.conn
        total = int(conn.execute("SELECT COUNT(*) FROM connections").fetchone()[0])
        after = 0
        if start:
            row = conn.execute(
                "SELECT id FROM connections ORDER BY id LIMIT 1 OFFSET ?", (start - 1,)
            ).fetchone()
            after = int(row[0]) if row is not None else MAX_ID
        cur = conn.cursor()
        cur.row_factory = None
        rows = cur.execute(LIST_SQL, (after, limit)).fetchall()
    return [connection_wire(r) for r in rows], total


# -- one function per operation: (parts of the answer, replayed) ------------------------


def _list_drivers(call: _Call) -> tuple[Parts, bool]:
    return {"rows": call.platform.list_drivers()}, False


def _list_connections(call: _Call) -> tuple[Parts, bool]:
    rows, total = connections_page(call.platform, *call.paging())
    return {"rows": rows, "total": total}, False


def _get_connection(call: _Call) -> tuple[Parts, bool]:
    return {"connection": call.platform.get_connection(call.id())}, False


def _create_connection(call: _Call) -> tuple[Parts, bool]:
    fields = ("name", "driver", "credentials", "automation")
    body = {k: call.args[k] for k in fields if call.args.get(k) is not None}
    check_create(body)
    platform = call.platform
    out, replayed = call.write(lambda now: platform.create(body, now))
    return {"connection": out["connection"], "initial_job": out.get("job")}, replayed


def _update_connection(call: _Call) -> tuple[Parts, bool]:
    cid = call.id()
    version = call.args.get("if_match")
    if version is not None:
        version = check_int(version, "if_match", 1, MAX_ID)
    patch = dict(call.args.get("patch") or {})
    check_patch(patch)
    platform = call.platform
    out, replayed = call.write(lambda now: platform.update(cid, patch, version, now))
    return {"connection": out}, replayed


def _delete_connection(call: _Call) -> tuple[Parts, bool]:
    cid = call.id()
    platform = call.platform
    out, replayed = call.write(lambda now: platform.delete(cid, now))
    return {"job": out}, replayed


def _bulk(status: str) -> Callable[[_Call], tuple[Parts, bool]]:
    def run(call: _Call) -> tuple[Parts, bool]:
        ids = check_ids(call.args.get("ids"))
        platform = call.platform
        out, replayed = call.write(lambda now: platform.set_status(ids, status, now))
        return {"rows": out["items"]}, replayed

    return run


def _trigger_sync(call: _Call) -> tuple[Parts, bool]:
    cid = call.id()
    platform = call.platform
    out, replayed = call.write(lambda now: platform.sync(cid, now))
    return {"job": out}, replayed


def _get_job(call: _Call) -> tuple[Parts, bool]:
    return {"job": call.platform.get_job(call.id())}, False


def _list_jobs(call: _Call) -> tuple[Parts, bool]:
    start, limit = call.paging()
    wanted = call.args.get("filter") or {}
    connection_id = wanted.get("connection_id")
    if connection_id is not None:
        connection_id = check_int(connection_id, "connection_id", 0, MAX_ID)
    state = check_job_state(wanted.get("state"))
    # jobs are few; their state is derived on read, so filter all, then slice
    items, _ = call.platform.list_jobs(
        connection_id=connection_id, state=state, after=0, limit=MAX_ID
    )
    return {"rows": items[start : start + limit], "total": len(items)}, False


_CALLS: Mapping[str, Callable[[_Call], tuple[Parts, bool]]] = {
    "list_drivers": _list_drivers,
    "list_connections": _list_connections,
    "get_connection": _get_connection,
    "create_connection": _create_connection,
    "update_connection": _update_connection,
    "delete_connection": _delete_connection,
    "enable": _bulk("active"),
    "disable": _bulk("inactive"),
    "trigger_sync": _trigger_sync,
    "get_job": _get_job,
    "list_jobs": _list_jobs,
}


def _core1_field(profile: Profile, op: Operation, field: str | None) -> str | None:
    """An error's field under the name the caller sent it by."""
    if field is None:
        return None
    head, dot, rest = field.partition(".")
    for key, slot in op.request.items():
        if isinstance(slot, Argument) and slot.name == head:
            return key + dot + rest
    if op.name == "list_jobs" and head in ("connection_id", "state"):
        return profile.records["job"][head]
    return profile.core1_field("connection", field)


async def rpc_call(request: Request) -> Response:
    profile: Profile = request.app.state.profile
    method: str = request.path_params["method"]
    op = profile.by_method(method)
    if op is None:
        return error_response(
            404,
            "not_found",
            f"no method {method} on this instance (the emulator serves the methods of its "
            "core1 profile)",
        )
    try:
        key = idempotency_key(request)
        body = await json_object(request)
        args = profile.arguments(op.name, body)
        call = _Call(request.app.state.platform, args, key, f"RPC {method} {rules.canonical(body)}")
        parts, replayed = _CALLS[op.name](call)
    except RequestError as exc:  # the body's own key: already Core1's name
        return error_response(400, "bad_request", exc.message, exc.field)
    except Problem as exc:
        v = exc.violation
        field = v.field if v.field == "Idempotency-Key" else _core1_field(profile, op, v.field)
        return error_response(v.status, v.code, v.message, field)
    return respond(200, profile.answer(op.name, parts), replayed)


def rpc_routes() -> list[Route]:
    """The RPC route: last in the table, it takes any POST to a one-segment path."""
    return [Route(RPC_TEMPLATE, rpc_call, methods=["POST"])]
