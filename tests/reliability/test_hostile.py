"""Hostile manifests (issue 7): bad files written into the watched root of a running daemon.

One emulator and one daemon (10 good manifests, converged) serve the whole module; every
case writes its bad input, waits for the daemon to react, checks it, and cleans up.
Always: the daemon runs on, prints no traceback at the default log level, writes nothing
to the good connections and deletes nothing (the emulator counts every request), and
every bad file yields a `manifest.invalid` event naming it.

The fuzz (hypothesis) writes random text and mutated good manifests; the offline loader
decides which inputs are bad (the property under test is the daemon's reaction, not the
parser's verdict: tests/manifests covers that).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chanops.manifests import load_manifests
from daemon.helpers import DaemonProcess, manifest, wait_until, write_atomic
from reliability.helpers import (
    SECRET,
    SECRET_ENV,
    check_platform,
    converged_full,
    start_daemon,
    write_manifests,
)
from support.emulator import EmulatorProcess

CORPUS = Path(__file__).parents[1] / "manifests" / "corpus"
GOOD = 10


@dataclass
class World:
    tmp: Path
    root: Path
    names: list[str]
    emu: EmulatorProcess
    daemon: DaemonProcess
    baseline: dict[int, dict[str, Any]]  # the good connections, as converged

    def invalid_named(self, path: Path, after: int, timeout: float = 20) -> dict[str, Any]:
        real = os.path.realpath(path)
        return self.daemon.wait_event(
            lambda e: (
                e["event"] == "manifest.invalid"
                and os.path.realpath(str(e.get("file", ""))) == real
            ),
            after=after,
            timeout=timeout,
            what=f"manifest.invalid naming {path.name}",
        )

    def settle(self) -> None:
        """Wait until the daemon is idle again (its last reconcile finished)."""

        def idle() -> bool:
            events = self.daemon.events()
            started = sum(1 for e in events if e["event"] == "reconcile.started")
            ended = sum(
                1 for e in events if e["event"] in ("reconcile.completed", "reconcile.failed")
            )
            return started == ended

        wait_until(idle, timeout=60, what="the daemon idle")

    def assert_unharmed(self) -> None:
        d = self.daemon
        assert d.proc is not None and d.proc.poll() is None, d.output()[-3000:]
        out = d.output()
        assert "Traceback" not in out, out[out.index("Traceback") - 500 :][:3000]
        assert SECRET not in out
        stats = self.emu.admin.stats()
        assert stats.get("DELETE /api/v1/connections/{id}", 0) == 0, stats
        assert stats.get("POST /api/v1/connections/disable", 0) == 0, stats
        now = {c["id"]: c for c in self.emu.admin.connections()}
        for cid, before in self.baseline.items():
            assert now.get(cid) == before, f"good connection {cid} was changed"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with make_world(tmp_path_factory.mktemp("hostile")) as w:
        yield w


@contextmanager
def make_world(tmp: Path) -> Iterator[World]:
    root = tmp / "connections.d"
    names = write_manifests(root, GOOD)
    emu = EmulatorProcess(tmp / "emu", time_scale=0.002)
    emu.start()
    d = start_daemon(
        tmp,
        emu,
        root,
        resync="1h",
        # The platform token in the daemon's environment: a manifest must not read it.
        env={"CHANOPS_PLATFORM_TOKEN": emu.token},
    )
    try:
        d.wait_event(lambda e: converged_full([e]) is not None, timeout=60)
        baseline = {c["id"]: c for c in emu.admin.connections()}
        assert len(baseline) == GOOD
        yield World(tmp, root, names, emu, d, baseline)
        assert check_platform(emu, names, {}).ok
    finally:
        d.kill()
        emu.stop()


# -- the fuzz -----------------------------------------------------------------------------

GOOD_TEXT = manifest("c00003", secret_env=SECRET_ENV)


def mutate(text: str, rng: random.Random, steps: int) -> str:
    """Small, realistic corruptions: cut, insert, duplicate, indent, retype."""
    lines = text.splitlines()
    for _ in range(steps):
        op = rng.randrange(6)
        i = rng.randrange(len(lines)) if lines else 0
        if op == 0 and lines:
            del lines[i]
        elif op == 1 and lines:
            lines.insert(i, lines[rng.randrange(len(lines))])  # a duplicated key
        elif op == 2 and lines:
            lines[i] = rng.choice(["\t", "  ", "    ", ""]) + lines[i]
        elif op == 3 and lines:
            cut = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:cut] + rng.choice(
                [":", "{", "[", "&a", "*a", "!!python/object", "'", "-", "\x00"]
            )
        elif op == 4 and lines:
            key, sep, _ = lines[i].partition(":")
            lines[i] = key + sep + " " + rng.choice(["[]", "{}", "~", "12", "yes", "'x'", "- a"])
        else:
            lines.insert(i, rng.choice(["---", "...", "%YAML 1.1", "kind: Connection", "? a"]))
    return "\n".join(lines) + "\n"


def is_bad(data: bytes) -> bool:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "probe.yaml"
        path.write_bytes(data)
        result = load_manifests([Path(scratch)])
        return any(d.severity == "error" for d in result.diagnostics)


hostile_bytes = st.one_of(
    st.binary(min_size=1, max_size=400),
    st.text(min_size=1, max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(
        lambda seed, steps: mutate(GOOD_TEXT, random.Random(seed), steps).encode(),
        st.integers(0, 2**32),
        st.integers(1, 4),
    ),
)


@settings(
    max_examples=int(os.environ.get("CHANOPS_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(data=hostile_bytes, in_place=st.booleans())
def test_fuzzed_files_never_crash_leak_or_delete(world: World, data: bytes, in_place: bool) -> None:
    assume(is_bad(data))
    # In place: a managed connection's own file turns bad (its connection must freeze);
    # else a new file appears beside the good ones.
    path = world.root / "d000" / ("c00003.yaml" if in_place else "fuzz.yaml")
    original = path.read_bytes() if in_place else None
    mark = world.daemon.mark()
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    world.invalid_named(path, mark)
    world.settle()
    if original is not None:
        write_atomic(path, original.decode())
    else:
        path.unlink()
    world.settle()
    world.assert_unharmed()


# -- the fixed corpus ---------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    """Atomically (hidden temp file renamed over), so the daemon never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_billion_laughs(world: World) -> None:
    path = world.root / "bombs" / "laughs.yaml"
    mark = world.daemon.mark()
    _write(path, (CORPUS / "billion-laughs.yaml").read_bytes())
    event = world.invalid_named(path, mark)
    assert "alias" in event["error"] or "expand" in event["error"]
    shutil.rmtree(path.parent)
    world.settle()
    world.assert_unharmed()


def test_deep_nesting(world: World) -> None:
    path = world.root / "deep.yaml"
    mark = world.daemon.mark()
    _write(path, b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    world.invalid_named(path, mark)
    path.unlink()
    world.settle()
    world.assert_unharmed()


def test_fifty_megabyte_file(world: World) -> None:
    path = world.root / "huge.yaml"
    mark = world.daemon.mark()
    tmp = path.parent / f".{path.name}.tmp"
    with tmp.open("wb") as f:
        f.write(GOOD_TEXT.replace("c00003", "huge").encode())
        f.write(b"# " + b"x" * (50 * 1024 * 1024) + b"\n")
    os.replace(tmp, path)
    event = world.invalid_named(path, mark)
    assert "too large" in event["error"]
    path.unlink()
    world.settle()
    world.assert_unharmed()


def test_nul_bytes(world: World) -> None:
    path = world.root / "nul.yaml"
    mark = world.daemon.mark()
    _write(path, GOOD_TEXT.replace("c00003", "nul").encode().replace(b"kind", b"ki\x00nd\x00"))
    world.invalid_named(path, mark)
    path.unlink()
    world.settle()
    world.assert_unharmed()


def test_file_replaced_by_a_directory(tmp_path: Path) -> None:
    # Its own daemon: a failure here (a delete) must not spill into the shared world.
    with make_world(tmp_path) as world:
        path = world.root / "d000" / "c00004.yaml"
        mark = world.daemon.mark()
        path.unlink()
        path.mkdir()
        (path / "inner.txt").write_text("not a manifest")
        world.invalid_named(path, mark, timeout=8)
        world.settle()
        world.assert_unharmed()  # c00004 is frozen, not deleted


def test_symlink_to_etc_shadow_as_a_secret_file(world: World) -> None:
    secrets = world.root.parent / "secrets"  # an allowed secrets dir (beside the root)
    secrets.mkdir(exist_ok=True)
    link = secrets / "stolen"
    link.symlink_to("/etc/shadow")
    path = world.root / "shadow.yaml"
    text = manifest("shadow", secret_env=SECRET_ENV).replace(
        f"{{env: {SECRET_ENV}}}", f"{{file: {link}}}"
    )
    mark = world.daemon.mark()
    _write(path, text.encode())
    event = world.invalid_named(path, mark)
    assert "secretAccessKey" in str(event.get("field")) + event["error"]
    world.settle()
    assert not [c for c in world.emu.admin.connections() if c["name"] == "shadow"]
    path.unlink()
    link.unlink()
    world.settle()
    world.assert_unharmed()


def test_env_reference_to_the_platform_token(world: World) -> None:
    path = world.root / "token.yaml"
    text = manifest("token-thief", secret_env="CHANOPS_PLATFORM_TOKEN")
    mark = world.daemon.mark()
    _write(path, text.encode())
    event = world.invalid_named(path, mark)
    assert "CHANOPS_" in event["error"]
    world.settle()
    assert not [c for c in world.emu.admin.connections() if c["name"] == "token-thief"]
    assert world.emu.token not in world.daemon.output()
    path.unlink()
    world.settle()
    world.assert_unharmed()


def tiny_files(world: World, count: int) -> None:
    """`count` comment-only files: each is named in a manifest.invalid event, none harms."""
    base = world.root / "tiny"
    per_dir = 1000
    mark = world.daemon.mark()
    for i in range(count):
        _write(base / f"t{i // per_dir:03}" / f"f{i % per_dir:04}.yaml", b"# tiny\n")
    last = base / f"t{(count - 1) // per_dir:03}" / f"f{(count - 1) % per_dir:04}.yaml"
    world.invalid_named(last, mark, timeout=60 + count / 500)
    world.settle()
    named = {e["file"] for e in world.daemon.events()[mark:] if e["event"] == "manifest.invalid"}
    assert len(named) >= count
    shutil.rmtree(base)
    world.settle()
    world.assert_unharmed()


def test_ten_thousand_tiny_files(world: World) -> None:
    tiny_files(world, 10_000)


@pytest.mark.slow
def test_hundred_thousand_tiny_files(world: World) -> None:
    tiny_files(world, 100_000)


@pytest.mark.parametrize(
    "during_startup",
    [
        False,
        True,
    ],
)
def test_git_sync_symlink_swap_under_load(tmp_path: Path, during_startup: bool) -> None:
    """A git-sync sidecar swaps `current` between checkouts 30 times while 200 reconcile."""
    worktrees = tmp_path / "worktrees"
    revs = []
    for r in range(3):
        rev = worktrees / f"rev{r}"
        write_manifests(rev, 200)
        for i in range(r, 200, 7):  # each revision renames a different few
            name = f"c{i:05}"
            write_atomic(
                rev / "d000" / f"{name}.yaml",
                manifest(name, display=f"{name}-r{r}", secret_env=SECRET_ENV),
            )
        revs.append(rev)
    root = tmp_path / "sync" / "current"
    root.parent.mkdir()
    root.symlink_to(revs[0])
    emu = EmulatorProcess(tmp_path / "emu", time_scale=0.002, faults="latency=10ms")
    emu.start()
    d = start_daemon(tmp_path, emu, root, resync="1h")
    try:
        if not during_startup:  # else: swaps start as soon as the daemon listens
            d.wait_event(lambda e: converged_full([e]) is not None, timeout=60)
        for swap in range(1, 31):
            link = root.parent / ".current.tmp"
            link.symlink_to(revs[swap % 3])
            os.replace(link, root)
            time.sleep(0.02 * (swap % 4))  # some swaps land mid-reconcile, some back to back
        last = 30 % 3
        want = [f"c{i:05}-r{last}" if i % 7 == last else f"c{i:05}" for i in range(200)]
        wait_until(
            lambda: check_platform(emu, want, {}).ok,
            timeout=20 if during_startup else 60,
            what=f"platform equal to rev{last}",
        )
        stats = emu.admin.stats()
        assert stats.get("DELETE /api/v1/connections/{id}", 0) == 0, stats
        assert stats.get("POST /api/v1/connections", 0) == 200, stats
        out = d.output()
        assert "Traceback" not in out
        assert d.proc is not None and d.proc.poll() is None
    finally:
        d.kill()
        emu.stop()
