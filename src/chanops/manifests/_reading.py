"""Reading one manifest file: only a regular file inside the root, never blocking.

A manifest is read only when it is a regular file whose real path lies inside a
manifests root (`discovery.inside_roots`). A symlink out of the root is refused without
being opened, so no host file's content can surface in a diagnostic; FIFOs, sockets and
devices are refused without blocking (opened O_NONBLOCK, checked with fstat before any
read). Files over MAX_FILE_BYTES are refused by their size, never read whole. The
reasons given never contain the file's content.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from chanops.manifests.discovery import inside_roots
from chanops.manifests.model import Diagnostic, file_error

__all__ = ["MAX_FILE_BYTES", "read_manifest"]

MAX_FILE_BYTES = 1024 * 1024

# O_NOFOLLOW: a symlink is never opened blindly, only its checked real path is.
# O_NONBLOCK: opening a FIFO must not wait for a writer (it would hang the load, and the
# daemon with it); reads of a regular file ignore the flag.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


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


def _open_failed(path: str, exc: OSError) -> Diagnostic:
    if exc.errno == errno.ELOOP:
        return file_error(path, "symlink loop: the link never reaches a file", code="symlink-loop")
    if exc.errno == errno.ENOENT:
        return file_error(path, "file does not exist (broken symlink?)", code="unreadable")
    if exc.errno == errno.ENXIO:  # a socket (or a device with no driver) cannot be opened
        return file_error(path, "is a socket, not a regular file", code="not-a-file")
    return file_error(path, f"cannot read file: {exc.strerror}", code="unreadable")


def _outside(path: str) -> Diagnostic:
    return file_error(
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
        if not inside_roots(target, path, roots):
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
    if not inside_roots(real, path, roots):
        os.close(fd)
        return None, _outside(path)
    return fd, None


def _read_limited(fd: int, size: int) -> bytes:
    """Up to one byte past MAX_FILE_BYTES, so a file that grew since fstat is still caught.

    Sized by fstat (not a 1 MiB buffer per file), then read to EOF.
    """
    limit = MAX_FILE_BYTES + 1
    chunks: list[bytes] = []
    got = 0
    while got < limit:
        chunk = os.read(fd, min(limit - got, max(size + 1 - got, 65536)))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_bytes(path: str, fd: int) -> tuple[bytes | None, Diagnostic | None]:
    """The bytes of the open file `fd` if it is a regular file within the size limit."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            message = f"is {_kind(st.st_mode)}, not a regular file"
            return None, file_error(path, message, code="not-a-file")
        size = st.st_size
        data = _read_limited(fd, size) if size <= MAX_FILE_BYTES else b""
        size = max(size, len(data))
    except OSError as exc:
        return None, file_error(path, f"cannot read file: {exc.strerror}", code="unreadable")
    if size > MAX_FILE_BYTES:
        message = f"file is too large ({size} bytes; the limit is {MAX_FILE_BYTES} bytes)"
        return None, file_error(path, message, code="too-large")
    return data, None


def _decode(path: str, data: bytes) -> tuple[str | None, Diagnostic | None]:
    if b"\0" in data:
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        message = "binary file (NUL byte): manifests are UTF-8 text"
        return None, file_error(path, message, code="encoding", line=line)
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"not UTF-8 (byte 0x{data[exc.start]:02x}): manifests must be UTF-8 text"
        return None, file_error(path, message, code="encoding", line=line, column=column)


def read_manifest(path: str, roots: Sequence[str] = ()) -> tuple[str | None, Diagnostic | None]:
    """The file's text, or the reason it cannot be used (no content in the reason)."""
    fd, problem = _open(path, roots)
    if fd is None:
        return None, problem
    try:
        data, problem = _read_bytes(path, fd)
    finally:
        os.close(fd)
    if data is None:
        return None, problem
    return _decode(path, data)
