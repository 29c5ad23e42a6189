"""Reading the emulator's requests: bodies, path and query values, headers.

Every helper raises `Problem` (a 400 `bad_request`, or a 404 for an id no platform
could have issued) naming the field, as the real platform answers a malformed request.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request

from chanops.emulator._store import Problem, problem

MAX_ID = 2**63 - 1  # SQLite's INTEGER: a larger id cannot exist
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_IDEMPOTENCY_KEY = 255


def bad_request(message: str, field: str | None = None) -> Problem:
    return problem(400, "bad_request", message, field)


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise bad_request("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def path_id(request: Request) -> int:
    value = int(request.path_params["id"])
    if value > MAX_ID:
        raise problem(404, "not_found", f"{value} does not exist")
    return value


def query_int(request: Request, name: str, lo: int, hi: int, default: int | None) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"query parameter {name} must be an integer", name) from None
    if not lo <= value <= hi:
        raise bad_request(f"query parameter {name} must be between {lo} and {hi}", name)
    return value


def encode_cursor(last_id: int | None) -> str | None:
    if last_id is None:
        return None
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(request: Request) -> int:
    text = request.query_params.get("cursor")
    if not text:
        return 0
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        prefix, _, num = raw.partition(":")
        value = int(num)
        if prefix != "after" or not 0 <= value <= MAX_ID:
            raise ValueError(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request("cursor is not one this platform issued", "cursor") from None
    return value


def require_str(body: Mapping[str, Any], key: str, *, max_len: int = 200) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{key} is required and must be a non-empty string", key)
    if len(value) > max_len:
        raise bad_request(f"{key} must be at most {max_len} characters", key)
    return value


def only_keys(body: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in body:
        if key not in allowed:
            raise bad_request(f"unknown field {key}; allowed: {', '.join(allowed)}", key)


def optional_object(body: Mapping[str, Any], key: str) -> None:
    if key in body and not isinstance(body[key], dict):
        raise bad_request(f"{key} must be an object", key)


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise bad_request(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters", "Idempotency-Key"
        )
    return key


def if_match(request: Request) -> int | None:
    """The If-Match header as a connection version (quotes of an ETag allowed)."""
    text = request.headers.get("if-match")
    if text is None:
        return None
    try:
        return int(text.strip().strip('"'))
    except ValueError:
        raise bad_request("If-Match must be a connection version", "If-Match") from None


# -- the checks REST and RPC share (one rule, two wire forms) ------------------------------

# The fields a connection is written with, by a create and by an update.
CONNECTION_FIELDS = ("name", "driver", "credentials", "settings", "automation")
JOB_STATES = ("queued", "running", "succeeded", "failed")


def check_create(body: Mapping[str, Any]) -> None:
    """A create's body: name and driver, credentials and automation objects if sent."""
    only_keys(body, CONNECTION_FIELDS)
    require_str(body, "name")
    require_str(body, "driver", max_len=64)
    optional_object(body, "credentials")
    optional_object(body, "automation")


def check_patch(body: Mapping[str, Any]) -> None:
    """An update's merge patch over the connection's writable fields."""
    only_keys(body, CONNECTION_FIELDS)
    if "name" in body:
        require_str(body, "name")
    if "driver" in body and not isinstance(body["driver"], str):
        raise bad_request("driver must be a string", "driver")
    for key in ("credentials", "settings", "automation"):
        optional_object(body, key)


def check_ids(ids: Any) -> list[int]:
    """A bulk call's ids: 1 to MAX_LIMIT integers, duplicates dropped, each one that can exist."""
    if (
        not isinstance(ids, list)
        or not ids
        or len(ids) > MAX_LIMIT
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        raise bad_request(f"ids must be a list of 1 to {MAX_LIMIT} integers", "ids")
    unique = list(dict.fromkeys(int(i) for i in ids))
    for i in unique:
        if not 1 <= i <= MAX_ID:
            raise problem(404, "not_found", f"connection {i} does not exist", "ids")
    return unique


def check_int(value: Any, name: str, lo: int, hi: int) -> int:
    """A JSON body's integer (not a boolean) between lo and hi."""
    if type(value) is not int or not lo <= value <= hi:
        raise bad_request(f"{name} must be an integer between {lo} and {hi}", name)
    return value


def check_job_state(state: Any) -> str | None:
    if state is None:
        return None
    if not isinstance(state, str) or state not in JOB_STATES:
        raise bad_request("state must be queued, running, succeeded or failed", "state")
    return state
