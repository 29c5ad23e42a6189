"""The RPC profile: chanops's platform operations as Core1 method calls, read from data.

A Core1 instance speaks `POST /<Namespace>.<Controller>.<method>` with a JSON body. Which
method each chanops operation calls, what goes in its body and where its answer puts
the result is data (`schemas/core1-profile.yaml`, overridable from chanops.yaml), so a
user whose instance names a controller differently edits configuration, not code.

Pure: `parse_profile` checks a mapping and builds a `Profile`; `load_profile` only adds
reading the shipped file. Both ends of the wire use one `Profile`:

- the platform client: `Profile.request(op, **arguments)` builds a body,
  `Profile.parts(op, answer)` takes the answer apart (raising `AnswerError`);
- the emulator: `Profile.arguments(op, body)` reads a body back into arguments
  (raising `RequestError`), `Profile.answer(op, parts)` builds the answer.

Records travel under chanops's field names inside chanops and under the profile's
Core1 names on the wire; `to_core1`/`from_core1` rename them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import yaml

from chanops.errors import ConfigError

__all__ = [
    "OPERATIONS",
    "PROFILE_FILE",
    "RECORD_FIELDS",
    "AnswerError",
    "Argument",
    "Condition",
    "Operation",
    "OperationSpec",
    "Profile",
    "ProfileError",
    "RequestError",
    "load_profile",
    "merge",
    "parse_profile",
]

PROFILE_FILE: Final = "schemas/core1-profile.yaml"
SHIPPED: Final = "the shipped core1 profile"

# The key of a save's body under which the changed fields are spread (`"...": $patch`).
SPREAD: Final = "..."

# `<Namespace>.<Controller>.<method>`; a namespace may itself be dotted.
_METHOD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*){2,}$")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")

RECORD_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "connection": (
        "id",
        "name",
        "driver",
        "status",
        "has_order_errors",
        "created_at",
        "updated_at",
        "version",
        "credentials",
        "settings",
        "automation",
        "authorization",
    ),
    "job": (
        "id",
        "kind",
        "connection_id",
        "state",
        "progress",
        "created_at",
        "started_at",
        "finished_at",
        "error",
    ),
    "driver": (
        "name",
        "title",
        "creatable",
        "secret_fields",
        "immutable_fields",
        "oauth_fields",
    ),
}


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """What chanops needs of one operation: fixed in code, whatever the profile says.

    `parts` maps each part of the answer to the kind of record it holds (`rows` is a
    list of them; a kind of None is a plain value such as a total).
    """

    arguments: tuple[str, ...]
    parts: Mapping[str, str | None]
    optional_parts: frozenset[str] = frozenset()
    filters: tuple[str, ...] = ()  # job fields `$filter` may hold conditions on


_LIST: Final = {"rows": "connection", "total": None}
OPERATIONS: Final[Mapping[str, OperationSpec]] = {
    "list_drivers": OperationSpec((), {"rows": "driver"}),
    "list_connections": OperationSpec(("start", "limit"), _LIST, frozenset({"total"})),
    "get_connection": OperationSpec(("id",), {"connection": "connection"}),
    "create_connection": OperationSpec(
        ("name", "driver", "credentials", "automation"),
        {"connection": "connection", "initial_job": "job"},
    ),
    "update_connection": OperationSpec(("id", "if_match", "patch"), {"connection": "connection"}),
    "delete_connection": OperationSpec(("id",), {"job": "job"}),
    "enable": OperationSpec(("ids",), {"rows": "connection"}),
    "disable": OperationSpec(("ids",), {"rows": "connection"}),
    "trigger_sync": OperationSpec(("id",), {"job": "job"}),
    "get_job": OperationSpec(("id",), {"job": "job"}),
    "list_jobs": OperationSpec(
        ("start", "limit", "filter"),
        {"rows": "job", "total": None},
        frozenset({"total"}),
        filters=("connection_id", "state"),
    ),
}

# The record kind a spread `$patch` holds, and the operation it belongs to.
_PATCH_KIND: Final = "connection"


class ProfileError(ConfigError):
    """The profile (shipped or overridden) is not one chanops can use; names the key."""


class RequestError(ValueError):
    """A Core1 request body that does not fit its operation (emulator side)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class AnswerError(ValueError):
    """A Core1 answer that does not fit its operation (client side); names the path."""


@dataclass(frozen=True, slots=True)
class Argument:
    """A request value taken from the operation's argument `name` (`$name` in the file)."""

    name: str


@dataclass(frozen=True, slots=True)
class Condition:
    """The shape of one getList filter condition."""

    property: str
    operator: str
    value: str
    equals: str


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    method: str
    request: Mapping[str, Argument | Any]
    answer: Mapping[str, str]

    @property
    def path(self) -> str:
        """The URL path the operation is POSTed to."""
        return "/" + self.method

    @property
    def spec(self) -> OperationSpec:
        return OPERATIONS[self.name]


def _dig(body: Any, path: str) -> Any:
    """The value at dotted `path` of `body`; AnswerError names the first missing step."""
    value = body
    walked: list[str] = []
    for step in path.split("."):
        walked.append(step)
        if not isinstance(value, dict) or step not in value:
            raise AnswerError(f"{'.'.join(walked)}: missing")
        value = value[step]
    return value


def _place(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for step in parents:
        body = body.setdefault(step, {})
    body[last] = value


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    records: Mapping[str, Mapping[str, str]]  # kind -> chanops field -> Core1 field
    condition: Condition
    operations: Mapping[str, Operation]

    def operation(self, name: str) -> Operation:
        return self.operations[name]

    def by_method(self, method: str) -> Operation | None:
        """The operation a `POST /<method>` calls, if any."""
        for op in self.operations.values():
            if op.method == method:
                return op
        return None

    # -- records ----------------------------------------------------------------------

    def to_core1(self, kind: str, record: Mapping[str, Any]) -> dict[str, Any]:
        names = self.records[kind]
        return {names.get(key, key): value for key, value in record.items()}

    def from_core1(self, kind: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """chanops's names for the fields the profile maps; other keys are dropped."""
        names = self.records[kind]
        return {field: record[core1] for field, core1 in names.items() if core1 in record}

    def core1_field(self, kind: str, field: str) -> str:
        """A chanops field path (`credentials.apiKey`) under Core1's top-level name."""
        head, dot, rest = field.partition(".")
        return self.records[kind].get(head, head) + dot + rest

    # -- the client's side ------------------------------------------------------------

    def request(self, name: str, /, **arguments: Any) -> dict[str, Any]:
        """The body of operation `name` for `arguments` (chanops names and values).

        `patch` is a mapping of connection fields; `filter` a mapping of job field to
        the value it must equal (None: no condition).
        """
        op = self.operations[name]
        missing = set(op.spec.arguments) - set(arguments)
        if missing:
            raise TypeError(f"{name}: missing argument(s) {', '.join(sorted(missing))}")
        body: dict[str, Any] = {}
        for key, value in op.request.items():
            if not isinstance(value, Argument):
                body[key] = value
            elif value.name == "patch":
                body.update(self.to_core1(_PATCH_KIND, arguments["patch"]))
            elif value.name == "filter":
                body[key] = self._conditions(arguments["filter"])
            elif arguments[value.name] is not None:
                body[key] = arguments[value.name]
        return body

    def _conditions(self, wanted: Mapping[str, Any]) -> list[dict[str, Any]]:
        c = self.condition
        names = self.records["job"]
        return [
            {c.property: names[field], c.operator: c.equals, c.value: value}
            for field, value in wanted.items()
            if value is not None
        ]

    def parts(self, name: str, answer: Any) -> dict[str, Any]:
        """The parts of operation `name`'s answer, records under chanops's names.

        Raises AnswerError naming the path of what is missing or not a record.
        """
        op = self.operations[name]
        out: dict[str, Any] = {}
        for part, path in op.answer.items():
            try:
                value = _dig(answer, path)
            except AnswerError:
                if part in op.spec.optional_parts:
                    continue
                raise
            kind = op.spec.parts[part]
            out[part] = value if kind is None else self._records_from(kind, value, path, part)
        return out

    def _records_from(self, kind: str, value: Any, path: str, part: str) -> Any:
        if part == "rows":
            if not isinstance(value, list):
                raise AnswerError(f"{path}: expected an array of {kind} records")
            return [self._record_from(kind, row, f"{path}[{i}]") for i, row in enumerate(value)]
        if value is None and part == "initial_job":
            return None
        return self._record_from(kind, value, path)

    def _record_from(self, kind: str, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise AnswerError(f"{path}: expected a {kind} record (an object)")
        return self.from_core1(kind, value)

    # -- the emulator's side ----------------------------------------------------------

    def arguments(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments of operation `name` read back from a request body.

        Literal keys are accepted whatever they hold; a key the operation does not
        know is a RequestError, unless the operation spreads a patch, in which case it
        is a connection field under its Core1 name.
        """
        op = self.operations[name]
        out: dict[str, Any] = {}
        patch: dict[str, Any] = {}
        for key, value in body.items():
            slot = op.request.get(key)
            if isinstance(slot, Argument):
                out[slot.name] = (
                    self._filter_from(op, key, value) if slot.name == "filter" else value
                )
            elif key in op.request:
                continue  # a literal (a sort order, say): the emulator has its own
            elif SPREAD in op.request:
                patch[self._patch_field(key)] = value
            else:
                known = ", ".join(k for k in op.request if k != SPREAD) or "none"
                raise RequestError(key, f"unknown field {key}; allowed: {known}")
        if SPREAD in op.request:
            out["patch"] = patch
        return out

    def _patch_field(self, core1: str) -> str:
        for field, name in self.records[_PATCH_KIND].items():
            if name == core1:
                return field
        raise RequestError(core1, f"unknown field {core1}")

    def _filter_from(self, op: Operation, key: str, value: Any) -> dict[str, Any]:
        c = self.condition
        names = {self.records["job"][f]: f for f in op.spec.filters}
        if not isinstance(value, list):
            raise RequestError(key, f"{key} must be a list of conditions")
        wanted: dict[str, Any] = {}
        for i, item in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(item, dict) or set(item) != {c.property, c.operator, c.value}:
                raise RequestError(
                    where, f"{where} must be {{{c.property}, {c.operator}, {c.value}}}"
                )
            prop = item[c.property]
            if prop not in names:
                allowed = ", ".join(names)
                raise RequestError(where, f"{where}: cannot filter on {prop!r}; allowed: {allowed}")
            if item[c.operator] != c.equals:
                raise RequestError(where, f"{where}: the only operator is {c.equals!r}")
            wanted[names[prop]] = item[c.value]
        return wanted

    def answer(self, name: str, parts: Mapping[str, Any]) -> dict[str, Any]:
        """The answer of operation `name` for `parts` (records under chanops's names)."""
        op = self.operations[name]
        body: dict[str, Any] = {}
        for part, path in op.answer.items():
            if part not in parts:
                continue
            kind = op.spec.parts[part]
            value = parts[part]
            if kind is not None and part == "rows":
                value = [self.to_core1(kind, row) for row in value]
            elif kind is not None and value is not None:
                value = self.to_core1(kind, value)
            _place(body, path, value)
        return body


# -- loading and checking ---------------------------------------------------------------


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` over `base`: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = merge(below, value)
        else:
            out[key] = value
    return out


def load_profile(
    override: Mapping[str, Any] | None = None, *, source: str = "the profile override"
) -> Profile:
    """The shipped core1 profile with `override` (from chanops.yaml) merged over it.

    Raises ProfileError naming `source` (when there is an override; the merged whole
    is checked, so a clash between an overridden key and a shipped one is the
    override's) and the bad key.
    """
    text = resources.files("chanops").joinpath(PROFILE_FILE).read_text("utf-8")
    shipped = yaml.safe_load(text)
    if override is not None and not isinstance(override, Mapping):
        raise ProfileError(f"{source}: expected a mapping, got {type(override).__name__}")
    data = merge(shipped, override) if override else shipped
    return parse_profile(data, source=source if override else SHIPPED)


class _Checker:
    """Checks a profile mapping; every error names its source and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> ProfileError:
        return ProfileError(f"{self.source}: {key}: {problem}")

    def mapping(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {_kind(value)}")
        return value

    def keys(self, value: Mapping[str, Any], key: str, allowed: Sequence[str]) -> None:
        for name in value:
            if name not in allowed:
                raise self.fail(
                    f"{key}.{name}" if key else str(name),
                    f"unknown key; known: {', '.join(allowed)}",
                )
        for name in allowed:
            if name not in value:
                raise self.fail(f"{key}.{name}" if key else name, "missing")

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def parse_profile(data: Any, *, source: str = SHIPPED) -> Profile:
    """A `Profile` from its mapping, checked whole; ProfileError names `source` and the key."""
    check = _Checker(source)
    top = check.mapping(data, "profile")
    check.keys(top, "", ("profile", "records", "filter_condition", "operations"))
    name = check.string(top["profile"], "profile")
    records = _records(check, top["records"])
    condition = _condition(check, top["filter_condition"])
    operations = _operations(check, top["operations"])
    return Profile(name=name, records=records, condition=condition, operations=operations)


def _records(check: _Checker, value: Any) -> dict[str, dict[str, str]]:
    kinds = check.mapping(value, "records")
    check.keys(kinds, "records", tuple(RECORD_FIELDS))
    out: dict[str, dict[str, str]] = {}
    for kind, fields in RECORD_FIELDS.items():
        where = f"records.{kind}"
        mapped = check.mapping(kinds[kind], where)
        check.keys(mapped, where, fields)
        names = {f: check.string(mapped[f], f"{where}.{f}") for f in fields}
        seen: dict[str, str] = {}
        for field, core1 in names.items():
            if core1 in seen:
                raise check.fail(
                    f"{where}.{field}", f"{core1!r} is already the Core1 name of {seen[core1]}"
                )
            seen[core1] = field
        out[kind] = names
    return out


def _condition(check: _Checker, value: Any) -> Condition:
    where = "filter_condition"
    shape = check.mapping(value, where)
    check.keys(shape, where, ("property", "operator", "value", "equals"))
    c = Condition(**{k: check.string(shape[k], f"{where}.{k}") for k in shape})
    if len({c.property, c.operator, c.value}) < len(("property", "operator", "value")):
        raise check.fail(where, "property, operator and value must be three different keys")
    return c


def _operations(check: _Checker, value: Any) -> dict[str, Operation]:
    ops = check.mapping(value, "operations")
    check.keys(ops, "operations", tuple(OPERATIONS))
    out: dict[str, Operation] = {}
    methods: dict[str, str] = {}
    for name in OPERATIONS:
        op = _operation(check, name, ops[name])
        if op.method in methods:
            raise check.fail(
                f"operations.{name}.method", f"{op.method} is already {methods[op.method]}'s"
            )
        methods[op.method] = name
        out[name] = op
    return out


def _operation(check: _Checker, name: str, value: Any) -> Operation:
    where = f"operations.{name}"
    spec = OPERATIONS[name]
    body = check.mapping(value, where)
    check.keys(body, where, ("method", "request", "answer"))
    method = check.string(body["method"], f"{where}.method")
    if not _METHOD.match(method):
        raise check.fail(f"{where}.method", f"{method!r} is not <Namespace>.<Controller>.<method>")
    request = _request(check, where, spec, body["request"])
    answer = _answer(check, where, spec, body["answer"])
    return Operation(name=name, method=method, request=request, answer=answer)


def _request(
    check: _Checker, where: str, spec: OperationSpec, value: Any
) -> dict[str, Argument | Any]:
    where = f"{where}.request"
    mapping = check.mapping(value, where)
    out: dict[str, Argument | Any] = {}
    for key, slot in mapping.items():
        at = f'{where}."{key}"' if key == SPREAD else f"{where}.{key}"
        if not isinstance(key, str) or not key:
            raise check.fail(where, f"{key!r} is not a key name")
        if isinstance(slot, str) and slot.startswith("$"):
            arg = slot[1:]
            if arg not in spec.arguments:
                known = " ".join(f"${a}" for a in spec.arguments) or "none"
                raise check.fail(at, f"unknown argument {slot}; this operation has: {known}")
            if (key == SPREAD) != (arg == "patch"):
                raise check.fail(at, f'only $patch is spread, and only under "{SPREAD}"')
            if arg in (a.name for a in out.values() if isinstance(a, Argument)):
                raise check.fail(at, f"{slot} is sent twice")
            out[key] = Argument(arg)
        elif key == SPREAD:
            raise check.fail(at, f'only $patch is spread, and only under "{SPREAD}"')
        else:
            out[key] = slot
    sent = {a.name for a in out.values() if isinstance(a, Argument)}
    for arg in spec.arguments:
        if arg not in sent:
            raise check.fail(where, f"${arg} is not sent")
    return out


def _answer(check: _Checker, where: str, spec: OperationSpec, value: Any) -> dict[str, str]:
    where = f"{where}.answer"
    mapping = check.mapping(value, where)
    for part in mapping:
        if part not in spec.parts:
            raise check.fail(f"{where}.{part}", f"unknown part; known: {', '.join(spec.parts)}")
    out: dict[str, str] = {}
    for part in spec.parts:
        if part not in mapping:
            if part in spec.optional_parts:
                continue
            raise check.fail(f"{where}.{part}", "missing")
        path = check.string(mapping[part], f"{where}.{part}")
        if not _PATH.match(path):
            raise check.fail(f"{where}.{part}", f"{path!r} is not a dotted path like data.rows")
        for other, taken in out.items():
            if path == taken or path.startswith(taken + ".") or taken.startswith(path + "."):
                raise check.fail(f"{where}.{part}", f"{path!r} overlaps {other}'s {taken!r}")
        out[part] = path
    return out
