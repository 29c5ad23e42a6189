"""The system `git`, run for one source: argv, environment, timeout and output caps.

Subprocesses without a shell; every command is bounded in time (`timeout`) and in
what it may print (`max_output`), and its error is one line with any URL credentials
removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from chanops.errors import SourceError
from chanops.sources._git_credentials import HttpCredentials, redact_url, ssh_command

# Any git command's output unless the caller allows more (a SHA and a subject line).
MAX_GIT_OUTPUT = 1 << 20
STDERR_TAIL = 64 << 10

# Repository-locating variables (set inside git hooks, e.g. under pre-commit) would
# point our commands at someone else's repository.
_REPO_ENV = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)

_T = TypeVar("_T")


class _OutputTooLarge(Exception):
    pass


class GitRunner:
    """Runs git against the bare cache `repo` of the source whose URL is `url`.

    `url` is only used to recognise it in git's error text and show it redacted; the
    credentials reach git through the environment of the commands that ask for them.
    """

    def __init__(
        self,
        *,
        repo: Path,
        url: str,
        timeout: float,
        ssh_key: Path | None = None,
        known_hosts: Path,
        credentials: HttpCredentials | None = None,
    ) -> None:
        self.repo = repo
        self.url = url
        self.timeout = timeout
        self.ssh_key = ssh_key
        self.known_hosts = known_hosts
        self.credentials = credentials

    def env(self, *, credentials: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
        env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a TTY
        env["GIT_LITERAL_PATHSPECS"] = "1"  # --git-path is a path, never a glob
        env["LC_ALL"] = "C"  # stable error text
        if self.ssh_key is not None:
            env["GIT_SSH_COMMAND"] = ssh_command(self.ssh_key, self.known_hosts)
        if credentials and self.credentials is not None:
            env.update(self.credentials.env())
        return env

    def argv(
        self, *args: str, git_dir: bool = True, config: Sequence[tuple[str, str]] = ()
    ) -> list[str]:
        argv = ["git"]
        if git_dir:
            argv += ["--git-dir", str(self.repo)]
        for key, value in config:
            argv += ["-c", f"{key}={value}"]
        return argv + list(args)

    async def text(
        self,
        *args: str,
        git_dir: bool = True,
        config: Sequence[tuple[str, str]] = (),
        credentials: bool = False,
    ) -> str:
        out = await self.output(*args, git_dir=git_dir, config=config, credentials=credentials)
        return out.decode("utf-8", "replace")

    async def output(
        self,
        *args: str,
        git_dir: bool = True,
        config: Sequence[tuple[str, str]] = (),
        credentials: bool = False,
        max_output: int = MAX_GIT_OUTPUT,
    ) -> bytes:
        """Run git; its stdout, or SourceError (timeout, failure, more than `max_output`)."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args, git_dir=git_dir, config=config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(credentials=credentials),
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            out, err, _ = await asyncio.wait_for(
                asyncio.gather(
                    _read_capped(proc.stdout, max_output),
                    _read_tail(proc.stderr, STDERR_TAIL),
                    proc.wait(),
                ),
                timeout=self.timeout,
            )
        except TimeoutError:
            raise SourceError(f"git {args[0]} timed out after {self.timeout:g}s") from None
        except _OutputTooLarge:
            raise SourceError(f"git {args[0]} printed more than {max_output} bytes") from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise SourceError(f"git {args[0]} failed: {self._error_line(err, proc.returncode)}")
        return out

    def _error_line(self, stderr: bytes, returncode: int | None) -> str:
        detail = redact_url(stderr.decode("utf-8", "replace").strip()).replace(
            self.url, redact_url(self.url)
        )
        lines = detail.splitlines()
        # git prints the cause as `error: ...` (an fsck finding, say) before a generic
        # `fatal: index-pack failed`; otherwise the last line says it.
        errors = [line for line in lines if line.startswith("error: ")]
        if errors:
            return errors[0]
        return lines[-1] if lines else f"exit status {returncode}"

    async def in_thread(self, fn: Callable[[], _T], *, stop: Callable[[], None], what: str) -> _T:
        """`fn()` in a worker thread, within the timeout.

        A thread cannot be cancelled: on timeout or cancellation `stop()` makes `fn` give
        up, and we wait for it, so nothing writes into a directory we are removing.
        """
        job = asyncio.ensure_future(asyncio.to_thread(fn))
        try:
            return await asyncio.wait_for(asyncio.shield(job), timeout=self.timeout)
        except TimeoutError:
            raise SourceError(f"{what} timed out after {self.timeout:g}s") from None
        finally:
            if not job.done():
                stop()
                await asyncio.wait({job})
            if not job.cancelled():
                job.exception()  # retrieved: the error that matters was raised above


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> bytes:
    buf = bytearray()
    while chunk := await stream.read(1 << 16):
        buf += chunk
        if len(buf) > limit:
            raise _OutputTooLarge
    return bytes(buf)


async def _read_tail(stream: asyncio.StreamReader, limit: int) -> bytes:
    buf = b""
    while chunk := await stream.read(1 << 16):
        buf = (buf + chunk)[-limit:]
    return buf
