"""Attacks on the compiled-validator cache, performed for real.

`chanops validate` caches compiled validators as marshalled code objects under
$XDG_CACHE_HOME/chanops and runs them. The cache used to be created 0755 and loaded
whatever it held: another local user who could write it got code run as whoever ran
chanops (the daemon, CI). Now code is loaded only from a directory and files owned by
the effective user and not group/other-writable, and only when its HMAC-SHA256 under
the directory's private key verifies.

Each test plants a code object that creates a sentinel file when run, as "another
owner" (the tests run as root, so `os.chown(path, 65534, 65534)` makes a file nobody's)
or through a world-writable directory, then runs the real `chanops validate` and checks
that the sentinel never appears and validation still gives the right answers. A
positive control shows the same planted code does run when it is properly
authenticated, so the sentinel is a working detector.
"""

from __future__ import annotations

import hashlib
import hmac
import marshal
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine.helpers import ENV, write_manifest

CHANOPS = str(Path(sys.executable).parent / "chanops")
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def _evil(sentinel: Path) -> bytes:
    """A marshalled module that writes `sentinel` when run and then accepts anything."""
    source = (
        f"open({str(sentinel)!r}, 'w').write('pwned')\n"
        "def validate(data, custom_formats={}, name_prefix=None):\n"
        "    return data\n"
    )
    return marshal.dumps(compile(source, "<planted>", "exec"))


def _mac(key: bytes, name: str, payload: bytes) -> bytes:
    return hmac.new(key, name.encode() + b"\0" + payload, hashlib.sha256).digest()


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.xdg = tmp_path / "xdg"
        self.cache = self.xdg / "chanops"
        self.sentinel = tmp_path / "SENTINEL"
        self.good = tmp_path / "good"
        write_manifest(self.good, "shop-a")
        write_manifest(self.good, "tb", "tradebyte")
        self.bad = tmp_path / "bad"
        # Rejected by the real validator (unknown field); a planted accept-all would pass it.
        write_manifest(self.bad, "shop-b", extra="  colour: red\n")

    def validate(self, root: Path) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
        env.update(ENV)
        env["XDG_CACHE_HOME"] = str(self.xdg)
        return subprocess.run(
            [CHANOPS, "validate", str(root)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    def populate(self) -> list[str]:
        """A first run fills the cache; the entries' names (what an attacker would target)."""
        done = self.validate(self.good)
        assert done.returncode == 0, done.stdout + done.stderr
        return sorted(p.name for p in self.cache.iterdir() if p.name.startswith("validator-"))

    def key(self) -> bytes:
        return (self.cache / "cache.key").read_bytes()

    def plant(self, name: str, *, key: bytes | None, owner: int | None = None) -> None:
        payload = _evil(self.sentinel)
        mac = _mac(key, name, payload) if key is not None else os.urandom(32)
        path = self.cache / name
        path.unlink(missing_ok=True)
        path.write_bytes(mac + payload)
        path.chmod(0o600)
        if owner is not None:
            os.chown(path, owner, owner)

    def assert_safe_and_correct(self) -> str:
        """Validation gives the right answers and the planted code never ran."""
        good = self.validate(self.good)
        assert good.returncode == 0, good.stdout + good.stderr
        assert "valid: 2 manifests in 2 files" in good.stdout
        bad = self.validate(self.bad)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert 'unknown field "colour"' in bad.stdout
        assert not self.sentinel.exists(), "planted code ran"
        return good.stderr + bad.stderr


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_fresh_cache_is_private(world: World) -> None:
    names = world.populate()
    assert len(names) == 2  # one per driver used
    assert stat.S_IMODE(world.cache.stat().st_mode) == 0o700
    for path in world.cache.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert len(world.key()) == 32


def test_control_authenticated_planted_code_does_run(world: World) -> None:
    """The detector works: a private entry with a valid MAC is loaded and run."""
    names = world.populate()
    for name in names:
        world.plant(name, key=world.key())
    world.validate(world.good)
    assert world.sentinel.exists()


def test_world_writable_cache_directory_is_not_used(world: World) -> None:
    """Another user wrote into a 0777 cache, even with a MAC under the real key."""
    names = world.populate()
    world.cache.chmod(0o777)
    for name in names:
        world.plant(name, key=world.key(), owner=NOBODY)
    stderr = world.assert_safe_and_correct()
    assert f"validator cache {world.cache} is not private (mode 0777)" in stderr
    assert stderr.count("is not private") == 2  # one line per run


def test_entry_owned_by_another_user_is_refused(world: World) -> None:
    names = world.populate()
    for name in names:
        world.plant(name, key=world.key(), owner=NOBODY)
    world.assert_safe_and_correct()


def test_same_owner_entry_with_a_wrong_mac_is_refused(world: World) -> None:
    names = world.populate()
    for name in names:
        world.plant(name, key=None)  # our own file, but not MAC'd under our key
    stderr = world.assert_safe_and_correct()
    assert "not private" not in stderr  # nothing wrong with the directory itself
    # The refused entries were replaced by good ones: the next run uses the cache again.
    key = world.key()
    for name in names:
        data = (world.cache / name).read_bytes()
        assert hmac.compare_digest(data[:32], _mac(key, name, data[32:]))


def test_key_owned_by_another_user_is_refused(world: World) -> None:
    """Someone else's key (so they know it) with entries MAC'd under it."""
    names = world.populate()
    forged = b"k" * 32
    key_path = world.cache / "cache.key"
    key_path.write_bytes(forged)
    os.chown(key_path, NOBODY, NOBODY)
    for name in names:
        world.plant(name, key=forged)
    stderr = world.assert_safe_and_correct()
    assert f"its cache.key is owned by uid {NOBODY}" in stderr


def test_readable_key_is_refused(world: World) -> None:
    names = world.populate()
    (world.cache / "cache.key").chmod(0o644)
    for name in names:
        world.plant(name, key=world.key())
    stderr = world.assert_safe_and_correct()
    assert "its cache.key is mode 0644" in stderr


def test_cache_directory_owned_by_another_user_is_refused(world: World) -> None:
    """A directory someone else made (and so can fill) in our place, mode 0700."""
    names = world.populate()
    for name in names:
        world.plant(name, key=world.key(), owner=NOBODY)
    os.chown(world.cache / "cache.key", NOBODY, NOBODY)
    os.chown(world.cache, NOBODY, NOBODY)
    stderr = world.assert_safe_and_correct()
    assert f"is not private (owned by uid {NOBODY}, not 0)" in stderr


def test_cache_directory_symlinked_elsewhere_is_refused(world: World) -> None:
    """~/.cache/chanops replaced by a link to a directory the attacker fills."""
    names = world.populate()
    elsewhere = world.tmp / "attacker"
    world.cache.rename(elsewhere)
    world.cache.symlink_to(elsewhere, target_is_directory=True)
    for name in names:
        payload = _evil(world.sentinel)
        (elsewhere / name).write_bytes(_mac((elsewhere / "cache.key").read_bytes(), name, payload))
        with (elsewhere / name).open("ab") as handle:
            handle.write(payload)
    stderr = world.assert_safe_and_correct()
    assert "is not private (it is a symlink)" in stderr


def test_fifo_in_the_cache_does_not_hang(world: World) -> None:
    names = world.populate()
    for name in names:
        (world.cache / name).unlink()
        os.mkfifo(world.cache / name, 0o600)
    world.assert_safe_and_correct()
