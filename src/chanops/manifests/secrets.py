"""Secret references: listing them, checking them, and resolving them at apply time.

docs/security.md: whoever can commit a manifest must not be able to read the
daemon's host. So `secretRef.file` resolves only inside the allowed secret directories
(no `..`, no symlink that leads out, regular files only), and `secretRef.env` never
resolves chanops's own `CHANOPS_*` variables (the platform token lives there). Messages
name the connection, the field and the reference, never a value.

The operator's own credentials (platform token, webhook secret, git ssh key, the state
store's HMAC key...) must never be reachable that way: `guard_operator_credentials`
refuses to start when one lies inside (or is linked into) a secrets directory, and
remembers them so a link made later is refused when read.

A resolved value shorter than MIN_SECRET_CHARS is refused: no real credential is that
short, and the log redactor would otherwise hide every occurrence of, say, `1` in every
event (hiding audit events and, by the holes it leaves, revealing the value).

Reads files and the environment only in `resolve_credentials`, `resolve_secret_values`,
`check_secret_ref` and `guard_operator_credentials`.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chanops.errors import ConfigError, SecretResolutionError
from chanops.manifests.drivers import DRIVER_NAMES, driver_info
from chanops.manifests.model import Manifest, SecretRef
from chanops.pointer import escape
from chanops.pointer import parts as pointer_parts

__all__ = [
    "FORBIDDEN_ENV_PREFIX",
    "MAX_SECRET_BYTES",
    "MIN_SECRET_CHARS",
    "OperatorCredential",
    "check_secret_ref",
    "default_secrets_dirs",
    "guard_operator_credentials",
    "iter_secret_refs",
    "resolve_credentials",
    "resolve_secret_values",
]

FORBIDDEN_ENV_PREFIX = "CHANOPS_"
MAX_SECRET_BYTES = 64 * 1024  # a secret is a token or a password, not a file system
# Shorter resolved values are refused. The log redactor matches registered values as
# substrings from this length on (observability.logging.MIN_REDACTED_CHARS, kept equal).
MIN_SECRET_CHARS = 8
# Entries looked at per secrets directory when searching it for links to an operator
# credential at startup; a larger tree is still protected when read (_protected).
_WALK_LIMIT = 10_000


def default_secrets_dirs(root: Path) -> tuple[Path, ...]:
    """The implicit secrets directory when none is configured: `secrets/` beside `root`.

    Only that one. `/run/secrets` used to be implicit too, but it is where Docker and
    Compose put every secret of a container, the platform token included: any manifest
    could then read the token with `secretRef: {file: platform-token}` and send it to a
    host of its choosing. A deployment that wants it names it with `--secrets-dir`.
    """
    return (root.resolve().parent / "secrets",)


@dataclass(frozen=True, slots=True)
class OperatorCredential:
    """A file only the operator may read through chanops, never a manifest."""

    what: str  # "the platform token file"
    path: Path
    setting: str  # where it is configured: "--token-file / CHANOPS_PLATFORM_TOKEN_FILE"


# Operator credentials of this process, filled by `guard_operator_credentials`:
# (st_dev, st_ino) -> the credential, and their real paths. Consulted on every read so
# a hard link or symlink made after startup is still refused.
_PROTECTED_IDS: dict[tuple[int, int], OperatorCredential] = {}
_PROTECTED_PATHS: dict[str, OperatorCredential] = {}


def guard_operator_credentials(
    credentials: Sequence[OperatorCredential],
    secrets_dirs: Sequence[Path],
    *,
    dirs_setting: str = "--secrets-dir",
) -> None:
    """Refuse (ConfigError) when a manifest could read an operator credential.

    Compared by real path (a symlinked directory or file is seen through) and, for the
    files that exist, by (st_dev, st_ino) against everything in the secrets directories
    (a hard link or a symlink to the credential placed there). The message names the
    credential, the directory and the setting to change, never a file's contents.
    """
    real_dirs = [(d, os.path.realpath(d)) for d in secrets_dirs]
    ids: dict[tuple[int, int], OperatorCredential] = {}
    for cred in credentials:
        real = os.path.realpath(cred.path)
        for shown, real_dir in real_dirs:
            if _within_real(real, real_dir):
                raise ConfigError(
                    f"{cred.what} {cred.path} lies inside the secrets directory {shown}, "
                    "so any manifest could read it with secretRef.file: move it out of "
                    f"that directory, or change {dirs_setting} (or {cred.setting})"
                )
        _PROTECTED_PATHS[real] = cred
        try:
            st = os.stat(cred.path)
        except OSError:
            continue  # not there yet (a state store before its first run)
        ids[(st.st_dev, st.st_ino)] = cred
    _PROTECTED_IDS.update(ids)
    if not ids:
        return
    for shown, _ in real_dirs:
        found = _find_link(shown, ids)
        if found is not None:
            entry, cred = found
            raise ConfigError(
                f"the secrets directory {shown} holds {entry}, a link to {cred.what} "
                f"{cred.path}, so any manifest could read it with secretRef.file: remove "
                f"the link, or change {dirs_setting} (or {cred.setting})"
            )


def _within_real(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _find_link(
    directory: Path, ids: Mapping[tuple[int, int], OperatorCredential]
) -> tuple[str, OperatorCredential] | None:
    """An entry under `directory` that is (or points at) one of `ids`, if any."""
    seen = 0
    for top, dirnames, filenames in os.walk(directory):
        for name in (*filenames, *dirnames):
            seen += 1
            if seen > _WALK_LIMIT:
                return None
            entry = os.path.join(top, name)
            try:
                st = os.stat(entry)  # follows a symlink: a link to the token counts
            except OSError:
                continue
            cred = ids.get((st.st_dev, st.st_ino))
            if cred is not None:
                return entry, cred
    return None


def _protected(real: str, st: os.stat_result) -> OperatorCredential | None:
    """The operator credential `real` / `st` is, if it is one."""
    cred = _PROTECTED_PATHS.get(real)
    if cred is not None:
        return cred
    cred = _PROTECTED_IDS.get((st.st_dev, st.st_ino))
    if cred is None:
        return None
    # Confirm: inode numbers are reused once a file is deleted.
    try:
        now = os.stat(cred.path)
    except OSError:
        return None
    return cred if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) else None


def _lookup(tree: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


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
        parts = pointer_parts(pointer)
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
            # Escaped like every other pointer, or the engine's diff (which escapes)
            # would not find this secret under a key holding `/` or `~`.
            yield from _iter_refs(value, f"{pointer}/{escape(str(key))}")
    elif isinstance(tree, list | tuple):
        for index, value in enumerate(tree):
            yield from _iter_refs(value, f"{pointer}/{index}")


def _within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _refused_as_written(ref: str, secrets_dirs: Sequence[Path]) -> str | None:
    """Why `ref` may not name a secret file whatever is on disk; None when it may."""
    if not ref:
        return "is empty"
    if ".." in Path(ref).parts:
        return "must not contain '..'"
    if not secrets_dirs:
        return "cannot be read: no secret directories are allowed"
    return None


def _candidates(candidate: Path, secrets_dirs: Sequence[Path]) -> list[tuple[Path, Path]]:
    """(path, the secrets directory it must stay in) for each place `candidate` may be,
    in order; none for an absolute path outside every secrets directory."""
    if candidate.is_absolute():
        homes = [d for d in secrets_dirs if _within(candidate, Path(os.path.abspath(d)))]
        return [(candidate, homes[0])] if homes else []
    return [(Path(d) / candidate, Path(d)) for d in secrets_dirs]


def _locate_file(ref: str, secrets_dirs: Sequence[Path]) -> tuple[Path | None, str | None]:
    """(the file to read, None) or (None, why it may not be read). No file contents read."""
    problem = _refused_as_written(ref, secrets_dirs)
    if problem is not None:
        return None, problem
    allowed = ", ".join(str(d) for d in secrets_dirs)
    options = _candidates(Path(ref), secrets_dirs)
    if not options:
        return None, f"is outside the allowed secret directories ({allowed})"
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
    if ref.env is not None and ref.env.upper().startswith(FORBIDDEN_ENV_PREFIX):
        return f"may not read {FORBIDDEN_ENV_PREFIX}* variables (chanops's own settings)"
    if must_resolve:
        # Resolve for real (file type, size, encoding, length): what apply would do.
        env = os.environ if environ is None else environ
        try:
            _read_ref(ref, secrets_dirs, env)
        except ValueError as exc:
            return str(exc)
        return None
    if ref.env is not None:
        return None
    _, problem = _locate_file(ref.file or "", secrets_dirs)
    if problem is not None and not problem.startswith("does not exist"):
        return problem
    return None


def _read_ref(ref: SecretRef, secrets_dirs: Sequence[Path], environ: Mapping[str, str]) -> str:
    """The value of `ref`; ValueError(reason) when it does not resolve."""
    if ref.env is not None:
        if ref.env.upper().startswith(FORBIDDEN_ENV_PREFIX):
            raise ValueError(f"may not read {FORBIDDEN_ENV_PREFIX}* variables")
        if ref.env not in environ:
            raise ValueError("is not set in the environment")
        return _long_enough(environ[ref.env])
    path, problem = _locate_file(ref.file or "", secrets_dirs)
    if problem is not None or path is None:
        raise ValueError(problem or "cannot be read")
    data = _read_file(path)
    try:
        text = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8") from None
    return _long_enough(text)


def _long_enough(value: str) -> str:
    # The length is not in the message: even that much of a secret stays untold.
    if len(value) < MIN_SECRET_CHARS:
        raise ValueError(
            f"is shorter than {MIN_SECRET_CHARS} characters: refused, since no real "
            "credential is that short and a short value would be masked everywhere in "
            "the logs (point the reference at the real secret)"
        )
    return value


def _read_file(path: Path) -> bytes:
    """At most MAX_SECRET_BYTES of a regular file; ValueError(reason) otherwise.

    Opened by its real path (already checked to lie inside a secrets directory) with
    O_NOFOLLOW, so a symlink swapped in since the check fails instead of being followed,
    and O_NONBLOCK, so a FIFO (or a device) cannot block the reconcile forever: fstat
    then requires a regular file before a single byte is read.
    """
    real = os.path.realpath(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise ValueError(f"cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("is not a regular file (a FIFO, device or directory is refused)")
        cred = _protected(real, st)
        if cred is not None:
            raise ValueError(f"is {cred.what}, which only chanops itself may read")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_SECRET_BYTES:
            chunk = os.read(fd, MAX_SECRET_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ValueError(f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_SECRET_BYTES:
        raise ValueError(f"is larger than {MAX_SECRET_BYTES} bytes")
    return b"".join(chunks)


def _field_name(pointer: str) -> str:
    return ".".join(["spec", *pointer_parts(pointer)])


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
