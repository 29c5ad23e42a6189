"""Schema validation of one parsed document: a compiled fast path, precise messages on failure.

Valid documents (the common case) go through a fastjsonschema validator compiled once
per driver; only a document it rejects is run through jsonschema, which yields every
error with its path so each can be reported with file:line:column, the field and what
was expected (and a "did you mean" for unknown keys and enum values). Both run the
same self-contained per-driver schema (`schemas.validation_schema`).

Compiled validators are cached under $XDG_CACHE_HOME/chanops as marshalled code objects
(keyed by the schema, fastjsonschema and Python versions) because compiling costs
~40 ms per driver, a large share of a `chanops validate` run; without a writable cache
it compiles in memory.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import marshal
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from chanops.manifests import schemas

Validator = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """One schema violation: where (a path into the document) and what was expected."""

    path: tuple[str | int, ...]  # into the document, e.g. ("spec", "credentials", "url")
    message: str
    at_key: bool = False  # point at the key of `path` rather than its value


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "chanops"


@cache
def fast_validator(driver: str | None) -> Validator:
    """The compiled validator for `driver` (raises fastjsonschema.JsonSchemaException)."""
    import fastjsonschema

    schema = dict(schemas.validation_schema(driver))
    schema.pop("$schema", None)  # fastjsonschema knows drafts 4-7; we use no 2019+ keywords
    text = json.dumps(schema, sort_keys=True)
    salt = f"{fastjsonschema.VERSION}\0{sys.version}\0{text}"
    key = hashlib.sha256(salt.encode()).hexdigest()[:24]
    path = _cache_dir() / f"validator-{key}.marshal"
    code: Any = None
    try:
        code = marshal.loads(path.read_bytes())  # noqa: S302 - our own cache, keyed by hash
    except (OSError, ValueError, EOFError, TypeError):
        code = None
    if code is None:
        source = fastjsonschema.compile_to_code(schema, use_default=False)
        code = compile(source, f"<chanops validator {driver}>", "exec")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(marshal.dumps(code))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home: compile every run, still correct
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - code fastjsonschema generated from our schema
    validate: Validator = namespace["validate"]
    return validate


def is_valid_fast(document: Any, driver: str | None) -> bool:
    """True when the compiled validator accepts `document`.

    Any failure, including the generated code tripping over odd YAML data (e.g. a
    non-string key), means "not known valid": the caller then asks jsonschema.
    """
    try:
        fast_validator(driver)(document)
    except Exception:
        return False
    return True


@cache
def _slow_validator(driver: str | None) -> Any:
    import jsonschema  # type: ignore[import-untyped,unused-ignore]

    cls = jsonschema.Draft202012Validator
    return cls(schemas.validation_schema(driver), format_checker=cls.FORMAT_CHECKER)


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def suggest(word: str, options: Sequence[str]) -> str:
    """'; did you mean "x"?' when one option is close to `word`, else ''."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _label(schema: Any) -> str:
    title = schema.get("title") if isinstance(schema, dict) else None
    return f" ({title})" if isinstance(title, str) else ""


def _quote_list(values: Sequence[Any]) -> str:
    return ", ".join(json.dumps(v) for v in values)


def _is_secret(schema: Any) -> bool:
    return isinstance(schema, dict) and bool(schema.get("x-chanops-secret"))


def _messages(error: Any, secret: bool, root: Any) -> Iterator[SchemaProblem]:
    """Turn one jsonschema ValidationError into problems with our wording."""
    path: tuple[str | int, ...] = tuple(error.absolute_path)
    kind = error.validator
    schema = error.schema
    value = error.instance
    field = str(path[-1]) if path else "document"
    if kind == "required":
        props = schema.get("properties") or _enclosing_properties(error, root)
        for name in error.validator_value:
            if isinstance(value, dict) and name not in value:
                yield SchemaProblem(
                    path,
                    f'missing required field "{name}"{_label(props.get(name))}',
                )
        return
    if kind == "additionalProperties" and isinstance(value, dict):
        known = sorted(schema.get("properties", {}))
        for key in value:
            if key in schema.get("properties", {}):
                continue
            hint = suggest(str(key), known)
            if not hint:
                hint = f"; expected one of: {', '.join(known)}" if known else "; none are allowed"
            yield SchemaProblem((*path, str(key)), f'unknown field "{key}"{hint}', at_key=True)
        return
    if kind in ("enum", "const"):
        options = error.validator_value if kind == "enum" else [error.validator_value]
        what = {"driver": "driver", "apiVersion": "apiVersion", "kind": "kind"}.get(field, "value")
        if secret:
            yield SchemaProblem(path, f"invalid value; expected one of {_quote_list(options)}")
            return
        hint = suggest(str(value), [str(o) for o in options]) if isinstance(value, str) else ""
        shown = (
            json.dumps(value) if isinstance(value, str | int | float | bool) else type_name(value)
        )
        yield SchemaProblem(
            path, f"unknown {what} {shown}{hint} (expected one of: {_quote_list(options)})"
        )
        return
    if kind == "type":
        expected = error.validator_value
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        yield SchemaProblem(path, f"expected {wanted}{_label(schema)}, got {type_name(value)}")
        return
    if kind == "not" and schema.get("x-chanops-oauth"):
        yield SchemaProblem(
            path,
            f'"{field}"{_label(schema)} is set by the platform\'s AUTHORIZE (OAuth) flow '
            "and must not appear in a manifest; remove it",
            at_key=True,
        )
        return
    if kind == "not" and field == "sync":
        yield SchemaProblem(path, 'set either "interval" or "cron", not both')
        return
    if kind == "anyOf" and _is_secret(schema):
        # A secret is a non-empty string or {secretRef: {env|file}}: report the branch
        # the value was evidently aiming at, so "secretRef: {path: x}" says "unknown field".
        branch = 1 if isinstance(value, dict) else 0
        inner = [e for e in error.context if e.schema_path and e.schema_path[0] == branch]
        if inner and isinstance(value, dict):
            for sub in inner:
                yield from _messages(sub, True, root)
            return
        yield SchemaProblem(
            path,
            f"expected a non-empty string or {{secretRef: {{env: NAME}}}} or "
            f"{{secretRef: {{file: PATH}}}}{_label(schema)}, got {type_name(value)}",
        )
        return
    if kind == "pattern" and not secret:
        description = schema.get("description")
        why = f": {description}" if isinstance(description, str) else ""
        yield SchemaProblem(
            path, f"{json.dumps(value)} does not match the pattern {error.validator_value}{why}"
        )
        return
    if kind in ("minProperties", "maxProperties") and field == "secretRef":
        yield SchemaProblem(path, "secretRef needs exactly one of env or file")
        return
    if secret:
        yield SchemaProblem(path, f"invalid secret value ({kind})")
        return
    yield SchemaProblem(path, str(error.message))


def schema_problems(document: Any, driver: str | None) -> list[SchemaProblem]:
    """Every schema violation of `document`, in document order (empty when valid)."""
    validator = _slow_validator(driver)
    problems: list[SchemaProblem] = []
    for error in validator.iter_errors(document):
        secret = any(_is_secret(s) for s in _schemas_along(error))
        problems.extend(_messages(error, secret, validator.schema))
    # Stable, de-duplicated.
    seen: set[tuple[tuple[str | int, ...], str]] = set()
    unique: list[SchemaProblem] = []
    for problem in problems:
        marker = (problem.path, problem.message)
        if marker not in seen:
            seen.add(marker)
            unique.append(problem)
    return unique


def _enclosing_properties(error: Any, root: Any) -> Any:
    """`properties` of the object schema a `then`/`allOf` branch applies to (for labels)."""
    path = list(error.absolute_schema_path)[:-1]
    while path and (isinstance(path[-1], int) or path[-1] in ("then", "else", "allOf")):
        path.pop()
    node = root
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return {}
    return node.get("properties", {}) if isinstance(node, dict) else {}


def _schemas_along(error: Any) -> Iterator[Any]:
    yield error.schema
    parent = error.parent
    while parent is not None:
        yield parent.schema
        parent = parent.parent
