"""The emulator's endpoints: schemas/platform-api.yaml, plus the emulator-only testing routes.

Each handler checks the request's shape (`chanops.emulator._parse`) and hands the rest to
the app's `store.Platform` (`request.app.state.platform`), which holds the platform's
rules; a `Problem` raised on the way becomes the contract's `{error, message, field}`.
Writes go through `Platform.idempotent`, keyed by the request's Idempotency-Key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chanops.emulator import rules
from chanops.emulator._parse import (
    DEFAULT_LIMIT,
    MAX_ID,
    MAX_LIMIT,
    bad_request,
    check_create,
    check_ids,
    check_job_state,
    check_patch,
    decode_cursor,
    encode_cursor,
    idempotency_key,
    if_match,
    json_object,
    only_keys,
    optional_object,
    path_id,
    query_int,
    require_str,
)
from chanops.emulator._store import Platform, Problem, encode_json

API = "/api/v1"
TESTING = f"{API}/testing/"

Handler = Callable[[Request], Awaitable[Response]]


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    return body


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def respond(status: int, body: Any, replayed: bool = False) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(body, status_code=status, headers=headers)


def handles_problems(fn: Handler) -> Handler:
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except Problem as exc:
            v = exc.violation
            return error_response(v.status, v.code, v.message, v.field)

    wrapper.__name__ = fn.__name__
    return wrapper


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


# -- the contract's routes ----------------------------------------------------------------


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.spec)


@handles_problems
async def drivers_list(request: Request) -> Response:
    return respond(200, {"items": _platform(request).list_drivers()})


@handles_problems
async def connections_list(request: Request) -> Response:
    limit = query_int(request, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
    assert limit is not None
    items, last = _platform(request).list_connections_json(
        after=decode_cursor(request), limit=limit
    )
    # the bytes JSONResponse would render for {"items": [...], "next_cursor": ...},
    # assembled from the store's per-item encodings
    body = b"".join(
        (
            b'{"items":[',
            b",".join(items),
            b'],"next_cursor":',
            encode_json(encode_cursor(last)),
            b"}",
        )
    )
    return Response(body, media_type=JSONResponse.media_type)


@handles_problems
async def connections_create(request: Request) -> Response:
    platform = _platform(request)
    key = idempotency_key(request)
    body = await json_object(request)
    check_create(body)
    status, out, replayed = platform.idempotent(
        key,
        "POST /connections " + rules.canonical(body),
        lambda now: platform.create(body, now),
    )
    return respond(status, out, replayed)


@handles_problems
async def connection_get(request: Request) -> Response:
    return respond(200, _platform(request).get_connection(path_id(request)))


@handles_problems
async def connection_patch(request: Request) -> Response:
    platform = _platform(request)
    cid = path_id(request)
    key = idempotency_key(request)
    version = if_match(request)
    body = await json_object(request)
    check_patch(body)
    status, out, replayed = platform.idempotent(
        key,
        f"PATCH /connections/{cid} {version} {rules.canonical(body)}",
        lambda now: platform.update(cid, body, version, now),
    )
    return respond(status, out, replayed)


@handles_problems
async def connection_delete(request: Request) -> Response:
    platform = _platform(request)
    cid = path_id(request)
    key = idempotency_key(request)
    status, out, replayed = platform.idempotent(
        key, f"DELETE /connections/{cid}", lambda now: platform.delete(cid, now)
    )
    return respond(status, out, replayed)


def bulk(status_value: str) -> Handler:
    """POST /connections/enable or /disable: set `status_value` on a list of ids."""

    @handles_problems
    async def handler(request: Request) -> Response:
        platform = _platform(request)
        key = idempotency_key(request)
        body = await json_object(request)
        only_keys(body, ("ids",))
        unique = check_ids(body.get("ids"))
        status, out, replayed = platform.idempotent(
            key,
            f"POST /connections/{status_value} {unique}",
            lambda now: platform.set_status(unique, status_value, now),
        )
        return respond(status, out, replayed)

    return handler


@handles_problems
async def connection_sync(request: Request) -> Response:
    platform = _platform(request)
    cid = path_id(request)
    key = idempotency_key(request)
    status, out, replayed = platform.idempotent(
        key, f"POST /connections/{cid}/sync", lambda now: platform.sync(cid, now)
    )
    return respond(status, out, replayed)


@handles_problems
async def jobs_list(request: Request) -> Response:
    limit = query_int(request, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
    assert limit is not None
    connection_id = query_int(request, "connection_id", 0, MAX_ID, None)
    state = check_job_state(request.query_params.get("state"))
    items, last = _platform(request).list_jobs(
        connection_id=connection_id, state=state, after=decode_cursor(request), limit=limit
    )
    return respond(200, {"items": items, "next_cursor": encode_cursor(last)})


@handles_problems
async def job_get(request: Request) -> Response:
    return respond(200, _platform(request).get_job(path_id(request)))


# -- emulator-only testing routes (a person's steps, and request counts) ------------------


@handles_problems
async def testing_install(request: Request) -> Response:
    platform = _platform(request)
    body = await json_object(request)
    only_keys(body, ("name", "driver", "credentials", "automation"))
    require_str(body, "name")
    require_str(body, "driver", max_len=64)
    optional_object(body, "credentials")
    optional_object(body, "automation")
    status, out, _ = platform.idempotent(
        None, "install", lambda now: platform.create(body, now, marketplace=True)
    )
    return respond(status, out)


@handles_problems
async def testing_authorize(request: Request) -> Response:
    platform = _platform(request)
    cid = path_id(request)
    status, out, _ = platform.idempotent(
        None, "authorize", lambda now: platform.authorize(cid, now)
    )
    return respond(status, out)


@handles_problems
async def testing_order_errors(request: Request) -> Response:
    platform = _platform(request)
    cid = path_id(request)
    body = await json_object(request)
    only_keys(body, ("has_order_errors",))
    value = body.get("has_order_errors")
    if not isinstance(value, bool):
        raise bad_request("has_order_errors must be a boolean", "has_order_errors")
    status, out, _ = platform.idempotent(
        None, "order-errors", lambda now: platform.set_order_errors(cid, value, now)
    )
    return respond(status, out)


def _string_list(body: Mapping[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise bad_request(f"{key} must be a list of non-empty strings", key)
    return list(value)


@handles_problems
async def testing_account(request: Request) -> Response:
    """GET: the account's installed plugins and DataHub languages; POST sets either."""
    platform = _platform(request)
    if request.method == "GET":
        return respond(200, platform.account_state())
    body = await json_object(request)
    only_keys(body, ("plugins", "languages"))
    plugins = _string_list(body, "plugins")
    return respond(200, platform.set_account(plugins, _string_list(body, "languages")))


@handles_problems
async def testing_shop_languages(request: Request) -> Response:
    """The languages a shop (by its URL) uses, as the shop's own admin would set them."""
    body = await json_object(request)
    only_keys(body, ("url", "languages"))
    require_str(body, "url")
    languages = _string_list(body, "languages") or []
    return respond(200, _platform(request).set_shop_languages(body["url"], languages))


async def testing_stats(request: Request) -> Response:
    stats: Counter[str] = request.app.state.stats
    return JSONResponse(dict(sorted(stats.items())))


async def testing_stats_reset(request: Request) -> Response:
    stats: Counter[str] = request.app.state.stats
    stats.clear()
    return JSONResponse({})


def routes() -> list[Route]:
    """Every route, in matching order (a fixed path before the `{id}` it would match)."""
    return [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route(f"{API}/drivers", drivers_list, methods=["GET"]),
        Route(f"{API}/connections", connections_list, methods=["GET"]),
        Route(f"{API}/connections", connections_create, methods=["POST"]),
        Route(f"{API}/connections/enable", bulk("active"), methods=["POST"]),
        Route(f"{API}/connections/disable", bulk("inactive"), methods=["POST"]),
        Route(f"{API}/connections/{{id:int}}", connection_get, methods=["GET"]),
        Route(f"{API}/connections/{{id:int}}", connection_patch, methods=["PATCH"]),
        Route(f"{API}/connections/{{id:int}}", connection_delete, methods=["DELETE"]),
        Route(f"{API}/connections/{{id:int}}/sync", connection_sync, methods=["POST"]),
        Route(f"{API}/jobs", jobs_list, methods=["GET"]),
        Route(f"{API}/jobs/{{id:int}}", job_get, methods=["GET"]),
        Route(f"{TESTING}marketplace-install", testing_install, methods=["POST"]),
        Route(f"{TESTING}authorize/{{id:int}}", testing_authorize, methods=["POST"]),
        Route(f"{TESTING}order-errors/{{id:int}}", testing_order_errors, methods=["POST"]),
        Route(f"{TESTING}account", testing_account, methods=["GET", "POST"]),
        Route(f"{TESTING}shop-languages", testing_shop_languages, methods=["POST"]),
        Route(f"{TESTING}stats", testing_stats, methods=["GET"]),
        Route(f"{TESTING}stats/reset", testing_stats_reset, methods=["POST"]),
    ]
