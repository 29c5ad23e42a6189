"""The watcher on a real directory (real inotify), the backoff schedule, sync triggers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from chanops.daemon._backoff import Backoff, delay_for
from chanops.daemon._scheduler import trigger_for
from chanops.daemon._watcher import Batch, ManifestWatcher, is_manifest_path
from chanops.manifests.model import SyncSpec


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("a.yaml", True),
        ("team/b.yml", True),
        (".hidden.yaml", False),
        (".git/x.yaml", False),
        ("team/.a.yaml.swp", False),
        ("a.yaml~", False),
        ("#a.yaml#", False),
        ("a.yaml.tmp", False),
        ("notes.txt", False),
        ("4913", False),
    ],
)
def test_manifest_path_filter(rel: str, expected: bool) -> None:
    assert is_manifest_path(f"/r/{rel}", "/r") is expected


def test_backoff_doubles_to_five_minutes_and_resets() -> None:
    assert [delay_for(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert delay_for(9) == 256.0 and delay_for(10) == 300.0 and delay_for(1000) == 300.0
    b = Backoff()
    r1 = b.fail("a", now=100.0, error="boom")
    r2 = b.fail("a", now=101.0)
    assert (r1.due, r2.due, r2.failures) == (101.0, 103.0, 2)
    assert b.due(102.0) == set() and b.due(103.0) == {"a"}
    b.postpone_due({"a"})
    assert b.due(10_000.0) == set() and "a" in b
    b.reset(["a"])
    assert "a" not in b and b.next_due() is None


def test_outage_retries_are_capped_lower_than_a_connections_backoff() -> None:
    """A long outage must not leave the daemon asleep for minutes after the platform returns."""
    b = Backoff()
    delays = [b.fail("<full>", now=0.0, error="down", cap=30.0).delay for _ in range(12)]
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(delays) == 30.0 and delays[-1] == 30.0


def test_sync_triggers() -> None:
    interval = trigger_for(SyncSpec(interval_seconds=1800, jitter_seconds=120))
    assert interval is not None and interval.interval.total_seconds() == 1800
    assert interval.jitter == 120
    cron = trigger_for(SyncSpec(cron="*/20 6-22 * * *"))
    assert cron is not None and "minute='*/20'" in repr(cron)
    assert trigger_for(SyncSpec()) is None


class Collector:
    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.event = asyncio.Event()

    def __call__(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.event.set()

    async def wait(self, pred: object, limit: float = 10.0) -> None:
        async def loop() -> None:
            while not pred():  # type: ignore[operator]
                self.event.clear()
                await self.event.wait()

        await asyncio.wait_for(loop(), limit)

    def files(self) -> set[str]:
        return {f for b in self.batches for f in b.files}


async def _started(watcher: ManifestWatcher, stop: asyncio.Event) -> asyncio.Task[None]:
    task = asyncio.create_task(watcher.run(stop))
    await asyncio.sleep(0.3)  # inotify watches are set up by the watcher thread
    return task


async def test_burst_is_coalesced_and_noise_ignored(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    got = Collector()
    stop = asyncio.Event()
    task = await _started(ManifestWatcher(root, got), stop)
    try:
        (root / ".x.yaml.swp").write_text("x")
        (root / "readme.txt").write_text("x")
        (root / "a.yaml~").write_text("x")
        for i in range(200):  # a `git checkout` of many files
            (root / f"m{i:03}.yaml").write_text(f"n: {i}\n")
        await got.wait(lambda: len(got.files()) >= 200)
        assert got.files() == {str((root / f"m{i:03}.yaml").resolve()) for i in range(200)}
        assert len(got.batches) <= 5, f"{len(got.batches)} batches for one burst"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_symlink_swapped_root_is_followed(tmp_path: Path) -> None:
    """git-sync publishes a checkout by renaming a new symlink over the old one."""
    rev1, rev2 = tmp_path / "rev1", tmp_path / "rev2"
    rev1.mkdir()
    rev2.mkdir()
    (rev1 / "a.yaml").write_text("a: 1\n")
    (rev2 / "a.yaml").write_text("a: 2\n")
    link = tmp_path / "current"
    link.symlink_to(rev1)
    got = Collector()
    stop = asyncio.Event()
    watcher = ManifestWatcher(link, got)
    task = await _started(watcher, stop)
    try:
        tmp_link = tmp_path / ".current.tmp"
        tmp_link.symlink_to(rev2)
        os.replace(tmp_link, link)
        await got.wait(lambda: any(b.rescan for b in got.batches))
        await asyncio.sleep(0.3)
        assert watcher.target == str(rev2.resolve())
        # Edits now arrive from the new target, not the old one.
        (rev1 / "a.yaml").write_text("a: old\n")
        (rev2 / "a.yaml").write_text("a: 3\n")
        await got.wait(lambda: str(rev2 / "a.yaml") in got.files())
        assert str(rev1 / "a.yaml") not in got.files()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_directory_move_asks_for_a_rescan(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "team").mkdir(parents=True)
    (root / "team" / "a.yaml").write_text("a: 1\n")
    got = Collector()
    stop = asyncio.Event()
    task = await _started(ManifestWatcher(root, got), stop)
    try:
        os.rename(root / "team", root / "team2")
        await got.wait(lambda: any(b.rescan for b in got.batches))
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def test_revision_is_the_git_commit_of_the_root(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from chanops.daemon._revision import RevisionReader

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo" / "connections.d"
    root.mkdir(parents=True)
    assert asyncio.run(RevisionReader(root).read()) is None  # not a work tree
    (root / "a.yaml").write_text("a: 1\n")
    git = ["git", "-C", str(tmp_path / "repo"), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert asyncio.run(RevisionReader(root).read()) == head
