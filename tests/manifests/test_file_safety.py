"""Which files a load reads: the name rule, symlinks against the root, non-files.

In-process checks of the rules the subprocess attacks in tests/security exercise end to
end: a manifest is read only when it is a regular file whose real path lies inside the
root; anything else is an error naming the file (never its content) and a failed file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chanops.daemon._loader import IncrementalLoader
from chanops.daemon._watcher import is_manifest_path
from chanops.manifests import LoadOptions, load_file, load_manifests
from chanops.manifests.discovery import discover, is_manifest_name

EXAMPLE = """apiVersion: chanops/v1
kind: Connection
metadata:
  name: {name}
spec:
  driver: amazon
  credentials:
    sellerId: A1SELLER
    marketplace: DE
"""
SECRET = "apiVersion: chanops/v1\nkind: HOSTSECRET\n"
OUTSIDE_FILE = (
    "symlink leads out of the manifests root; not read (manifests must lie inside the root)"
)
OUTSIDE_DIR = (
    "symlinked directory leads out of the manifests root; not followed "
    "(manifests must lie inside the root)"
)


def _manifest(path: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EXAMPLE.format(name=name))
    return path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.yaml", True),
        ("b.yml", True),
        ("shop.tmp.yaml", True),  # loaded, so its edits must wake the daemon
        ("~a.yaml", False),  # never loaded, so it must not wake it
        (".a.yaml", False),
        ("#a.yaml#", False),
        ("a.yaml~", False),
        ("a.yaml.swp", False),
        ("a.yaml.tmp", False),
        ("notes.txt", False),
        ("4913", False),
    ],
)
def test_loader_and_watcher_agree_on_names(tmp_path: Path, name: str, expected: bool) -> None:
    assert is_manifest_name(name) is expected
    assert is_manifest_path(str(tmp_path / "team" / name), str(tmp_path)) is expected
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / name).write_text(EXAMPLE.format(name="a"))
    files, _, _ = discover(str(tmp_path))
    assert (files == [str(tmp_path / "team" / name)]) is expected


def test_links_inside_the_root_are_read_links_out_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "connections.d"
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text(SECRET)
    _manifest(host / "team" / "far.yaml", "far")
    _manifest(root / "shared" / "real.yaml", "real")
    (root / "x.yaml").symlink_to(host / "secret")
    (root / "rel.yaml").symlink_to("../host/secret")  # relative, same thing
    (root / "team").symlink_to(host / "team", target_is_directory=True)
    (root / "inside.yaml").symlink_to(root / "shared" / "real.yaml")
    (root / "alias").symlink_to("shared", target_is_directory=True)

    result = load_manifests([root])
    assert [str(d) for d in result.diagnostics if d.code == "outside-root"] == [
        f"{root}/rel.yaml:1:1: error: {OUTSIDE_FILE}",
        f"{root}/team:1:1: error: {OUTSIDE_DIR}",
        f"{root}/x.yaml:1:1: error: {OUTSIDE_FILE}",
    ]
    assert "HOSTSECRET" not in repr(result)
    assert {str(root / n) for n in ("x.yaml", "rel.yaml", "team")} <= result.failed_files
    # Links inside are followed: the same document three times is a duplicate name.
    dupes = {d.file for d in result.diagnostics if d.code == "duplicate-name"}
    assert dupes == {
        str(root / "inside.yaml"),
        str(root / "shared" / "real.yaml"),
        str(root / "alias" / "real.yaml"),
    }
    # Files under the refused directory are unknown: nothing may be taken as deleted.
    assert not result.root_ok


def test_a_link_to_a_hidden_file_inside_the_root_loads(tmp_path: Path) -> None:
    root = tmp_path / "connections.d"
    _manifest(root / "team" / ".real-b.yml", "b")  # hidden: reached only through the link
    (root / "team" / "b.yaml").symlink_to(".real-b.yml")
    result = load_manifests([root])
    assert result.ok and [m.name for m in result.manifests] == ["b"]
    assert result.root_ok


def test_a_file_named_on_its_own_is_judged_against_its_directory(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(SECRET)
    root = tmp_path / "connections.d"
    root.mkdir()
    (root / "x.yaml").symlink_to(tmp_path / "secret")
    _manifest(root / "a.yaml", "a")
    (root / "a-link.yaml").symlink_to("a.yaml")
    result = load_manifests([root / "x.yaml", root / "a-link.yaml"])
    assert [str(d) for d in result.diagnostics] == [f"{root}/x.yaml:1:1: error: {OUTSIDE_FILE}"]
    assert [m.name for m in result.manifests] == ["a"]
    # load_file with no roots: the directory the file is named in.
    assert load_file(root / "x.yaml").diagnostics[0].code == "outside-root"
    assert load_file(root / "a-link.yaml").manifests[0].name == "a"


def test_each_file_is_judged_against_its_own_root(tmp_path: Path) -> None:
    """Naming a file elsewhere does not open its directory to links from the root."""
    root = tmp_path / "connections.d"
    _manifest(root / "a.yaml", "a")
    elsewhere = tmp_path / "elsewhere"
    _manifest(elsewhere / "e.yaml", "e")
    (elsewhere / "secret").write_text(SECRET)
    (root / "y.yaml").symlink_to(elsewhere / "secret")
    result = load_manifests([root, elsewhere / "e.yaml"])
    assert [str(d) for d in result.diagnostics] == [f"{root}/y.yaml:1:1: error: {OUTSIDE_FILE}"]
    assert sorted(m.name for m in result.manifests) == ["a", "e"]


def test_a_directory_swapped_for_a_link_after_discovery_is_refused(tmp_path: Path) -> None:
    """The read checks the path the kernel opened, not only what discovery saw."""
    root = tmp_path / "connections.d"
    _manifest(root / "team" / "a.yaml", "a")
    files, _, _ = discover(str(root))
    assert files == [str(root / "team" / "a.yaml")]
    (root / "team").rename(tmp_path / "team-old")
    host = tmp_path / "host"
    host.mkdir()
    (host / "a.yaml").write_text(SECRET)
    (root / "team").symlink_to(host, target_is_directory=True)
    outcome = load_file(files[0], LoadOptions(roots=(str(root),)))
    assert outcome.failed and outcome.manifests == []
    assert [d.message for d in outcome.diagnostics] == [OUTSIDE_FILE]


def test_fifo_socket_and_directory_are_not_files(tmp_path: Path) -> None:
    root = tmp_path / "connections.d"
    _manifest(root / "ok.yaml", "ok")
    os.mkfifo(root / "pipe.yaml")
    (root / "dir.yaml").mkdir()
    (root / "dir.yaml" / "README").write_text("not a manifest")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "sock.yaml"))
        (root / "pipe-link.yaml").symlink_to("pipe.yaml")
        start = time.monotonic()
        result = load_manifests([root])
        assert time.monotonic() - start < 5
    finally:
        sock.close()
    assert [str(d) for d in result.diagnostics] == [
        # A directory named like a manifest is a broken manifest (what it defined
        # freezes), not a removed one.
        f"{root}/dir.yaml:1:1: error: is a directory, not a regular file",
        f"{root}/pipe-link.yaml:1:1: error: is a FIFO, not a regular file",
        f"{root}/pipe.yaml:1:1: error: is a FIFO, not a regular file",
        f"{root}/sock.yaml:1:1: error: is a socket, not a regular file",
    ]
    assert result.failed_files == {
        str(root / n) for n in ("dir.yaml", "pipe.yaml", "pipe-link.yaml", "sock.yaml")
    }
    assert [m.name for m in result.manifests] == ["ok"]
    # Named on its own, too.
    assert [d.message for d in load_file(root / "dir.yaml").diagnostics] == [
        "is a directory, not a regular file"
    ]


def test_forked_workers_refuse_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parallel path (forked workers, 1,500 files or more) applies the same rules."""
    from chanops.manifests import _pool as pool

    monkeypatch.setattr(pool, "PARALLEL_MIN_FILES", 4)
    monkeypatch.setattr(pool, "_workers", lambda: 2)
    root = tmp_path / "connections.d"
    for i in range(6):
        _manifest(root / f"m{i}.yaml", f"m{i}")
    os.mkfifo(root / "m3-pipe.yaml")
    (tmp_path / "secret").write_text(SECRET)
    (root / "m9.yaml").symlink_to(tmp_path / "secret")
    for identities_only in (False, True):
        result = load_manifests([root], identities_only=identities_only)
        assert [(Path(d.file).name, d.code) for d in result.diagnostics] == [
            ("m3-pipe.yaml", "not-a-file"),
            ("m9.yaml", "outside-root"),
        ]
        assert len(result.manifests) == 6


UNREADABLE_SCRIPT = """
import sys
from chanops.manifests import load_manifests
result = load_manifests([sys.argv[1]])
print(result.root_ok, sorted(m.name for m in result.manifests))
"""


def test_unreadable_subdirectory_means_root_not_ok(tmp_path: Path) -> None:
    """Its files are unknown, not deleted: delete nothing (like a refused directory)."""
    root = tmp_path / "connections.d"
    _manifest(root / "a.yaml", "a")
    _manifest(root / "locked" / "b.yaml", "b")
    (root / "locked").chmod(0)
    argv = [sys.executable, "-c", UNREADABLE_SCRIPT, str(root)]
    if os.geteuid() == 0:
        # root reads every directory: drop the capabilities that let it (setpriv).
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a directory unreadable")
        caps = "-dac_override,-dac_read_search"
        argv = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    finally:
        (root / "locked").chmod(0o755)
    if done.returncode != 0 and done.stderr.startswith("setpriv"):
        pytest.skip(f"this container does not let root drop capabilities: {done.stderr}")
    assert done.stdout.split("\n")[0] == "False ['a']", done.stdout + done.stderr


def test_incremental_loader_refuses_the_same_files(tmp_path: Path) -> None:
    root = tmp_path / "connections.d"
    _manifest(root / "a.yaml", "a")
    loader = IncrementalLoader(root, secrets_dirs=(tmp_path / "secrets",))
    assert loader.load().ok
    (tmp_path / "secret").write_text(SECRET)
    (root / "x.yaml").symlink_to(tmp_path / "secret")
    os.mkfifo(root / "pipe.yaml")
    (tmp_path / "away").mkdir()
    (root / "team").symlink_to(tmp_path / "away", target_is_directory=True)
    start = time.monotonic()
    result = loader.load({str(root / "x.yaml"), str(root / "pipe.yaml")})
    assert time.monotonic() - start < 5
    assert [(Path(d.file).name, d.code) for d in result.diagnostics] == [
        ("pipe.yaml", "not-a-file"),
        ("team", "outside-root"),
        ("x.yaml", "outside-root"),
    ]
    assert result.failed_files == {str(root / n) for n in ("pipe.yaml", "team", "x.yaml")}
    assert not result.root_ok and [m.name for m in result.manifests] == ["a"]


def test_incremental_loader_follows_a_swapped_root(tmp_path: Path) -> None:
    """git-sync: the root is a symlink moved to a new checkout; links inside it still load."""
    revs = []
    for n in (1, 2):
        rev = tmp_path / f"rev{n}"
        _manifest(rev / "shared" / ".a.yaml", f"a{n}")
        (rev / "a.yaml").symlink_to("shared/.a.yaml")
        revs.append(rev)
    root = tmp_path / "connections.d"
    root.symlink_to(revs[0], target_is_directory=True)
    loader = IncrementalLoader(root, secrets_dirs=(tmp_path / "secrets",))
    assert [m.name for m in loader.load().manifests] == ["a1"]
    tmp_link = tmp_path / ".tmp-link"
    tmp_link.symlink_to(revs[1], target_is_directory=True)
    tmp_link.replace(root)
    result = loader.load()
    assert result.ok, result.diagnostics
    assert [m.name for m in result.manifests] == ["a2"]
