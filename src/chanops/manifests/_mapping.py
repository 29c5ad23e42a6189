"""One parsed document -> a validated `Manifest`, or the diagnostics that say why not.

Pure apart from the secret checks, which may look at the environment and the secrets
directories (`secrets.check_secret_ref`, never reading a value into a message). In
order: the schema (a compiled fast path, precise messages only on failure), the
schedule (`schedule`: what the daemon's scheduler would refuse), then the model and
its secret fields. Every diagnostic points at file:line:column of the field at fault.
"""

from __future__ import annotations

from typing import Any

from chanops import pointer
from chanops.manifests import validation
from chanops.manifests._yaml import Document, dotted, locate, locate_in_string, position
from chanops.manifests.drivers import DRIVER_NAMES, driver_info
from chanops.manifests.durations import parse_duration
from chanops.manifests.model import (
    Diagnostic,
    LoadOptions,
    Manifest,
    SecretRef,
    Severity,
    SourceLocation,
    SyncSpec,
    file_error,
)
from chanops.manifests.schedule import sync_problems
from chanops.manifests.secrets import check_secret_ref

__all__ = ["check_document"]


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


def _sync_spec(sync: dict[str, Any] | None) -> SyncSpec | None:
    if sync is None:
        return None
    return SyncSpec(
        interval_seconds=parse_duration(sync["interval"]) if "interval" in sync else None,
        cron=sync.get("cron"),
        jitter_seconds=parse_duration(sync["jitter"]) if "jitter" in sync else None,
        timeout_seconds=parse_duration(sync.get("timeout", "45m")),
    )


def _to_manifest(data: dict[str, Any], source: SourceLocation) -> Manifest:
    metadata = data["metadata"]
    spec = data["spec"]
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
        sync=_sync_spec(spec.get("sync")),
        deletion_policy=spec.get("deletionPolicy", "Delete"),
        suspend=spec.get("suspend", False),
        ignore_differences=tuple(spec.get("ignoreDifferences") or ()),
    )


def _literal_secret(
    path: str, doc: Document, doc_path: list[str], label: str, *, strict: bool
) -> Diagnostic:
    line, column = locate(doc.node, doc_path)
    return Diagnostic(
        "error" if strict else "warning",
        path,
        line,
        column,
        f"literal secret in {label!r}: use {{secretRef: {{env: NAME}}}} or "
        "{secretRef: {file: PATH}} so the value stays out of git",
        dotted(doc_path),
        "literal-secret",
    )


def _check_secrets(
    path: str, doc: Document, manifest: Manifest, options: LoadOptions
) -> list[Diagnostic]:
    problems: list[Diagnostic] = []
    info = driver_info(manifest.driver)
    for secret_pointer in sorted(info.secret_paths - info.oauth_paths):
        parts = pointer.parts(secret_pointer)
        value: Any = manifest.credentials
        for part in parts[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        doc_path = ["spec", *parts]
        if isinstance(value, str):
            label = info.labels.get(secret_pointer, parts[-1])
            problems.append(_literal_secret(path, doc, doc_path, label, strict=options.strict))
        elif isinstance(value, SecretRef):
            why = check_secret_ref(
                value, secrets_dirs=options.secrets_dirs, must_resolve=options.check_secrets
            )
            if why is None:
                continue
            line, column = locate(doc.node, [*doc_path, "secretRef"])
            message = f"secretRef {value.describe()} {why}"
            field = dotted(doc_path)
            problems.append(Diagnostic("error", path, line, column, message, field, "secret-ref"))
    return problems


def _schema_diagnostics(path: str, doc: Document, driver: str | None) -> list[Diagnostic]:
    """The schema's verdict on a document the fast validator refused (or has no driver)."""
    diagnostics = []
    for problem in validation.schema_problems(doc.data, driver):
        line, column = locate(doc.node, problem.path, at_key=problem.at_key)
        field = dotted(problem.path)
        diagnostics.append(
            Diagnostic("error", path, line, column, problem.message, field, "schema")
        )
    return diagnostics


def _schedule_diagnostics(
    path: str, doc: Document, sync: dict[str, Any], options: LoadOptions
) -> list[Diagnostic]:
    """What the daemon's scheduler would refuse in `spec.sync` (see `schedule`)."""
    diagnostics = []
    for problem in sync_problems(sync, min_interval=options.min_sync_interval):
        doc_path = ["spec", "sync", problem.key]
        line, column = locate_in_string(doc.node, doc_path, problem.offset)
        severity: Severity = "warning" if problem.warning and not options.strict else "error"
        field = dotted(doc_path)
        diagnostics.append(
            Diagnostic(severity, path, line, column, problem.message, field, "schedule")
        )
    return diagnostics


def _not_a_mapping(path: str, doc: Document) -> Diagnostic:
    line, column = position(doc.node)
    return file_error(
        path,
        f"document {doc.index} is {validation.type_name(doc.data)}: expected a mapping "
        "(apiVersion: chanops/v1, kind: Connection, metadata, spec)",
        code="schema",
        line=line,
        column=column,
    )


def check_document(
    path: str, doc: Document, options: LoadOptions
) -> tuple[Manifest | None, list[Diagnostic]]:
    """Validate one parsed document; the Manifest when it has no error."""
    data = doc.data
    if not isinstance(data, dict):
        return None, [_not_a_mapping(path, doc)]
    spec = data.get("spec")
    driver = spec.get("driver") if isinstance(spec, dict) else None
    key = driver if isinstance(driver, str) and driver in DRIVER_NAMES else None
    if key is None or not validation.is_valid_fast(data, key):
        diagnostics = _schema_diagnostics(path, doc, key)
        if diagnostics or key is None:
            return None, diagnostics
    line, column = position(doc.node)
    manifest = _to_manifest(data, SourceLocation(path, line, column))
    diagnostics = _check_secrets(path, doc, manifest, options)
    sync = data["spec"].get("sync")
    if sync is not None:
        diagnostics.extend(_schedule_diagnostics(path, doc, sync, options))
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    return manifest, diagnostics
