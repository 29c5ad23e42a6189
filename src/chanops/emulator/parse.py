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

from chanops.emulator.store import Problem, problem

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
