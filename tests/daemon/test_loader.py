"""The daemon's incremental loader gives exactly what `load_manifests` gives."""

from __future__ import annotations

import os
from pathlib import Path

from chanops.daemon._loader import IncrementalLoader
from chanops.manifests import load_manifests
from daemon.helpers import manifest


def both(root: Path, loader: IncrementalLoader, changed: set[str] | None = None) -> None:
    expected = load_manifests([root], secrets_dirs=(root.parent / "secrets",))
    got = loader.load(changed or set())
    assert got == expected


def test_incremental_load_matches_the_full_loader(tmp_path: Path) -> None:
    root = tmp_path / "m"
    (root / "team").mkdir(parents=True)
    loader = IncrementalLoader(root, secrets_dirs=(tmp_path / "secrets",))
    for i in range(5):
        (root / f"c{i}.yaml").write_text(manifest(f"c{i}"), encoding="utf-8")
    (root / "team" / "t.yml").write_text(manifest("t") + "---\n" + manifest("u"), "utf-8")
    (root / ".hidden.yaml").write_text("x: [", encoding="utf-8")
    both(root, loader)

    # An edit, a broken file, a removal: only the changed files are re-read.
    (root / "c0.yaml").write_text(manifest("c0", display="C zero"), encoding="utf-8")
    (root / "c1.yaml").write_text("apiVersion: chanops/v1\nkind: [\n", encoding="utf-8")
    (root / "c2.yaml").unlink()
    both(root, loader, {os.path.realpath(root / "c0.yaml")})
    result = loader.load()
    assert str(root / "c1.yaml") in result.failed_files
    assert {m.name for m in result.manifests} == {"c0", "c3", "c4", "t", "u"}

    # A duplicate name across files freezes both (the full loader's rule).
    (root / "c4.yaml").write_text(manifest("c3"), encoding="utf-8")
    both(root, loader)
    assert "c3" not in {m.name for m in loader.load().manifests}


def test_missing_and_empty_roots_are_not_ok(tmp_path: Path) -> None:
    root = tmp_path / "m"
    loader = IncrementalLoader(root, secrets_dirs=(tmp_path / "secrets",))
    both(root, loader)
    assert not loader.load().root_ok
    root.mkdir()
    both(root, loader)
    assert not loader.load().root_ok


def test_a_refresh_reads_only_the_changed_files_and_matches_the_full_loader(
    tmp_path: Path,
) -> None:
    """`refresh` (an edit: no walk) gives what `load_manifests` gives, and the index it
    updates in place equals one that takes every load whole."""
    from chanops.daemon._index import FileIndex

    root = tmp_path / "m"
    (root / "team").mkdir(parents=True)
    for i in range(4):
        (root / f"c{i}.yaml").write_text(manifest(f"c{i}"), encoding="utf-8")
    (root / "team" / "t.yml").write_text(manifest("t") + "---\n" + manifest("u"), "utf-8")
    loader = IncrementalLoader(root, secrets_dirs=(tmp_path / "secrets",))
    previous = loader.load()
    index, reference = FileIndex(str(root)), FileIndex(str(root))
    index.note_load(previous)
    reference.note_load(previous)

    def refresh(*paths: Path) -> None:
        nonlocal previous
        real = {os.path.realpath(p) for p in paths}
        got = loader.refresh(real)
        assert got == load_manifests([root], secrets_dirs=(root.parent / "secrets",))
        assert loader.refreshed is not None  # no walk
        index.note_refresh(got, loader.refreshed, previous)
        reference.note_load(got)  # the whole pass, with the same history
        assert dict(index.manifests()) == dict(reference.manifests())
        assert index.frozen_names == reference.frozen_names
        for file in got.files:
            assert index.defined_by(file) == reference.defined_by(file)
        previous = got

    (root / "c0.yaml").write_text(manifest("c0", display="C zero"), encoding="utf-8")
    refresh(root / "c0.yaml")  # an edit
    (root / "c9.yaml").write_text(manifest("c9"), encoding="utf-8")
    refresh(root / "c9.yaml")  # a new file
    (root / "c1.yaml").unlink()
    refresh(root / "c1.yaml")  # a removal
    (root / "team" / "t.yml").write_text(manifest("t") + "---\n" + manifest("v"), "utf-8")
    refresh(root / "team" / "t.yml")  # a rename inside a file
    (root / "c2.yaml").write_text("apiVersion: chanops/v1\nkind: [\n", encoding="utf-8")
    refresh(root / "c2.yaml")  # broken: frozen, keeps the names it defined
    assert index.defined_by(str(root / "c2.yaml")) == {"c2"}
    assert index.frozen_names == {"c2"}
    (root / "c3.yaml").write_text(manifest("c0"), encoding="utf-8")
    refresh(root / "c3.yaml")  # a duplicate name: both files freeze
    assert "c0" not in index.manifests()


def test_the_index_remembers_a_frozen_or_deleted_connection_as_it_last_loaded(
    tmp_path: Path,
) -> None:
    """What a notice about a connection whose file broke or went away names: its file
    and the labels it had when the file last loaded (issue 16)."""
    from chanops.daemon._index import FileIndex
    from chanops.state.store import Record

    root = tmp_path / "m"
    root.mkdir()
    for name in ("a", "b", "c"):
        text = manifest(name).replace("metadata:\n", f"metadata:\n  labels: {{team: {name}}}\n")
        (root / f"{name}.yaml").write_text(text, encoding="utf-8")
    loader = IncrementalLoader(root, secrets_dirs=(tmp_path / "secrets",))
    previous = loader.load()
    index = FileIndex(str(root))
    index.note_load(previous)
    index.note_records({"c": Record(name="c", driver="shopware6", source_file="c.yaml")})
    (root / "a.yaml").write_text("apiVersion: chanops/v1\nkind: [\n", encoding="utf-8")
    (root / "c.yaml").unlink()
    changed = {os.path.realpath(root / "a.yaml"), os.path.realpath(root / "c.yaml")}
    got = loader.refresh(changed)
    assert loader.refreshed is not None
    index.note_refresh(got, loader.refreshed, previous)
    for idx in (index, FileIndex(str(root))):
        if idx is not index:  # a whole pass with the same history gives the same answers
            idx.note_load(previous)
            idx.note_records({"c": Record(name="c", driver="shopware6", source_file="c.yaml")})
            idx.note_load(got)
        assert idx.manifest("a") is None and idx.manifest("c") is None
        frozen, deleted = idx.last_known("a"), idx.last_known("c")
        assert frozen is not None and idx.key(frozen.source.file) == "a.yaml"
        assert dict(frozen.labels) == {"team": "a"}
        assert deleted is not None and dict(deleted.labels) == {"team": "c"}
        assert idx.record_file("c") == "c.yaml"
        idx.note_records({"c": None})  # deleted from the platform: forgotten
        assert idx.last_known("c") is None and idx.record_file("c") is None


def test_a_refresh_follows_a_symlinked_directory(tmp_path: Path) -> None:
    """The watcher reports real paths: a file reached through a linked directory inside
    the root is re-read under the path the walk found it at."""
    root = tmp_path / "m"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.yaml").write_text(manifest("a"), encoding="utf-8")
    (root / "alias").symlink_to(root / "real")
    loader = IncrementalLoader(root, secrets_dirs=(tmp_path / "secrets",))
    loader.load()
    (root / "real" / "a.yaml").write_text(manifest("a", display="A two"), encoding="utf-8")
    got = loader.refresh({os.path.realpath(root / "real" / "a.yaml")})
    assert got == load_manifests([root], secrets_dirs=(root.parent / "secrets",))
    assert {m.source.file for m in got.manifests if m.display_name == "A two"} == {
        str(root / "real" / "a.yaml"),
        str(root / "alias" / "a.yaml"),
    } or got.failed_files  # a duplicate name across the two paths: both freeze
