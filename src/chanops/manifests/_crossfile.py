"""Checks across files: `metadata.name` and `spec.connectionId` must be unique.

A duplicate is ambiguous: neither definition wins, every manifest involved is dropped
and all their files fail, so what they defined freezes (docs/engine.md, "Safety rules").
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from chanops.manifests._reading import read_manifest
from chanops.manifests._yaml import locate, parse
from chanops.manifests.model import Diagnostic, Manifest

__all__ = ["Positions", "cross_file_diagnostics", "field_positions", "without_duplicates"]

# (file, line of the manifest's document, field) -> (line, column) where it is written
Positions = dict[tuple[str, int, str], tuple[int, int]]

_CHECKS = (
    ("metadata.name", "duplicate-name"),
    ("spec.connectionId", "duplicate-connection-id"),
)


def _where(manifest: Manifest, field_name: str, positions: Positions) -> tuple[int, int]:
    src = manifest.source
    return positions.get((src.file, src.line, field_name), (src.line, src.column))


def _location(manifest: Manifest, field_name: str, positions: Positions) -> str:
    line, column = _where(manifest, field_name, positions)
    return f"{manifest.source.file}:{line}:{column}"


def _duplicates(
    group: Sequence[Manifest], value: object, field_name: str, code: str, positions: Positions
) -> Iterable[Diagnostic]:
    for manifest in group:
        others = ", ".join(_location(m, field_name, positions) for m in group if m is not manifest)
        line, column = _where(manifest, field_name, positions)
        message = f"duplicate {field_name} {value!r}: also defined at {others}"
        yield Diagnostic("error", manifest.source.file, line, column, message, field_name, code)


def cross_file_diagnostics(
    manifests: Iterable[Manifest], positions: Positions | None = None
) -> list[Diagnostic]:
    """Duplicate metadata.name and spec.connectionId across all loaded manifests.

    `positions` maps (file, manifest line, field) to where that field is written;
    without it, each duplicate is reported where its manifest starts.
    """
    where = positions or {}
    by_name: dict[object, list[Manifest]] = defaultdict(list)
    by_id: dict[object, list[Manifest]] = defaultdict(list)
    for manifest in manifests:
        by_name[manifest.name].append(manifest)
        if manifest.connection_id is not None:
            by_id[manifest.connection_id].append(manifest)
    diagnostics: list[Diagnostic] = []
    groups: dict[object, list[Manifest]]
    for groups, (field_name, code) in zip((by_name, by_id), _CHECKS, strict=True):
        for value, group in groups.items():
            if len(group) > 1:
                diagnostics.extend(_duplicates(group, value, field_name, code, where))
    return diagnostics


def field_positions(files: Iterable[str], roots: Sequence[str]) -> Positions:
    """Where metadata.name / spec.connectionId are written in `files` (read again)."""
    positions: Positions = {}
    for file in files:
        text, _ = read_manifest(file, roots)
        if text is None:
            continue
        documents, _ = parse(file, text)
        for doc in documents:
            start = doc.node.start_mark.line + 1
            for field_name, _code in _CHECKS:
                positions[(file, start, field_name)] = locate(doc.node, field_name.split("."))
    return positions


def without_duplicates(
    manifests: Sequence[Manifest], roots: Sequence[str]
) -> tuple[list[Manifest], list[Diagnostic]]:
    """(the manifests no duplicate touches, a diagnostic at each duplicated field).

    `roots`: where the files may be read again to point at the duplicated fields.
    """
    cross = cross_file_diagnostics(manifests)
    if not cross:
        return list(manifests), []
    # Rare: parse those files again, only to point at the duplicated fields.
    cross = cross_file_diagnostics(manifests, field_positions({d.file for d in cross}, roots))
    names = {n for n, c in Counter(m.name for m in manifests).items() if c > 1}
    ids = {i for i, c in Counter(m.connection_id for m in manifests).items() if c > 1}
    ids.discard(None)
    kept = [m for m in manifests if m.name not in names and m.connection_id not in ids]
    return kept, cross
