"""The `revision` of the manifests: the git commit of the root, when it is in a work tree.

`git rev-parse HEAD` in the root costs a few milliseconds; the daemon refreshes it per
reconcile so every event of a reconcile carries the commit it applied.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path


class RevisionReader:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._git = shutil.which("git")

    async def read(self) -> str | None:
        if self._git is None:
            return None
        cwd = str(self._root.resolve()) if self._root.exists() else None
        if cwd is None:
            return None
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
        try:
            proc = await asyncio.create_subprocess_exec(
                self._git,
                "rev-parse",
                "--verify",
                "-q",
                "HEAD",
                cwd=cwd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=5)
        except (OSError, TimeoutError):
            return None
        if proc.returncode != 0:
            return None
        text = out.decode("ascii", "replace").strip()
        return text or None
