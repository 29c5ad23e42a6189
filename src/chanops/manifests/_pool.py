"""Loading many files in forked worker processes, one share of the files each.

Knows nothing of YAML or schemas: it runs a `LoadOne` (path -> FileOutcome) over
shares of the files, in children forked from the caller, and collects their outcomes
through one pipe per child. Forking (not spawning) is what makes it pay: a child
starts with the caller's imports and compiled validators, and `LoadOne` need not be
picklable. A worker that dies (killed, out of memory) costs time, not data: its share
is loaded again in this process when collected.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from chanops.manifests.model import Diagnostic, FileOutcome, Manifest, SourceLocation

__all__ = [
    "BACKGROUND_MIN_BYTES",
    "PARALLEL_MIN_FILES",
    "ForkedLoad",
    "LoadOne",
    "load_files",
    "start_forked",
]

# Above this many files, loading is split over the CPU cores (forked workers); below it
# the fork and result transfer cost more than they save.
PARALLEL_MIN_FILES = 1500
# A load started in the background (a command overlapping it with platform I/O) forks
# workers from this many bytes of manifests up: its caller is busy meanwhile, so the
# workers pay off sooner (about 0.1 s of parsing; 10,000 manifests are ~3.5 MB).
BACKGROUND_MIN_BYTES = 256 * 1024
# Forking pays from two cores up: on one, the workers would only take turns with the
# caller (and with each other) on the same core.
_MIN_CORES_TO_FORK = 2

LoadOne = Callable[[str], FileOutcome]

_Identity = tuple[str, str, str, int | None, int, int]  # name, driver, display, id, line, col
_LightOutcome = tuple[str, list[_Identity], list[Diagnostic], bool]


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


def _light(outcomes: list[FileOutcome]) -> list[_LightOutcome]:
    """A worker's answer when only validity matters: identities, not whole manifests
    (pickling 5,000 full manifests back costs more than validating them)."""
    return [
        (o.file, [_identity(m) for m in o.manifests], o.diagnostics, o.failed) for o in outcomes
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


def _total_bytes(files: Sequence[str]) -> int:
    total = 0
    for file in files:
        with contextlib.suppress(OSError):  # an unreadable file is reported when read
            total += os.stat(file).st_size
    return total


def _worker_main(writer: Any, files: Sequence[str], load_one: LoadOne, light: bool) -> None:
    # The child's whole job: load its share and send it back through the pipe. Ctrl-C
    # reaches the whole process group: the parent stops its workers (ForkedLoad.close),
    # so a worker need not die with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    outcomes = [load_one(f) for f in files]
    writer.send(_light(outcomes) if light else outcomes)
    writer.close()


class ForkedLoad:
    """Shares of the files loading in forked child processes, one pipe back from each."""

    def __init__(
        self, context: Any, chunks: Sequence[Sequence[str]], load_one: LoadOne, light: bool
    ) -> None:
        self._load_one = load_one
        self._light = light
        self._jobs: list[tuple[Sequence[str], Any, Any]] = []
        # Output still buffered at the fork would be written again by every child.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for chunk in chunks:
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker_main, args=(writer, chunk, load_one, light), daemon=True
            )
            process.start()
            writer.close()
            self._jobs.append((chunk, reader, process))
        self.count = len(self._jobs)

    def collect(self) -> list[FileOutcome]:
        """Every worker's outcomes, in the order of the shares (waits for them)."""
        outcomes: list[FileOutcome] = []
        for chunk, reader, process in self._jobs:
            try:
                payload = reader.recv()
            except (EOFError, OSError):
                payload = None
            reader.close()
            process.join()
            if payload is None:
                outcomes.extend(self._load_one(f) for f in chunk)
            elif self._light:
                for file, idents, diagnostics, failed in payload:
                    manifests = [_from_identity(file, i) for i in idents]
                    outcomes.append(FileOutcome(file, manifests, diagnostics, failed))
            else:
                outcomes.extend(payload)
        self._jobs = []
        return outcomes

    def close(self) -> None:
        """Stop the workers still running (their results are no longer wanted)."""
        for _, reader, process in self._jobs:
            reader.close()
            if process.is_alive():
                process.terminate()
            process.join()
        self._jobs = []


def load_files(
    files: Sequence[str],
    load_one: LoadOne,
    *,
    identities_only: bool = False,
    before_fork: Callable[[], None] | None = None,
    parallel: bool = False,
) -> list[FileOutcome]:
    """`load_one` over `files`, in order; over the CPU cores when the caller allows it
    (`parallel`: a command's composition root, never library code) and there are
    enough files.

    `identities_only`: manifests from workers carry only their identity (see
    `load_manifests`). `before_fork`: what the workers should inherit ready-made (the
    compiled validators), run only when workers are forked.
    """
    workers = _workers()
    enough = parallel and len(files) >= PARALLEL_MIN_FILES and workers >= _MIN_CORES_TO_FORK
    context = _fork_context() if enough else None
    if context is None:
        return [load_one(f) for f in files]
    if before_fork is not None:
        before_fork()
    chunks = _chunks(files, workers)
    forked = ForkedLoad(context, chunks[1:], load_one, identities_only)
    try:
        outcomes = [load_one(f) for f in chunks[0]]  # this process takes a share too
        outcomes.extend(forked.collect())
    finally:
        forked.close()
    return outcomes


def start_forked(
    files: Sequence[str], load_one: LoadOne, *, before_fork: Callable[[], None] | None = None
) -> ForkedLoad | None:
    """Workers loading all of `files` in the background, or None when they would not pay
    (one core, too few bytes to parse, or a caller that runs threads)."""
    workers = _workers()
    if workers < _MIN_CORES_TO_FORK or _total_bytes(files) < BACKGROUND_MIN_BYTES:
        return None
    context = _fork_context()
    if context is None:
        return None
    if before_fork is not None:
        before_fork()
    return ForkedLoad(context, _chunks(files, workers), load_one, False)
