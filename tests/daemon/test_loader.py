"""The daemon's incremental loader gives exactly what `load_manifests` gives."""

from __future__ import annotations

import os
from pathlib import Path

from chanops.daemon.loader import IncrementalLoader
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
