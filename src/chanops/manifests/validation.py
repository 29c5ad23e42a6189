"""Schema validation of one parsed document: a compiled fast path, precise messages on failure.

Valid documents (the common case) go through a fastjsonschema validator compiled once
per driver; only a document it rejects is run through jsonschema, which yields every
error with its path so each can be reported with file:line:column, the field and what
was expected (and a "did you mean" for unknown keys and enum values). Both run the
same self-contained per-driver schema (`schemas.validation_schema`).

Compiled validators are cached under $XDG_CACHE_HOME/chanops as marshalled code objects
(keyed by the schema, fastjsonschema and Python versions) because compiling costs
~50 ms per driver, a quarter of a `chanops validate` run of 10,000 manifests. Loading a
code object runs it, so the cache is only trusted when nobody else can write it: the
directory (created 0700) and every file in it must belong to the effective user and not
be group- or other-writable, and each entry carries an HMAC-SHA256 under a private
key file there (0600, created with O_EXCL), checked before `marshal.loads`. Anything
else (a shared or foreign directory, a wrong owner, mode or MAC, a read-only home)
means compiling in memory: slower, still correct.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import hmac
import json
import logging
import marshal
import os
import stat
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from chanops.manifests import schemas

__all__ = [
    "SchemaProblem",
    "Validator",
    "fast_validator",
    "is_valid_fast",
    "schema_problems",
    "suggest",
    "type_name",
]

Validator = Callable[[Any], Any]
# Where in a document: ("spec", "credentials", 0).
_DocPath = tuple[str | int, ...]

# stdlib logging: the daemon routes it through its log pipeline; a bare command such as
# `chanops validate` (no logging set up) gets a warning as one line on stderr.
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """One schema violation: where (a path into the document) and what was expected."""

    path: tuple[str | int, ...]  # into the document, e.g. ("spec", "credentials", "url")
    message: str
    at_key: bool = False  # point at the key of `path` rather than its value


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "chanops"


_KEY_FILE = "cache.key"
_KEY_BYTES = 32
_MAC_BYTES = hashlib.sha256().digest_size
_MAX_ENTRY_BYTES = 16 * 1024 * 1024  # the largest validator is ~0.3 MB
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: a FIFO planted in the directory must not hang the command.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _private(st: os.stat_result, *, secret: bool = False) -> str | None:
    """Why another user could have written (or, for a `secret`, read) it; None: they cannot."""
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not {os.geteuid()}"
    loose = 0o077 if secret else 0o022
    if st.st_mode & loose:
        return f"mode {stat.S_IMODE(st.st_mode):04o}"
    return None


def _read_private(dir_fd: int, name: str, limit: int, *, secret: bool = False) -> bytes | str:
    """The bytes of regular file `name` in the directory when it is private; else why not."""
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        why = _private(st, secret=secret)
        if why is not None:
            return why
        if st.st_size > limit:
            return "too large"
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # sized by fstat, one byte more to see the end
            chunk = os.read(fd, min(limit + 1 - size, max(st.st_size + 1 - size, 65536)))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks) if size <= limit else "too large"
    finally:
        os.close(fd)


@cache
def _code_cache() -> tuple[int, bytes] | None:
    """(descriptor on the cache directory, MAC key) when it is safe to load code from it.

    The directory is held open and every file in it is opened relative to it, without
    following symlinks, so what was checked is what is read even if the path is
    replaced meanwhile. Refusals that suggest someone else could write the cache are
    warnings (once per process); a cache that merely cannot be made is not.
    """
    path = _cache_dir()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        dir_fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        # O_NOFOLLOW refuses a link (ELOOP, or ENOTDIR with O_DIRECTORY): whoever could
        # replace the directory with one chose what it points at.
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and path.is_symlink():
            _refuse(path, "it is a symlink")
        else:  # a read-only or missing home
            log.debug("validator cache %s unavailable (%s): compiling in memory", path, exc)
        return None
    key: bytes | str | None = None
    try:
        why = _private(os.fstat(dir_fd))
        if why is None:
            key = _cache_mac_key(dir_fd)
            if isinstance(key, str):
                why = f"its {_KEY_FILE} is {key}"
    except OSError as exc:
        log.debug("validator cache %s unavailable (%s): compiling in memory", path, exc)
    if why is not None:
        _refuse(path, why)
    if not isinstance(key, bytes):
        os.close(dir_fd)
        return None
    return dir_fd, key


def _refuse(path: Path, why: str) -> None:
    log.warning(
        "validator cache %s is not private (%s): not used, validators are compiled in "
        "memory; remove it, or make it 0700 and owned by this user",
        path,
        why,
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _cache_mac_key(dir_fd: int) -> bytes | str | None:
    """The directory's MAC key, made on first use.

    A string says why another user may know or have chosen it; None: no usable key for
    now (short: possibly another process writing it this instant), skip the cache.
    """
    try:
        fd = os.open(_KEY_FILE, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
    except FileExistsError:
        data = _read_private(dir_fd, _KEY_FILE, _KEY_BYTES, secret=True)
        if isinstance(data, bytes) and len(data) != _KEY_BYTES:
            log.debug("validator cache key is %d bytes, not %d: skipped", len(data), _KEY_BYTES)
            return None
        return data
    key = os.urandom(_KEY_BYTES)
    try:
        _write_all(fd, key)
    finally:
        os.close(fd)
    return key


def _mac(key: bytes, name: str, payload: bytes) -> bytes:
    # The entry's name is authenticated too: an entry renamed to another schema's key
    # would otherwise run as that schema's validator.
    return hmac.new(key, name.encode() + b"\0" + payload, hashlib.sha256).digest()


def _load_cached(name: str) -> types.CodeType | None:
    cached = _code_cache()
    if cached is None:
        return None
    dir_fd, key = cached
    try:
        data = _read_private(dir_fd, name, _MAX_ENTRY_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        data = f"unreadable ({exc.strerror})"
    if isinstance(data, str):
        log.debug("validator cache entry %s refused: %s", name, data)
        return None
    mac, payload = data[:_MAC_BYTES], data[_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, name, payload)):
        log.debug("validator cache entry %s refused: wrong MAC", name)
        return None
    try:
        code = marshal.loads(payload)  # noqa: S302 - authenticated above: our own bytes
    except (ValueError, EOFError, TypeError):
        return None
    return code if isinstance(code, types.CodeType) else None


def _store_cached(name: str, code: types.CodeType) -> None:
    cached = _code_cache()
    if cached is None:
        return
    dir_fd, key = cached
    payload = marshal.dumps(code)
    tmp = f"{name}.{os.getpid()}.tmp"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)  # left by a crashed process with this pid
        fd = os.open(tmp, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            _write_all(fd, _mac(key, name, payload) + payload)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:  # a full disk: compile again next time, still correct
        log.debug("validator cache entry %s not written: %s", name, exc)


@cache
def fast_validator(driver: str | None) -> Validator:
    """The compiled validator for `driver` (raises fastjsonschema.JsonSchemaException)."""
    import fastjsonschema

    schema = dict(schemas.validation_schema(driver))
    schema.pop("$schema", None)  # fastjsonschema knows drafts 4-7; we use no 2019+ keywords
    text = json.dumps(schema, sort_keys=True)
    salt = f"{fastjsonschema.VERSION}\0{sys.version}\0{text}"
    name = f"validator-{hashlib.sha256(salt.encode()).hexdigest()[:24]}.hmac"
    code = _load_cached(name)
    if code is None:
        source = fastjsonschema.compile_to_code(schema, use_default=False)
        code = compile(source, f"<chanops validator {driver}>", "exec")
        _store_cached(name, code)
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


# What a value of each YAML type is called in messages, first match wins.
_VALUE_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (type(None), "null"),
    (bool, "a boolean"),  # before int: a bool is an int
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a mapping"),
)


def type_name(value: Any) -> str:
    for cls, name in _VALUE_TYPE_NAMES:
        if isinstance(value, cls):
            return name
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


def _missing(error: Any, path: _DocPath, root: Any) -> Iterator[SchemaProblem]:
    """A `required` error: one problem per missing field, with its UI label."""
    props = error.schema.get("properties") or _enclosing_properties(error, root)
    instead = _unless_present(error, root)
    for name in error.validator_value:
        if isinstance(error.instance, dict) and name not in error.instance:
            label = _label(props.get(name)) or _label(_enclosing_properties(error, root).get(name))
            message = f'missing required field "{name}"{label}'
            if instead:
                message += f', or set "{instead}" to adopt an existing connection'
            yield SchemaProblem(path, message)


def _unknown(error: Any, path: _DocPath) -> Iterator[SchemaProblem]:
    """An `additionalProperties` error: one problem per unknown key, with a suggestion."""
    properties = error.schema.get("properties", {})
    known = sorted(properties)
    for key in error.instance:
        if key in properties:
            continue
        hint = suggest(str(key), known)
        if not hint:
            hint = f"; expected one of: {', '.join(known)}" if known else "; none are allowed"
        yield SchemaProblem((*path, str(key)), f'unknown field "{key}"{hint}', at_key=True)


def _not_an_option(error: Any, path: _DocPath, secret: bool) -> SchemaProblem:
    """An `enum` or `const` error; a secret's value is never shown."""
    kind, value = error.validator, error.instance
    options = error.validator_value if kind == "enum" else [error.validator_value]
    if secret:
        return SchemaProblem(path, f"invalid value; expected one of {_quote_list(options)}")
    field = str(path[-1]) if path else "document"
    what = {"driver": "driver", "apiVersion": "apiVersion", "kind": "kind"}.get(field, "value")
    hint = suggest(str(value), [str(o) for o in options]) if isinstance(value, str) else ""
    shown = json.dumps(value) if isinstance(value, str | int | float | bool) else type_name(value)
    return SchemaProblem(
        path, f"unknown {what} {shown}{hint} (expected one of: {_quote_list(options)})"
    )


def _wrong_type(error: Any, path: _DocPath, secret: bool) -> SchemaProblem:
    """A `type` error: what was expected, with the field's UI label, and what was found."""
    expected = error.validator_value
    names = [expected] if isinstance(expected, str) else list(expected)
    wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
    return SchemaProblem(
        path, f"expected {wanted}{_label(error.schema)}, got {type_name(error.instance)}"
    )


def _not_allowed(error: Any, path: _DocPath, secret: bool) -> SchemaProblem | None:
    """A `not` error of the two kinds we word: an OAuth-only field, or interval and cron."""
    field = str(path[-1]) if path else "document"
    if error.schema.get("x-chanops-oauth"):
        return SchemaProblem(
            path,
            f'"{field}"{_label(error.schema)} is set by the platform\'s AUTHORIZE (OAuth) flow '
            "and must not appear in a manifest; remove it",
            at_key=True,
        )
    if field == "sync":
        return SchemaProblem(path, 'set either "interval" or "cron", not both')
    return None


def _not_a_secret(error: Any, path: _DocPath, secret: bool) -> SchemaProblem | None:
    """An `anyOf` error of a secret field matching neither form (see `_secret_ref_errors`)."""
    if not _is_secret(error.schema):
        return None
    return SchemaProblem(
        path,
        f"expected a non-empty string or {{secretRef: {{env: NAME}}}} or "
        f"{{secretRef: {{file: PATH}}}}{_label(error.schema)}, got {type_name(error.instance)}",
    )


def _no_match(error: Any, path: _DocPath, secret: bool) -> SchemaProblem | None:
    """A `pattern` error, with the field's description; a secret's value is never shown."""
    if secret:
        return None
    description = error.schema.get("description")
    why = f": {description}" if isinstance(description, str) else ""
    return SchemaProblem(
        path,
        f"{json.dumps(error.instance)} does not match the pattern {error.validator_value}{why}",
    )


def _secret_ref_arity(error: Any, path: _DocPath, secret: bool) -> SchemaProblem | None:
    """A `minProperties`/`maxProperties` error of a secretRef."""
    if path and str(path[-1]) == "secretRef":
        return SchemaProblem(path, "secretRef needs exactly one of env or file")
    return None


# Our wording of an error that yields one problem, by jsonschema keyword. Each takes
# (error, path, secret), needed or not; None: no wording of ours for this case, so
# `_one_message` uses jsonschema's message (for a secret, one that shows no value).
_WORDINGS: dict[str, Callable[[Any, _DocPath, bool], SchemaProblem | None]] = {
    "enum": _not_an_option,
    "const": _not_an_option,
    "type": _wrong_type,
    "not": _not_allowed,
    "anyOf": _not_a_secret,
    "pattern": _no_match,
    "minProperties": _secret_ref_arity,
    "maxProperties": _secret_ref_arity,
}


def _secret_ref_errors(error: Any) -> list[Any]:
    """The errors inside {secretRef: ...} when an `anyOf` error of a secret field has a
    mapping as its value; otherwise none.

    A secret is a non-empty string or {secretRef: {env|file}}: report the branch the
    value was evidently aiming at, so "secretRef: {path: x}" says "unknown field".
    """
    if not (_is_secret(error.schema) and isinstance(error.instance, dict)):
        return []
    return [e for e in error.context if e.schema_path and e.schema_path[0] == 1]


def _locked(error: Any, path: _DocPath, root: Any) -> SchemaProblem:
    """A field set while the field that unlocks it is not true, both named by label.

    The schema says it as `if <unlock> is not true then <field>: {const: false}`; the
    labels are those of the object the `if` sits on.
    """
    field = str(path[-1])
    unlock = str(error.schema["x-chanops-locked-unless"])
    schema_path = list(error.absolute_schema_path)
    node = root
    for part in schema_path[: schema_path.index("then")] if "then" in schema_path else []:
        node = node[part]
    props = node.get("properties", {}) if isinstance(node, dict) else {}
    return SchemaProblem(
        path,
        f'"{field}"{_label(props.get(field))} is locked unless "{unlock}"'
        f"{_label(props.get(unlock))} is true; set {unlock}: true or remove {field}",
    )


def _one_message(error: Any, path: _DocPath, secret: bool) -> SchemaProblem:
    """The one problem of an error with a single message: ours, else jsonschema's."""
    wording = _WORDINGS.get(error.validator)
    problem = wording(error, path, secret) if wording is not None else None
    if problem is not None:
        return problem
    if secret:
        return SchemaProblem(path, f"invalid secret value ({error.validator})")
    return SchemaProblem(path, str(error.message))


def _messages(error: Any, secret: bool, root: Any) -> Iterator[SchemaProblem]:
    """Turn one jsonschema ValidationError into problems with our wording."""
    path: _DocPath = tuple(error.absolute_path)
    kind = error.validator
    if kind == "required":
        yield from _missing(error, path, root)
    elif kind == "additionalProperties" and isinstance(error.instance, dict):
        yield from _unknown(error, path)
    elif kind == "const" and error.schema.get("x-chanops-locked-unless"):
        yield _locked(error, path, root)
    elif kind == "anyOf" and (inner := _secret_ref_errors(error)):
        for sub in inner:
            yield from _messages(sub, True, root)
    else:
        yield _one_message(error, path, secret)


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


def _unless_present(error: Any, root: Any) -> str | None:
    """X when a `required` error comes from `if: {not: {required: [X]}}, then: ...`.

    BigCommerce needs its credentials only when no `connectionId` adopts the connection
    its app made: the message names the alternative.
    """
    path: list[Any] = list(error.absolute_schema_path)
    if path[-2:-1] != ["then"]:
        return None
    node = root
    for part in path[:-2]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    test = node.get("if") if isinstance(node, dict) else None
    keys = test.get("not", {}).get("required") if isinstance(test, dict) else None
    return str(keys[0]) if isinstance(keys, list) and len(keys) == 1 else None


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
