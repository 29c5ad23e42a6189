"""Loading manifests: discovery, safe YAML with positions, validation, cross-file checks.

The imperative shell of the manifests package (it reads files); the checks it runs on
parsed documents are pure. Every problem becomes a Diagnostic with file:line:column
and the field path; nothing raises for bad input, so one run reports every problem in
every file.

Safety limits (DESIGN.md section 6): files over MAX_FILE_BYTES are not read, a file
holds at most MAX_DOCUMENTS documents, a document expands to at most MAX_NODES nodes
through aliases (a billion-laughs file is an error, not a hang), only YAML's safe
types are built (no objects), and YAML 1.1 surprises are switched off (`NO` and `on`
stay strings, dates stay strings).

Whoever writes a manifest is not trusted with the host (docs/manifests.md, "What a
manifest can reach"): a manifest is read only when it is a regular file whose real path
lies inside a manifests root. A symlink out of the root, or a directory leading out, is
refused without being opened, so no host file's content can surface in a diagnostic;
FIFOs, sockets and devices are refused without blocking (opened O_NONBLOCK, checked
with fstat before any read).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import re
import signal
import stat
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from chanops.manifests import validation
from chanops.manifests.drivers import DRIVER_NAMES, driver_info
from chanops.manifests.durations import parse_duration
from chanops.manifests.model import (
    Diagnostic,
    LoadResult,
    Manifest,
    SecretRef,
    SourceLocation,
    SyncSpec,
)
from chanops.manifests.secrets import check_secret_ref, default_secrets_dirs

MAX_FILE_BYTES = 1024 * 1024
MAX_DOCUMENTS = 1000
MAX_NODES = 50_000
MANIFEST_SUFFIXES = (".yaml", ".yml")
# Diagnostic codes on a directory rather than a file: its path is still a failed file.
DIRECTORY_FAILURES = frozenset({"symlink-loop", "outside-root"})
# Above this many files, loading is split over the CPU cores (forked workers); below it
# the fork and result transfer cost more than they save.
PARALLEL_MIN_FILES = 1500
# A load started in the background (a command overlapping it with platform I/O) forks
# workers from this many bytes of manifests up: its caller is busy meanwhile, so the
# workers pay off sooner (about 0.1 s of parsing; 10,000 manifests are ~3.5 MB).
BACKGROUND_MIN_BYTES = 256 * 1024

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"


class _Loader(_BaseLoader):  # type: ignore[misc]
    """The C parser and composer (when available) with a faster, stricter resolver.

    Only the node tree is taken from PyYAML; `_Builder` turns it into data.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        # PyYAML calls this for every node; the generic version walks path resolvers we
        # never use. Same answers for plain scalars, in a fraction of the time.
        if kind is yaml.ScalarNode:
            if implicit[0]:
                if value == "":
                    return _NULL
                for tag, regexp in _RESOLVERS.get(value[0], ()):
                    if regexp.match(value):
                        return str(tag)
            return _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass  # no path resolvers: skip PyYAML's per-node bookkeeping

    def ascend_resolver(self) -> None:
        pass


# YAML 1.2 booleans only (`NO`, `on`, `y` stay strings: marketplace NO is Norway), and no
# timestamps (`mfnFrom: 2024-01-01` is a string the schema checks as a date).
_RESOLVERS: dict[str, list[tuple[str, Any]]] = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _RESOLVERS.setdefault(_first, []).append(
        (_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"))
    )


class _YAMLProblem(Exception):
    def __init__(self, node: Any, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


class _Builder:
    """Node tree -> plain data (dict, list, str, int, float, bool, None).

    Stricter than PyYAML's SafeConstructor where it matters for manifests: a duplicate
    key is an error (PyYAML keeps the last one silently), tags other than the core
    schema's are errors, and keys must be scalars. Duplicate keys are collected (every
    one is reported); anything else stops the document.
    """

    _scalars = yaml.constructor.SafeConstructor()

    def __init__(self) -> None:
        self.duplicates: list[tuple[Any, str]] = []

    def build(self, node: Any) -> Any:
        tag = node.tag
        if tag == _STR:
            if isinstance(node, yaml.ScalarNode):
                return node.value
        elif tag == _MAP:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node)
        elif tag == _SEQ:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(v) for v in node.value]
        elif tag == _NULL:
            return None
        elif tag == _BOOL:
            return node.value in ("true", "True", "TRUE")
        elif tag == "tag:yaml.org,2002:int":
            return self._scalars.construct_yaml_int(node)
        elif tag == "tag:yaml.org,2002:float":
            return self._scalars.construct_yaml_float(node)
        raise _YAMLProblem(node, f"unsupported YAML tag {tag}: manifests use plain data only")

    def _mapping(self, node: Any) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merges: list[Any] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise _YAMLProblem(key_node, "a mapping key must be a plain value")
            key = self.build(key_node)
            if key in result:
                self.duplicates.append((key_node, str(key)))
                continue
            result[key] = self.build(value_node)
        for merge in merges:  # `<<: *defaults`: explicit keys win
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                merged = self.build(source)
                if not isinstance(merged, dict):
                    raise _YAMLProblem(source, "a merge key (<<) needs a mapping")
                for key, value in merged.items():
                    result.setdefault(key, value)
        return result


@dataclass(frozen=True, slots=True)
class LoadOptions:
    secrets_dirs: tuple[Path, ...] = ()
    strict: bool = False
    check_secrets: bool = False
    # The manifests roots (directories, as given): a file named under one must resolve
    # inside it (resolved when checked: a root that is a git-sync symlink may have been
    # swapped). A file named under none is judged against the directory it is named in.
    roots: tuple[str, ...] = ()


@dataclass(slots=True)
class FileOutcome:
    """What one file produced. `failed`: it exists but something in it did not load."""

    file: str
    manifests: list[Manifest] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    failed: bool = False


# ---------------------------------------------------------------------------- discovery


def is_manifest_name(name: str) -> bool:
    """Whether a file name is a manifest: *.yaml / *.yml, not hidden, not an editor's temp.

    The one rule for both discovery and the daemon's watcher (which must wake for
    exactly the files a load reads): `.x.yaml`, `#x.yaml#`, `~x.yaml` and `x.yaml~` are
    not manifests; `x.tmp.yaml` is.
    """
    if name.startswith((".", "#", "~")) or name.endswith(("~", "#")):
        return False
    return name.endswith(MANIFEST_SUFFIXES)


def _error(file: str, message: str, *, code: str, line: int = 1, column: int = 1) -> Diagnostic:
    return Diagnostic("error", file, line, column, message, code=code)


def _within(real: str, base: str) -> bool:
    """Whether the resolved path `real` is `base` or lies under it (both resolved)."""
    return real == base or real.startswith(base if base.endswith("/") else base + "/")


def discover(root: str) -> tuple[list[str], list[Diagnostic], bool]:
    """(manifest files under `root` sorted, problems, whole tree readable).

    Symlinked directories are followed when they resolve inside the root (once: a link
    back to a directory already on the walk is a loop, reported and not followed); one
    that leads out of the root is refused unread. The third value is False when the
    root or any directory under it could not be walked (unreadable, or refused): files
    in it are unknown, so the caller must not take them for deleted.
    """
    files: list[str] = []
    problems: list[Diagnostic] = []
    base = os.path.realpath(root)

    def walk(directory: str, ancestors: frozenset[str]) -> bool:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            problems.append(
                _error(directory, f"cannot read directory: {exc.strerror}", code="unreadable")
            )
            return False
        whole = True
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir and is_manifest_name(entry.name):
                # `a.yaml` that became a directory is a broken manifest, not a removed
                # one: listed, it fails to read ("is a directory"), so what it defined
                # freezes instead of being deleted. Its content is not walked.
                files.append(entry.path)
                continue
            if is_dir:
                real = os.path.realpath(entry.path)
                if not _within(real, base):
                    # Walking it would list (and then read) host files chosen by
                    # whoever wrote the link; its target is not named either.
                    problems.append(
                        _error(
                            entry.path,
                            "symlinked directory leads out of the manifests root; not "
                            "followed (manifests must lie inside the root)",
                            code="outside-root",
                        )
                    )
                    whole = False
                    continue
                if real in ancestors:
                    problems.append(
                        _error(
                            entry.path,
                            f"symlink loop: {entry.path} points back to {real}; not followed",
                            code="symlink-loop",
                        )
                    )
                    continue
                whole = walk(entry.path, ancestors | {real}) and whole
            elif is_manifest_name(entry.name):
                files.append(entry.path)
        return whole

    ok = walk(root, frozenset({base}))
    return sorted(files), problems, ok


# ---------------------------------------------------------------------------- reading


# O_NOFOLLOW: a symlink is never opened blindly, only its checked real path is.
# O_NONBLOCK: opening a FIFO must not wait for a writer (it would hang the load, and the
# daemon with it); reads of a regular file ignore the flag.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

# Resolved roots, by root as given: resolving once per file would cost a stat per path
# component. Refreshed when a file does not fit, since a root that is a symlink
# (git-sync) may have been swapped to a new checkout since.
_REAL_ROOTS: dict[str, str] = {}


def _inside_roots(real: str, path: str, roots: Sequence[str]) -> bool:
    """Whether `real` (where `path` leads) lies inside the root `path` was found under.

    That root is the one in `roots` that `path` is named under; a file named under none
    (given on its own) is judged against the directory it is named in.
    """
    mine = [r for r in roots if path.startswith(r if r.endswith("/") else r + "/")]
    if not mine:
        return _within(real, os.path.realpath(os.path.dirname(os.path.abspath(path))))
    for refresh in (False, True):
        for root in mine:
            base = None if refresh else _REAL_ROOTS.get(root)
            if base is None:
                base = _REAL_ROOTS[root] = os.path.realpath(root)
            if _within(real, base):
                return True
    return False


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def _not_regular(path: str, mode: int) -> Diagnostic:
    return _error(path, f"is {_kind(mode)}, not a regular file", code="not-a-file")


def _open_failed(path: str, exc: OSError) -> Diagnostic:
    if exc.errno == errno.ELOOP:
        return _error(path, "symlink loop: the link never reaches a file", code="symlink-loop")
    if exc.errno == errno.ENOENT:
        return _error(path, "file does not exist (broken symlink?)", code="unreadable")
    if exc.errno == errno.ENXIO:  # a socket (or a device with no driver) cannot be opened
        return _error(path, "is a socket, not a regular file", code="not-a-file")
    return _error(path, f"cannot read file: {exc.strerror}", code="unreadable")


def _outside(path: str) -> Diagnostic:
    return _error(
        path,
        "symlink leads out of the manifests root; not read (manifests must lie inside the root)",
        code="outside-root",
    )


def _open(path: str, roots: Sequence[str]) -> tuple[int | None, Diagnostic | None]:
    """A descriptor on the manifest at `path` once it is known to lie inside `roots`."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            return None, _open_failed(path, exc)
        # The name is a symlink (O_NOFOLLOW refused it): follow it only to a place inside
        # the root, checked before anything there is opened (opening some devices acts).
        target = os.path.realpath(path)
        if not _inside_roots(target, path, roots):
            return None, _outside(path)
        try:
            fd = os.open(target, _OPEN_FLAGS)
        except OSError as again:
            return None, _open_failed(path, again)
    # What the kernel actually opened: discovery checked the directories on the way, but
    # one could have been swapped for a symlink out of the root since (/proc names the
    # open file; without /proc, resolve the name again).
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = os.path.realpath(path)
    if not _inside_roots(real, path, roots):
        os.close(fd)
        return None, _outside(path)
    return fd, None


def _read(path: str, roots: Sequence[str] = ()) -> tuple[str | None, Diagnostic | None]:
    """The file's text, or the reason it cannot be used (no content in the reason)."""
    fd, problem = _open(path, roots)
    if fd is None:
        return None, problem
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, _not_regular(path, st.st_mode)
        size = st.st_size
        data = b""
        if size <= MAX_FILE_BYTES:
            # Up to one byte past the limit, so a file that grew since fstat is still
            # caught; sized by fstat (not a 1 MiB buffer per file), then EOF.
            limit = MAX_FILE_BYTES + 1
            chunks: list[bytes] = []
            got = 0
            while got < limit:
                chunk = os.read(fd, min(limit - got, max(size + 1 - got, 65536)))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            data = b"".join(chunks)
            size = max(size, len(data))
    except OSError as exc:
        return None, _error(path, f"cannot read file: {exc.strerror}", code="unreadable")
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        return None, _error(
            path,
            f"file is too large ({size} bytes; the limit is {MAX_FILE_BYTES} bytes)",
            code="too-large",
        )
    if b"\0" in data:
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        return None, _error(
            path, "binary file (NUL byte): manifests are UTF-8 text", code="encoding", line=line
        )
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, _error(
            path,
            f"not UTF-8 (byte 0x{data[exc.start]:02x}): manifests must be UTF-8 text",
            code="encoding",
            line=line,
            column=column,
        )


def _yaml_error(path: str, text: str, exc: yaml.YAMLError) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 1
    column = mark.column + 1 if mark is not None else 1
    problem = str(getattr(exc, "problem", None) or exc).strip()
    context = getattr(exc, "context", None)
    lines = text.splitlines()
    bad_line = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in bad_line[:column] or "\\t" in problem:
        message = "tab character: YAML indentation must use spaces"
    else:
        message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    return _error(path, message, code="yaml", line=line, column=column)


def _expanded_size(node: Any, limit: int) -> int | None:
    """Nodes in `node` with every alias expanded, stopping past `limit`; None: recursive."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: Any) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise RecursionError
        active.add(key)
        total = 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        elif isinstance(n, yaml.SequenceNode):
            for v in n.value:
                total += size(v)
                if total > limit:
                    break
        active.discard(key)
        sizes[key] = total
        return total

    try:
        return size(node)
    except RecursionError:
        return None


@dataclass(slots=True)
class _Document:
    data: Any
    node: Any
    index: int


def parse(path: str, text: str) -> tuple[list[_Document], list[Diagnostic]]:
    """Every non-empty document in `text`, with its node tree for positions."""
    documents: list[_Document] = []
    problems: list[Diagnostic] = []
    may_alias = "&" in text  # no anchor, no alias: skip the expansion walk
    loader = _Loader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            if index > MAX_DOCUMENTS:
                problems.append(
                    _error(
                        path,
                        f"too many documents (the limit is {MAX_DOCUMENTS} per file)",
                        code="limits",
                        line=node.start_mark.line + 1,
                    )
                )
                break
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
            if may_alias:
                size = _expanded_size(node, MAX_NODES)
                if size is None or size > MAX_NODES:
                    why = (
                        "an alias refers to itself"
                        if size is None
                        else (f"aliases expand past {MAX_NODES} nodes")
                    )
                    problems.append(
                        _error(
                            path,
                            f"document {index}: {why} (a YAML alias bomb?)",
                            code="limits",
                            line=line,
                            column=column,
                        )
                    )
                    continue
            builder = _Builder()
            try:
                data = builder.build(node)
            except _YAMLProblem as exc:
                mark = exc.node.start_mark
                problems.append(
                    _error(
                        path, exc.message, code="yaml", line=mark.line + 1, column=mark.column + 1
                    )
                )
                continue
            for key_node, key in builder.duplicates:
                problems.append(
                    _error(
                        path,
                        f'duplicate key "{key}" in a mapping (YAML keys must be unique)',
                        code="duplicate-key",
                        line=key_node.start_mark.line + 1,
                        column=key_node.start_mark.column + 1,
                    )
                )
            if builder.duplicates:
                continue
            if data is None:
                continue  # an empty document (e.g. a trailing ---): nothing to load
            documents.append(_Document(data, node, index))
    except yaml.YAMLError as exc:
        problems.append(_yaml_error(path, text, exc))
    except RecursionError:
        problems.append(_error(path, "YAML nesting is too deep", code="limits"))
    finally:
        loader.dispose()
    if not documents and not problems:
        problems.append(
            _error(path, "empty file: expected at least one Connection manifest", code="empty")
        )
    return documents, problems


# ---------------------------------------------------------------------------- positions


def locate(node: Any, path: Sequence[str | int], *, at_key: bool = False) -> tuple[int, int]:
    """(line, column), 1-based, of `path` inside a node tree; the deepest existing part."""
    current = node
    key_node = None
    for part in path:
        key_node = None
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    key_node, current = k, v
                    break
            else:
                break
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(current.value):
                current = current.value[part]
            else:
                break
        else:
            break
    target = key_node if (at_key and key_node is not None) else current
    mark = target.start_mark
    return mark.line + 1, mark.column + 1


def dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------------------- documents


def _secret_refs_to_model(value: Any) -> Any:
    """Credentials with every `{secretRef: {...}}` replaced by a SecretRef."""
    if isinstance(value, dict):
        ref = value.get("secretRef")
        if len(value) == 1 and isinstance(ref, dict):
            return SecretRef(env=ref.get("env"), file=ref.get("file"))
        return {k: _secret_refs_to_model(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_secret_refs_to_model(v) for v in value]
    return value


def _to_manifest(data: dict[str, Any], source: SourceLocation) -> Manifest:
    metadata = data["metadata"]
    spec = data["spec"]
    sync = spec.get("sync")
    sync_spec = None
    if sync is not None:
        sync_spec = SyncSpec(
            interval_seconds=parse_duration(sync["interval"]) if "interval" in sync else None,
            cron=sync.get("cron"),
            jitter_seconds=parse_duration(sync["jitter"]) if "jitter" in sync else None,
            timeout_seconds=parse_duration(sync.get("timeout", "45m")),
        )
    return Manifest(
        name=metadata["name"],
        driver=spec["driver"],
        display_name=spec.get("displayName", metadata["name"]),
        source=source,
        labels=dict(metadata.get("labels") or {}),
        connection_id=spec.get("connectionId"),
        enabled=spec.get("enabled", True),
        credentials=_secret_refs_to_model(spec.get("credentials") or {}),
        settings=spec.get("settings") or {},
        automation=dict(spec.get("automation") or {}),
        sync=sync_spec,
        deletion_policy=spec.get("deletionPolicy", "Delete"),
        suspend=spec.get("suspend", False),
        ignore_differences=tuple(spec.get("ignoreDifferences") or ()),
    )


def _pointer_parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def _check_secrets(
    path: str, doc: _Document, manifest: Manifest, options: LoadOptions
) -> list[Diagnostic]:
    problems: list[Diagnostic] = []
    info = driver_info(manifest.driver)
    for pointer in sorted(info.secret_paths - info.oauth_paths):
        parts = _pointer_parts(pointer)
        value: Any = manifest.credentials
        for part in parts[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        doc_path = ["spec", *parts]
        field_name = dotted(doc_path)
        label = info.labels.get(pointer, parts[-1])
        if isinstance(value, str):
            line, column = locate(doc.node, doc_path)
            problems.append(
                Diagnostic(
                    "error" if options.strict else "warning",
                    path,
                    line,
                    column,
                    f"literal secret in {label!r}: use {{secretRef: {{env: NAME}}}} or "
                    "{secretRef: {file: PATH}} so the value stays out of git",
                    field_name,
                    "literal-secret",
                )
            )
        elif isinstance(value, SecretRef):
            why = check_secret_ref(
                value, secrets_dirs=options.secrets_dirs, must_resolve=options.check_secrets
            )
            if why is not None:
                line, column = locate(doc.node, [*doc_path, "secretRef"], at_key=False)
                problems.append(
                    Diagnostic(
                        "error",
                        path,
                        line,
                        column,
                        f"secretRef {value.describe()} {why}",
                        field_name,
                        "secret-ref",
                    )
                )
    return problems


def check_document(
    path: str, doc: _Document, options: LoadOptions
) -> tuple[Manifest | None, list[Diagnostic]]:
    """Validate one parsed document; the Manifest when it has no error."""
    data = doc.data
    if not isinstance(data, dict):
        line, column = doc.node.start_mark.line + 1, doc.node.start_mark.column + 1
        got = validation.type_name(data)
        return None, [
            _error(
                path,
                f"document {doc.index} is {got}: expected a mapping "
                "(apiVersion: chanops/v1, kind: Connection, metadata, spec)",
                code="schema",
                line=line,
                column=column,
            )
        ]
    spec = data.get("spec")
    driver = spec.get("driver") if isinstance(spec, dict) else None
    key = driver if isinstance(driver, str) and driver in DRIVER_NAMES else None
    if not validation.is_valid_fast(data, key) or key is None:
        problems = validation.schema_problems(data, key)
        if problems or key is None:
            diagnostics = []
            for problem in problems:
                line, column = locate(doc.node, problem.path, at_key=problem.at_key)
                diagnostics.append(
                    Diagnostic(
                        "error", path, line, column, problem.message, dotted(problem.path), "schema"
                    )
                )
            return None, diagnostics
    line, column = doc.node.start_mark.line + 1, doc.node.start_mark.column + 1
    manifest = _to_manifest(data, SourceLocation(path, line, column))
    diagnostics = _check_secrets(path, doc, manifest, options)
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    return manifest, diagnostics


def load_file(path: str | Path, options: LoadOptions | None = None) -> FileOutcome:
    """Read, parse and validate one file (no cross-file checks): a daemon's cheap re-load."""
    name = str(path)
    opts = options or LoadOptions()
    outcome = FileOutcome(name)
    text, problem = _read(name, opts.roots)
    if problem is not None or text is None:
        outcome.diagnostics.append(problem or _error(name, "cannot read file", code="unreadable"))
        outcome.failed = True
        return outcome
    documents, problems = parse(name, text)
    outcome.diagnostics.extend(problems)
    for doc in documents:
        manifest, diagnostics = check_document(name, doc, opts)
        outcome.diagnostics.extend(diagnostics)
        if manifest is not None:
            outcome.manifests.append(manifest)
    outcome.failed = any(d.severity == "error" for d in outcome.diagnostics)
    return outcome


# ---------------------------------------------------------------------------- many files


_Identity = tuple[str, str, str, int | None, int, int]  # name, driver, display, id, line, col


def _identity(m: Manifest) -> _Identity:
    return (m.name, m.driver, m.display_name, m.connection_id, m.source.line, m.source.column)


def _from_identity(file: str, ident: _Identity) -> Manifest:
    name, driver, display, connection_id, line, column = ident
    return Manifest(
        name=name,
        driver=driver,
        display_name=display,
        source=SourceLocation(file, line, column),
        connection_id=connection_id,
    )


def _load_chunk(files: Sequence[str], options: LoadOptions) -> list[FileOutcome]:
    # Loading allocates many small acyclic objects and keeps them: the cyclic GC would
    # rescan the growing heap again and again for nothing (measured: up to 2x slower).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return [load_file(f, options) for f in files]
    finally:
        if was_enabled:
            gc.enable()


def _load_chunk_light(
    files: Sequence[str], options: LoadOptions
) -> list[tuple[str, list[_Identity], list[Diagnostic], bool]]:
    """A worker's answer when only validity matters: identities, not whole manifests
    (pickling 5,000 full manifests back costs more than validating them)."""
    return [
        (o.file, [_identity(m) for m in o.manifests], o.diagnostics, o.failed)
        for o in _load_chunk(files, options)
    ]


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))  # a container's CPU limit, not the host's
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(cores, 8)


def _fork_context() -> Any:
    """The fork start method, or None where forking is unavailable or unsafe.

    Forking a process that runs threads (the daemon) can deadlock the child: only a
    single-threaded caller (a command before its event loop, a script) gets workers.
    """
    if threading.active_count() > 1:
        return None
    import multiprocessing

    try:
        return multiprocessing.get_context("fork")
    except ValueError:
        return None


def _chunks(files: Sequence[str], count: int) -> list[Sequence[str]]:
    size = -(-len(files) // count)
    return [files[i : i + size] for i in range(0, len(files), size)]


def _worker_main(writer: Any, files: Sequence[str], options: LoadOptions, light: bool) -> None:
    # The child's whole job: load its share and send it back through the pipe. Ctrl-C
    # reaches the whole process group: the parent stops its workers (LoadJob.close),
    # so a worker need not die with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    writer.send(_load_chunk_light(files, options) if light else _load_chunk(files, options))
    writer.close()


class _Forked:
    """Chunks of files loading in forked child processes, one pipe back from each.

    A worker that dies (killed, out of memory) costs time, not data: its share is loaded
    again in this process when collected.
    """

    def __init__(
        self, context: Any, chunks: Sequence[Sequence[str]], options: LoadOptions, light: bool
    ) -> None:
        # Warm the compiled validators before forking so every worker inherits them.
        for name in DRIVER_NAMES:
            validation.fast_validator(name)
        self._options = options
        self._light = light
        self._jobs: list[tuple[Sequence[str], Any, Any]] = []
        # Output still buffered at the fork would be written again by every child.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for chunk in chunks:
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker_main, args=(writer, chunk, options, light), daemon=True
            )
            process.start()
            writer.close()
            self._jobs.append((chunk, reader, process))
        self.count = len(self._jobs)

    def collect(self) -> list[FileOutcome]:
        outcomes: list[FileOutcome] = []
        for chunk, reader, process in self._jobs:
            try:
                payload = reader.recv()
            except (EOFError, OSError):
                payload = None
            reader.close()
            process.join()
            if payload is None:
                outcomes.extend(_load_chunk(chunk, self._options))
            elif self._light:
                for file, idents, diagnostics, failed in payload:
                    manifests = [_from_identity(file, i) for i in idents]
                    outcomes.append(FileOutcome(file, manifests, diagnostics, failed))
            else:
                outcomes.extend(payload)
        self._jobs = []
        return outcomes

    def close(self) -> None:
        for _, reader, process in self._jobs:
            reader.close()
            if process.is_alive():
                process.terminate()
            process.join()
        self._jobs = []


def _load_all(
    files: Sequence[str], options: LoadOptions, *, identities_only: bool = False
) -> list[FileOutcome]:
    workers = _workers()
    context = _fork_context() if len(files) >= PARALLEL_MIN_FILES and workers > 1 else None
    if context is None:
        return _load_chunk(files, options)
    chunks = _chunks(files, workers)
    forked = _Forked(context, chunks[1:], options, identities_only)
    try:
        outcomes = _load_chunk(chunks[0], options)  # this process takes a share too
        outcomes.extend(forked.collect())
    finally:
        forked.close()
    return outcomes


def cross_file_diagnostics(
    manifests: Iterable[Manifest],
    positions: dict[tuple[str, int, str], tuple[int, int]] | None = None,
) -> list[Diagnostic]:
    """Duplicate metadata.name and spec.connectionId across all loaded manifests.

    `positions` maps (file, manifest line, field) to where that field is written.
    """
    where = positions or {}
    diagnostics: list[Diagnostic] = []
    by_name: dict[str, list[Manifest]] = defaultdict(list)
    by_id: dict[int, list[Manifest]] = defaultdict(list)
    for manifest in manifests:
        by_name[manifest.name].append(manifest)
        if manifest.connection_id is not None:
            by_id[manifest.connection_id].append(manifest)
    for groups, what, code, field_name in (
        (by_name, "metadata.name", "duplicate-name", "metadata.name"),
        (by_id, "spec.connectionId", "duplicate-connection-id", "spec.connectionId"),
    ):
        for value, group in groups.items():
            if len(group) < 2:
                continue
            for manifest in group:
                others = ", ".join(
                    _field_location(m, field_name, where) for m in group if m is not manifest
                )
                src = manifest.source
                line, column = where.get((src.file, src.line, field_name), (src.line, src.column))
                diagnostics.append(
                    Diagnostic(
                        "error",
                        src.file,
                        line,
                        column,
                        f"duplicate {what} {value!r}: also defined at {others}",
                        field_name,
                        code,
                    )
                )
    return diagnostics


def _field_positions(
    files: Iterable[str], roots: Sequence[str]
) -> dict[tuple[str, int, str], tuple[int, int]]:
    """(file, document line, field) -> where metadata.name / spec.connectionId are written."""
    positions: dict[tuple[str, int, str], tuple[int, int]] = {}
    for file in files:
        text, _ = _read(file, roots)
        if text is None:
            continue
        documents, _ = parse(file, text)
        for doc in documents:
            start = doc.node.start_mark.line + 1
            for key in ("metadata.name", "spec.connectionId"):
                positions[(file, start, key)] = locate(doc.node, key.split("."))
    return positions


def _field_location(
    manifest: Manifest, field_name: str, where: dict[tuple[str, int, str], tuple[int, int]]
) -> str:
    src = manifest.source
    line, column = where.get((src.file, src.line, field_name), (src.line, src.column))
    return f"{src.file}:{line}:{column}"


def _default_secrets_dirs(roots: Sequence[Path]) -> tuple[Path, ...]:
    return default_secrets_dirs(roots[0] if roots else Path("connections.d"))


def load_manifests(
    paths: Sequence[str | Path],
    *,
    secrets_dirs: Sequence[Path] = (),
    strict: bool = False,
    check_secrets: bool = False,
    identities_only: bool = False,
) -> LoadResult:
    """Load every manifest under `paths` (directories are searched recursively; files
    are taken as given). Never raises for bad input: see LoadResult.diagnostics.

    `identities_only` (for `chanops validate`): the manifests may carry only their
    identity (name, driver, display name, connection ID, source), not credentials or
    settings; diagnostics are complete either way.
    """
    found = _discover_roots(
        paths, LoadOptions(tuple(secrets_dirs), strict=strict, check_secrets=check_secrets)
    )
    outcomes = _load_all(found.files, found.options, identities_only=identities_only)
    return found.finish(outcomes)


def start_load(paths: Sequence[str | Path], *, secrets_dirs: Sequence[Path] = ()) -> LoadJob:
    """Begin loading `paths` in worker processes; `LoadJob.result()` collects it.

    For a command that has I/O of its own to do meanwhile (`plan` lists the platform
    while its manifests parse). Call it before any thread exists (workers are forked);
    otherwise, or when the manifests are too few to pay for a fork, the job loads
    in-process when its result is asked for.
    """
    found = _discover_roots(paths, LoadOptions(tuple(secrets_dirs)))
    forked = None
    workers = _workers()
    if workers > 1 and _total_bytes(found.files) >= BACKGROUND_MIN_BYTES:
        context = _fork_context()
        if context is not None:
            forked = _Forked(context, _chunks(found.files, workers), found.options, False)
    return LoadJob(found, forked)


class LoadJob:
    """A load begun by `start_load`."""

    def __init__(self, found: _Found, forked: _Forked | None) -> None:
        self._found = found
        self._forked = forked
        self._result: LoadResult | None = None

    @property
    def workers(self) -> int:
        """How many worker processes the load was given (0: it runs in this process)."""
        return 0 if self._forked is None else self._forked.count

    def result(self) -> LoadResult:
        """The LoadResult; waits for the workers (safe to call from any one thread)."""
        if self._result is None:
            if self._forked is None:
                outcomes = _load_all(self._found.files, self._found.options)
            else:
                try:
                    outcomes = self._forked.collect()
                finally:
                    self._forked.close()
            self._result = self._found.finish(outcomes)
        return self._result

    def close(self) -> None:
        """Stop the workers of a load whose result is no longer wanted."""
        if self._forked is not None:
            self._forked.close()


def _total_bytes(files: Sequence[str]) -> int:
    total = 0
    for file in files:
        with contextlib.suppress(OSError):  # an unreadable file is reported when read
            total += os.stat(file).st_size
    return total


@dataclass(slots=True)
class _Found:
    """The discovery half of a load: which files, and problems with the roots."""

    roots: list[Path]
    options: LoadOptions
    files: list[str]
    diagnostics: list[Diagnostic]
    root_ok: bool

    def finish(self, outcomes: Iterable[FileOutcome]) -> LoadResult:
        """Per-file outcomes -> LoadResult, with the cross-file checks."""
        files, roots = self.files, self.roots
        diagnostics = list(self.diagnostics)
        failed = {d.file for d in diagnostics if d.severity == "error" and d.file in files}
        manifests: list[Manifest] = []
        for outcome in outcomes:
            diagnostics.extend(outcome.diagnostics)
            manifests.extend(outcome.manifests)
            if outcome.failed:
                failed.add(outcome.file)
        cross = cross_file_diagnostics(manifests)
        if cross:
            # Rare: parse those files again, only to point at the duplicated fields.
            cross = cross_file_diagnostics(
                manifests, _field_positions({d.file for d in cross}, self.options.roots)
            )
        if cross:
            diagnostics.extend(cross)
            # Ambiguous: neither definition wins; all their files freeze (DESIGN.md section 6).
            names = {m.name for m in manifests} & {
                n for n, c in Counter(m.name for m in manifests).items() if c > 1
            }
            ids = {i for i, c in Counter(m.connection_id for m in manifests).items() if c > 1}
            ids.discard(None)
            failed.update(d.file for d in cross)
            manifests = [m for m in manifests if m.name not in names and m.connection_id not in ids]
        # A directory in a loop or refused has no file entry; it still counts as failed.
        failed.update(d.file for d in diagnostics if d.code in DIRECTORY_FAILURES)
        return LoadResult(
            root=str(roots[0]) if len(roots) == 1 else ",".join(str(r) for r in roots),
            manifests=tuple(manifests),
            diagnostics=tuple(sorted(diagnostics, key=lambda d: (d.file, d.line, d.column))),
            files=tuple(files),
            failed_files=frozenset(failed),
            root_ok=self.root_ok,
        )


def _discover_roots(paths: Sequence[str | Path], options: LoadOptions) -> _Found:
    roots = [Path(p) for p in paths]
    if not options.secrets_dirs:
        options = replace(options, secrets_dirs=_default_secrets_dirs(roots))
    files: list[str] = []
    diagnostics: list[Diagnostic] = []
    allowed: list[str] = []
    root_ok = bool(roots)
    for root in roots:
        name = str(root)
        if root.is_dir():
            allowed.append(name)
            found, problems, readable = discover(name)
            files.extend(found)
            diagnostics.extend(problems)
            root_ok = root_ok and readable and bool(found)
            if readable and not found:
                diagnostics.append(
                    _error(name, "no manifest files (*.yaml, *.yml) found", code="empty-root")
                )
        elif root.exists() or os.path.islink(root):
            # A file named on its own is judged against the directory it is named in
            # (LoadOptions.roots), so a link there that leads elsewhere (say, from a glob
            # over a checkout) is refused like one found by discovery.
            files.append(name)
        else:
            root_ok = False
            diagnostics.append(_error(name, "path does not exist", code="missing-root"))
    options = replace(options, roots=tuple(dict.fromkeys(allowed)))
    return _Found(roots, options, files, diagnostics, root_ok)
