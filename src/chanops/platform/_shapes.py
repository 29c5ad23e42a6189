"""The shapes the contract gives (schemas/platform-api.yaml), read into the models.

Only what the client reads is checked, and only as strictly as the models need: a
field the contract requires but a model defaults (created_at, credentials, ...) may be
absent, but when present it must have the right type. Unknown keys are ignored. These
run once per connection of every listing (10,000 on a large account), so they are
plain isinstance checks, not a schema validator. Anything else raises InvalidAnswer
naming the field (`items[3].id: expected a positive integer, got a string`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from chanops.platform.answers import InvalidAnswer, snippet
from chanops.platform.models import Connection, CreateResult, Driver, Job

T = TypeVar("T")

_CONNECTION_STATUS: Final = frozenset({"active", "inactive", "deleting"})
_JOB_KIND: Final = frozenset({"initial_sync", "sync", "delete"})
_JOB_STATE: Final = frozenset({"queued", "running", "succeeded", "failed"})
_MISSING: Final = object()


# Checked in order: bool before number (a bool is an int in Python, not in JSON).
_JSON_TYPES: Final = (
    (bool, "a boolean"),
    (int | float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _wrong(where: str, expected: str, value: Any) -> InvalidAnswer:
    got = "nothing (missing)" if value is _MISSING else _json_type(value)
    return _shape(f"{where}: expected {expected}, got {got}")


def _shape(problem: str) -> InvalidAnswer:
    return InvalidAnswer(f"JSON that is not the contract's ({problem})")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(where, "an object", value)
    return value


def _array(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _wrong(where, "an array", value)
    return value


def _id(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key, _MISSING)
    # bool is an int in Python, not in JSON; ids are positive (the contract's minimum 1)
    if type(value) is not int or value < 1:
        raise _wrong(f"{where}.{key}", "a positive integer", value)
    return value


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key, _MISSING)
    if not isinstance(value, str):
        raise _wrong(f"{where}.{key}", "a string", value)
    return value


def _one_of(data: Mapping[str, Any], key: str, where: str, allowed: frozenset[str]) -> str:
    value = data.get(key, _MISSING)
    if isinstance(value, str) and value in allowed:  # str first: a list is unhashable
        return value
    if isinstance(value, str):
        shown = repr(snippet(value, (), 40))
    else:
        shown = "nothing (missing)" if value is _MISSING else _json_type(value)
    raise _shape(f"{where}.{key}: expected one of {', '.join(sorted(allowed))}, got {shown}")


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _wrong(f"{where}.{key}", "a string or null", value)
    return value


def _opt_object(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong(f"{where}.{key}", "an object", value)
    return dict(value)


def connection_from(value: Any, where: str = "connection") -> Connection:
    data = _object(value, where)
    has_order_errors = data.get("has_order_errors", False)
    if not isinstance(has_order_errors, bool):
        raise _wrong(f"{where}.has_order_errors", "a boolean", has_order_errors)
    automation = _opt_object(data, "automation", where)
    for key, interval in automation.items():
        if not isinstance(interval, str):
            raise _wrong(f"{where}.automation.{snippet(key, (), 40)}", "a string", interval)
    return Connection(
        id=_id(data, "id", where),
        name=_str(data, "name", where),
        driver=_str(data, "driver", where),
        status=_one_of(data, "status", where, _CONNECTION_STATUS),  # type: ignore[arg-type]
        version=_id(data, "version", where),  # sent back as If-Match: >= 1
        has_order_errors=has_order_errors,
        created_at=_opt_str(data, "created_at", where) or "",
        updated_at=_opt_str(data, "updated_at", where) or "",
        credentials=_opt_object(data, "credentials", where),
        settings=_opt_object(data, "settings", where),
        automation=automation,
        authorization=_opt_str(data, "authorization", where),
    )


def job_from(value: Any, where: str = "job") -> Job:
    data = _object(value, where)
    progress = data.get("progress")
    if progress is None:
        progress = 0
    elif type(progress) is not int:
        raise _wrong(f"{where}.progress", "an integer", progress)
    return Job(
        id=_id(data, "id", where),
        kind=_one_of(data, "kind", where, _JOB_KIND),  # type: ignore[arg-type]
        connection_id=_id(data, "connection_id", where),
        state=_one_of(data, "state", where, _JOB_STATE),  # type: ignore[arg-type]
        progress=progress,
        created_at=_opt_str(data, "created_at", where) or "",
        started_at=_opt_str(data, "started_at", where),
        finished_at=_opt_str(data, "finished_at", where),
        error=_opt_str(data, "error", where),
    )


def driver_from(value: Any, where: str = "driver") -> Driver:
    data = _object(value, where)
    creatable = data.get("creatable", _MISSING)
    if not isinstance(creatable, bool):
        raise _wrong(f"{where}.creatable", "a boolean", creatable)
    return Driver(
        name=_str(data, "name", where), title=_str(data, "title", where), creatable=creatable
    )


def items_from(value: Any, parse: Callable[[Any, str], T]) -> list[T]:
    """`{items: [...]}` (drivers, enable/disable)."""
    items = _array(_object(value, "body").get("items", _MISSING), "items")
    try:
        return [parse(item, "item") for item in items]
    except InvalidAnswer:
        # Parsing is pure: find the bad item again to name it (`items[3].id`), rather
        # than format a label for each of 10,000 good ones.
        for i, item in enumerate(items):
            parse(item, f"items[{i}]")
        raise


def page_from(value: Any, parse: Callable[[Any, str], T]) -> tuple[list[T], str | None]:
    """One page `{items: [...], next_cursor: str | null}`: the items and the next cursor."""
    data = _object(value, "body")
    cursor = _opt_str(data, "next_cursor", "body")
    return items_from(data, parse), cursor or None


def create_result_from(value: Any) -> CreateResult:
    data = _object(value, "body")
    job = data.get("job")
    return CreateResult(
        connection=connection_from(data.get("connection", _MISSING), "connection"),
        initial_job=job_from(job, "job") if job is not None else None,
    )
