"""Writing one commit's files under a fresh directory, never through a link.

Whoever can push to the repository is not trusted, so a commit is never unpacked by a
general-purpose extractor (tarfile's filters have had bypasses). `CheckoutWriter`
writes the files that `chanops.sources.git.plan_checkout` accepted:

- every directory is created here and reopened relative to its parent's file
  descriptor with O_NOFOLLOW, every file is created with O_EXCL|O_NOFOLLOW: nothing is
  ever written through a link, and a duplicate entry is an error, not an overwrite;
- contents come from one `git cat-file --batch`, each checked against the listed
  object id and size;
- a file unchanged since the checkout in use is hard-linked from it, but only if this
  process wrote that very file (`WrittenFile`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from chanops.errors import SourceError
from chanops.sources._git_process import STDERR_TAIL

# The modes of a regular file in a git tree, and the mode the walk creates it with.
FILE_MODES = {"100644": 0o644, "100755": 0o755}


@dataclass(frozen=True, slots=True)
class TreeFile:
    """A regular file of the listing: what the walk writes."""

    path: str  # from the repository root, '/'-separated, bytes as committed (fsdecoded)
    parts: tuple[str, ...]
    mode: str  # 100644 or 100755
    oid: str
    size: int


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """A file the walk wrote (or linked): what it was, and the file that holds it.

    An inode number alone does not identify a file: a file deleted and another created
    often get the same one. Size and modification time (ns) are part of the identity; a
    link does not change them (it changes the ctime, so that is not).
    """

    mode: str
    oid: str
    identity: tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class CheckoutTree:
    """Creates directories and files under a fresh `root`, never through a link.

    Every directory is made here (mkdir, no exist_ok) and then opened relative to its
    parent's descriptor with O_NOFOLLOW|O_DIRECTORY; a name that already exists is only
    reopened if this object created it as a directory. Files are created with
    O_EXCL|O_NOFOLLOW. So nothing in the tree is a symlink, and no path is resolved
    through anything but directories this object made.
    """

    def __init__(self, root: Path) -> None:
        self._root_fd = os.open(root, _DIR_FLAGS)
        self._created: set[tuple[str, ...]] = {()}
        # The open descriptors of the directory being filled and its parents. A listing
        # is depth-first, so the stack changes little from one file to the next.
        self._stack: list[tuple[str, int]] = []
        self.written: dict[str, WrittenFile] = {}

    def close(self) -> None:
        for _, fd in self._stack:
            os.close(fd)
        self._stack.clear()
        os.close(self._root_fd)

    def directory(self, parts: tuple[str, ...]) -> int:
        """A descriptor of root/parts, creating what is missing."""
        common = 0
        while (
            common < len(self._stack)
            and common < len(parts)
            and self._stack[common][0] == parts[common]
        ):
            common += 1
        for _, fd in self._stack[common:]:
            os.close(fd)
        del self._stack[common:]
        for depth in range(common, len(parts)):
            parent = self._stack[-1][1] if self._stack else self._root_fd
            if parts[: depth + 1] not in self._created:
                # FileExistsError here: a file of that name was written (plan_checkout
                # refuses such trees; this is the second line).
                os.mkdir(parts[depth], 0o755, dir_fd=parent)
                self._created.add(parts[: depth + 1])
            self._stack.append((parts[depth], os.open(parts[depth], _DIR_FLAGS, dir_fd=parent)))
        return self._stack[-1][1] if self._stack else self._root_fd

    def write(self, file: TreeFile, data: bytes) -> None:
        parent = self.directory(file.parts[:-1])
        fd = os.open(file.parts[-1], _NEW_FILE_FLAGS, FILE_MODES[file.mode], dir_fd=parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            st = os.fstat(fd)
        finally:
            os.close(fd)
        self.written[file.path] = WrittenFile(file.mode, file.oid, _identity(st))

    def link(self, file: TreeFile, source: Path, was: WrittenFile) -> bool:
        """Hard-link `source` (the same file in the previous checkout) if it is still `was`.

        linkat without AT_SYMLINK_FOLLOW links a symlink itself, never its target, and the
        result is kept only if it is a regular file with the recorded identity.
        """
        parent = self.directory(file.parts[:-1])
        name = file.parts[-1]
        try:
            os.link(source, name, dst_dir_fd=parent, follow_symlinks=False)
        except OSError:
            return False  # gone, another filesystem, no hard links: write it instead
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and _identity(st) == was.identity:
            self.written[file.path] = was
            return True
        os.unlink(name, dir_fd=parent)
        return False


class CheckoutWriter:
    """Writes a CheckoutPlan under `root`: links of unchanged files, the rest by content.

    Runs in a worker thread. All blob contents come from one `git cat-file --batch`
    (a feeder thread writes the requests while this one reads the answers, so neither
    pipe can fill up and stall the other). `stop()` may be called from another thread.
    """

    def __init__(self, root: Path, argv: list[str], env: Mapping[str, str], where: str) -> None:
        self._root = root
        self._argv = argv
        self._env = dict(env)
        self._where = where
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            if self._proc is not None:
                self._proc.kill()  # the reads below then end at EOF

    def run(
        self,
        prefix: tuple[str, ...],
        files: list[TreeFile],
        reusable: tuple[Path, Mapping[str, WrittenFile]] | None,
    ) -> dict[str, WrittenFile]:
        tree = CheckoutTree(self._root)
        try:
            # The --git-path directory itself, even when every entry in it was skipped.
            tree.directory(prefix)
            fresh = files
            if reusable is not None:
                previous, records = reusable
                fresh = []
                for file in files:
                    self._check_stopped()
                    was = records.get(file.path)
                    if (
                        was is None
                        or (was.mode, was.oid) != (file.mode, file.oid)
                        or not self._link(tree, file, previous / file.path, was)
                    ):
                        fresh.append(file)
            if fresh:
                self._write_blobs(tree, fresh)
            return tree.written
        finally:
            tree.close()

    def _link(self, tree: CheckoutTree, file: TreeFile, source: Path, was: WrittenFile) -> bool:
        try:
            return tree.link(file, source, was)
        except OSError as exc:
            raise self._error(file, exc) from None

    def _write_blobs(self, tree: CheckoutTree, files: list[TreeFile]) -> None:
        with tempfile.TemporaryFile() as errors:
            with self._lock:
                self._check_stopped()
                proc = self._proc = subprocess.Popen(
                    self._argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    env=self._env,
                )
            assert proc.stdin is not None and proc.stdout is not None
            requests = b"".join(f"{file.oid}\n".encode() for file in files)
            feeder = threading.Thread(target=_feed, args=(proc.stdin, requests), daemon=True)
            feeder.start()
            try:
                for file in files:
                    self._check_stopped()
                    data = _read_blob(proc.stdout, file)
                    if data is None:
                        errors.seek(0)
                        detail = errors.read(STDERR_TAIL).decode("utf-8", "replace").strip()
                        raise SourceError(
                            f"{self._where}: git cat-file did not return {file.path}"
                            f" ({file.oid}, {file.size} bytes){': ' + detail if detail else ''}"
                        )
                    try:
                        tree.write(file, data)
                    except OSError as exc:
                        raise self._error(file, exc) from None
            except BaseException:
                proc.kill()
                raise
            finally:
                # After the last answer cat-file exits by itself: the feeder closed its input.
                proc.stdout.close()
                proc.wait()
                feeder.join()

    def _check_stopped(self) -> None:
        if self._stopped.is_set():
            raise SourceError(f"{self._where}: checkout stopped")

    def _error(self, file: TreeFile, exc: OSError) -> SourceError:
        if isinstance(exc, FileExistsError | NotADirectoryError):
            return SourceError(f"{self._where}: refusing a malformed tree: {file.path!r} collides")
        return SourceError(f"{self._where}: cannot write {file.path}: {exc.strerror or exc}")


def _feed(stdin: IO[bytes], requests: bytes) -> None:
    # OSError (a broken pipe): the reader gave up and killed the process.
    with contextlib.suppress(OSError):
        stdin.write(requests)
    with contextlib.suppress(OSError):
        stdin.close()


def _read_blob(stdout: IO[bytes], file: TreeFile) -> bytes | None:
    """One answer of `git cat-file --batch`, if it is `file`'s blob of the listed size."""
    header = stdout.readline(200)
    if header != f"{file.oid} blob {file.size}\n".encode():
        return None  # "<oid> missing", another size, or the process died
    data = stdout.read(file.size + 1)
    if len(data) != file.size + 1 or data[-1:] != b"\n":
        return None
    return data[:-1]
