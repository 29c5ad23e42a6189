"""Secret references: listing them, checking them, and resolving them at apply time.

DESIGN.md section 6: whoever can commit a manifest must not be able to read the
daemon's host. So `secretRef.file` resolves only inside the allowed secret directories
(no `..`, no symlink that leads out), and `secretRef.env` never resolves chanops's own
`CHANOPS_*` variables (the platform token lives there). Messages name the connection,
the field and the reference, never a value.

Reads files and the environment only in `resolve_credentials`, `resolve_secret_values`
and `check_secret_ref`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from chanops.errors import SecretResolutionError
from chanops.manifests.drivers import DRIVER_NAMES, driver_info
from chanops.manifests.model import Manifest, SecretRef

FORBIDDEN_ENV_PREFIX = "CHANOPS_"
MAX_SECRET_BYTES = 64 * 1024  # a secret is a token or a password, not a file system


def _lookup(tree: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def iter_secret_refs(manifest: Manifest) -> Iterator[tuple[str, SecretRef | str]]:
    """(pointer relative to spec, SecretRef or literal) for each secret field the manifest sets.

    Also yields any SecretRef found outside the driver's declared secret fields, so
    nothing that will be resolved escapes checking.
    """
    seen: set[str] = set()
    if manifest.driver in DRIVER_NAMES:
        for pointer, parts in _declared_secret_fields(manifest.driver):
            value = _lookup(manifest.credentials, parts)
            if isinstance(value, SecretRef | str):
                seen.add(pointer)
                yield pointer, value
    for pointer, value in _iter_refs(manifest.credentials, "/credentials"):
        if pointer not in seen:
            yield pointer, value


@functools.cache
def _declared_secret_fields(driver: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(pointer, path inside credentials) of the driver's secret fields, sorted."""
    fields = []
    for pointer in sorted(driver_info(driver).secret_paths):
        parts = [_unescape(p) for p in pointer.split("/")[1:]]
        if parts[0] == "credentials":
            fields.append((pointer, tuple(parts[1:])))
    return tuple(fields)


def resolve_secret_values(
    manifest: Manifest,
    *,
    secrets_dirs: Sequence[Path],
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Pointer -> value of every secret credential the manifest sets (literal or resolved).

    The engine's view: what `resolve_credentials` would put at those pointers, without
    rebuilding the whole credentials tree (10,000 manifests per full reconcile).
    Raises SecretResolutionError like `resolve_credentials`.
    """
    env = os.environ if environ is None else environ
    dirs = list(secrets_dirs)
    values: dict[str, str] = {}
    for pointer, ref in iter_secret_refs(manifest):
        if isinstance(ref, str):
            values[pointer] = ref
            continue
        try:
            values[pointer] = _read_ref(ref, dirs, env)
        except ValueError as exc:
            raise SecretResolutionError(
                f"connection {manifest.name}: {_field_name(pointer)}: "
                f"secretRef {ref.describe()} {exc}"
            ) from None
    return values


def _iter_refs(tree: Any, pointer: str) -> Iterator[tuple[str, SecretRef]]:
    if isinstance(tree, SecretRef):
        yield pointer, tree
    elif isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _iter_refs(value, f"{pointer}/{key}")
    elif isinstance(tree, list | tuple):
        for index, value in enumerate(tree):
            yield from _iter_refs(value, f"{pointer}/{index}")


def _within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _locate_file(ref: str, secrets_dirs: Sequence[Path]) -> tuple[Path | None, str | None]:
    """(the file to read, None) or (None, why it may not be read). No file contents read."""
    if not ref:
        return None, "is empty"
    candidate = Path(ref)
    if ".." in candidate.parts:
        return None, "must not contain '..'"
    if not secrets_dirs:
        return None, "cannot be read: no secret directories are allowed"
    allowed = ", ".join(str(d) for d in secrets_dirs)
    if candidate.is_absolute():
        homes = [d for d in secrets_dirs if _within(candidate, Path(os.path.abspath(d)))]
        if not homes:
            return None, f"is outside the allowed secret directories ({allowed})"
        options = [(candidate, homes[0])]
    else:
        options = [(Path(d) / candidate, Path(d)) for d in secrets_dirs]
    for path, home in options:
        if not os.path.lexists(path):
            continue
        # A symlink (the file or a parent) must not lead out of the secrets directory.
        real = Path(os.path.realpath(path))
        if not _within(real, Path(os.path.realpath(home))):
            return None, f"leads outside the allowed secret directories ({allowed}) via a symlink"
        return path, None
    return None, f"does not exist in the allowed secret directories ({allowed})"


def check_secret_ref(
    ref: SecretRef,
    *,
    secrets_dirs: Sequence[Path],
    environ: Mapping[str, str] | None = None,
    must_resolve: bool = False,
) -> str | None:
    """Why `ref` may not (or, with must_resolve, does not) resolve; None when fine.

    Without `must_resolve` only the rules are checked (forbidden variables, `..`,
    outside or escaping the secret directories); a reference whose target merely is
    not there yet passes, since CI rarely has the production secrets.
    """
    if ref.env is not None:
        if ref.env.upper().startswith(FORBIDDEN_ENV_PREFIX):
            return f"may not read {FORBIDDEN_ENV_PREFIX}* variables (chanops's own settings)"
        if must_resolve:
            env = os.environ if environ is None else environ
            if ref.env not in env:
                return "is not set in the environment"
        return None
    path, problem = _locate_file(ref.file or "", secrets_dirs)
    if problem is not None:
        if problem.startswith("does not exist") and not must_resolve:
            return None
        return problem
    if must_resolve and path is not None and not os.access(path, os.R_OK):
        return "is not readable"
    return None


def _read_ref(ref: SecretRef, secrets_dirs: Sequence[Path], environ: Mapping[str, str]) -> str:
    """The value of `ref`; ValueError(reason) when it does not resolve."""
    if ref.env is not None:
        if ref.env.upper().startswith(FORBIDDEN_ENV_PREFIX):
            raise ValueError(f"may not read {FORBIDDEN_ENV_PREFIX}* variables")
        if ref.env not in environ:
            raise ValueError("is not set in the environment")
        return environ[ref.env]
    path, problem = _locate_file(ref.file or "", secrets_dirs)
    if problem is not None or path is None:
        raise ValueError(problem or "cannot be read")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot be read: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"is larger than {MAX_SECRET_BYTES} bytes")
    try:
        return data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8") from None


def _field_name(pointer: str) -> str:
    return "spec" + pointer.replace("/", ".")


def _resolve(
    tree: Any, pointer: str, manifest: Manifest, dirs: Sequence[Path], env: Mapping[str, str]
) -> Any:
    if isinstance(tree, SecretRef):
        try:
            return _read_ref(tree, dirs, env)
        except ValueError as exc:
            raise SecretResolutionError(
                f"connection {manifest.name}: {_field_name(pointer)}: "
                f"secretRef {tree.describe()} {exc}"
            ) from None
    if isinstance(tree, Mapping):
        return {k: _resolve(v, f"{pointer}/{k}", manifest, dirs, env) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_resolve(v, f"{pointer}/{i}", manifest, dirs, env) for i, v in enumerate(tree)]
    return tree


def resolve_credentials(
    manifest: Manifest,
    *,
    secrets_dirs: Sequence[Path],
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`manifest.credentials` with every SecretRef replaced by its value.

    Raises SecretResolutionError naming the connection, field and reference.
    """
    env = os.environ if environ is None else environ
    resolved: dict[str, Any] = _resolve(
        manifest.credentials, "/credentials", manifest, list(secrets_dirs), env
    )
    return resolved
