"""Safe YAML for manifests: limits, plain data only, and positions for diagnostics.

Pure: text in, data and node trees out (no I/O). The limits (docs/security.md): a
file holds at most MAX_DOCUMENTS documents, a document expands to at most MAX_NODES
nodes through aliases (a billion-laughs file is an error, not a hang), only YAML's
plain data types are built (no objects), and YAML 1.1 surprises are switched off (`NO`
and `on` stay strings, dates stay strings). Each document keeps its node tree, so a
problem found later (schema, secrets, schedule) can be reported at file:line:column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from chanops.manifests.model import Diagnostic, file_error

__all__ = [
    "MAX_DOCUMENTS",
    "MAX_NODES",
    "Document",
    "dotted",
    "locate",
    "locate_in_string",
    "parse",
    "position",
]

MAX_DOCUMENTS = 1000
MAX_NODES = 50_000

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
# Tags of the plain scalars other than strings, built by `_Builder._scalar`.
_SCALAR_TAGS = frozenset({_NULL, _BOOL, _INT, _FLOAT})


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
        elif tag in _SCALAR_TAGS:
            return self._scalar(node)
        raise _YAMLProblem(node, f"unsupported YAML tag {tag}: manifests use plain data only")

    def _scalar(self, node: Any) -> Any:
        """A null, bool, int or float node (its tag one of _SCALAR_TAGS) -> its value."""
        tag = node.tag
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return node.value in ("true", "True", "TRUE")
        if tag == _INT:
            return self._scalars.construct_yaml_int(node)
        return self._scalars.construct_yaml_float(node)

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


@dataclass(slots=True)
class Document:
    """One non-empty document: its data, its node tree (for positions), its 1-based index."""

    data: Any
    node: Any
    index: int


def position(node: Any) -> tuple[int, int]:
    """(line, column), 1-based, where `node` starts."""
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


def _at(path: str, node: Any, message: str, *, code: str) -> Diagnostic:
    line, column = position(node)
    return file_error(path, message, code=code, line=line, column=column)


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
    return file_error(path, message, code="yaml", line=line, column=column)


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


def _alias_bomb(path: str, node: Any, index: int) -> Diagnostic | None:
    """The limits error when `node`'s aliases expand past MAX_NODES or refer to themselves."""
    size = _expanded_size(node, MAX_NODES)
    if size is not None and size <= MAX_NODES:
        return None
    why = "an alias refers to itself" if size is None else f"aliases expand past {MAX_NODES} nodes"
    return _at(path, node, f"document {index}: {why} (a YAML alias bomb?)", code="limits")


def _build(
    path: str, node: Any, index: int, may_alias: bool
) -> tuple[Document | None, list[Diagnostic]]:
    """One composed document -> its data, or why it cannot be used (None, no problem: empty)."""
    if may_alias:
        bomb = _alias_bomb(path, node, index)
        if bomb is not None:
            return None, [bomb]
    builder = _Builder()
    try:
        data = builder.build(node)
    except _YAMLProblem as exc:
        return None, [_at(path, exc.node, exc.message, code="yaml")]
    if builder.duplicates:
        return None, [
            _at(
                path,
                key_node,
                f'duplicate key "{key}" in a mapping (YAML keys must be unique)',
                code="duplicate-key",
            )
            for key_node, key in builder.duplicates
        ]
    if data is None:
        return None, []  # an empty document (e.g. a trailing ---): nothing to load
    return Document(data, node, index), []


def _nodes(loader: Any) -> Iterator[Any]:
    while loader.check_node():
        yield loader.get_node()


def parse(path: str, text: str) -> tuple[list[Document], list[Diagnostic]]:
    """Every non-empty document in `text`, with its node tree for positions."""
    documents: list[Document] = []
    problems: list[Diagnostic] = []
    may_alias = "&" in text  # no anchor, no alias: skip the expansion walk
    loader = _Loader(text)
    try:
        for index, node in enumerate(_nodes(loader), start=1):
            if index > MAX_DOCUMENTS:
                message = f"too many documents (the limit is {MAX_DOCUMENTS} per file)"
                line = node.start_mark.line + 1
                problems.append(file_error(path, message, code="limits", line=line))
                break
            document, found = _build(path, node, index, may_alias)
            problems.extend(found)
            if document is not None:
                documents.append(document)
    except yaml.YAMLError as exc:
        problems.append(_yaml_error(path, text, exc))
    except RecursionError:
        problems.append(file_error(path, "YAML nesting is too deep", code="limits"))
    finally:
        loader.dispose()
    if not documents and not problems:
        message = "empty file: expected at least one Connection manifest"
        problems.append(file_error(path, message, code="empty"))
    return documents, problems


def _find(node: Any, path: Sequence[str | int]) -> tuple[Any, Any, bool]:
    """(key node, value node, whole path found) for the deepest existing part of `path`."""
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
                return None, current, False
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(current.value):
                current = current.value[part]
            else:
                return None, current, False
        else:
            return None, current, False
    return key_node, current, True


def locate(node: Any, path: Sequence[str | int], *, at_key: bool = False) -> tuple[int, int]:
    """(line, column), 1-based, of `path` inside a node tree; the deepest existing part."""
    key_node, value_node, _ = _find(node, path)
    return position(key_node if (at_key and key_node is not None) else value_node)


def locate_in_string(node: Any, path: Sequence[str | int], offset: int) -> tuple[int, int]:
    """(line, column) of character `offset` of the string at `path`, e.g. one cron field.

    Exact for a string written on one line, plain or quoted, whose source is its value
    (no escapes, no folding); anything else is reported where the string starts.
    """
    _, value_node, found = _find(node, path)
    line, column = position(value_node)
    if not found or not isinstance(value_node, yaml.ScalarNode):
        return line, column
    quotes = 2 if value_node.style in ("'", '"') else 0
    start, end = value_node.start_mark, value_node.end_mark
    # Plain is None (PyYAML) or "" (libyaml); block scalars (| >) are not on one line.
    if value_node.style not in (None, "", "'", '"') or start.line != end.line:
        return line, column
    if end.column - start.column != len(value_node.value) + quotes:
        return line, column  # escapes or folding: source and value columns differ
    return line, column + quotes // 2 + offset


def dotted(path: Sequence[str | int]) -> str:
    """A document path as diagnostics print it: ("spec", "a", 0) -> "spec.a[0]"."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
