"""An edit patches the loader's last result (daemon/_assembled.py): it must equal what
`load_manifests` gives for the same root, whatever the edit does.

Each step rewrites a few existing files at random (a rename, a broken file, a second
document, a duplicate name or connectionId with another file, a fix) and compares the
refresh with a full load; the patch must also have been taken where it may be (it is
the point), and refused where only a full assembly can decide.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from chanops.daemon._loader import IncrementalLoader
from chanops.manifests import load_manifests
from daemon.helpers import manifest

FILES = 12


def text(kind: str, i: int, step: int) -> str:
    name = f"c{i:02}"
    texts = {
        "rename": lambda: manifest(name, display=f"{name} v{step}"),
        "broken": lambda: "apiVersion: chanops/v1\nkind: [\n",
        "two": lambda: manifest(name) + "---\n" + manifest(f"{name}-extra"),
        "duplicate": lambda: manifest(f"c{(i + 1) % FILES:02}"),
        "connection-id": lambda: manifest(name, extra_spec="connectionId: 4242"),
        "invalid": lambda: manifest(name).replace("driver: shopware6", "driver: nope"),
    }
    return texts.get(kind, lambda: manifest(name))()


def expected(root: Path) -> object:
    return load_manifests([root], secrets_dirs=(root.parent / "secrets",))


@pytest.mark.parametrize("seed", range(4))
def test_a_patched_result_equals_the_full_loader(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root = tmp_path / "m"
    for i in range(FILES):
        path = root / f"d{i % 3}" / f"c{i:02}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(manifest(f"c{i:02}"), encoding="utf-8")
    loader = IncrementalLoader(root, secrets_dirs=(tmp_path / "secrets",))
    assert loader.load() == expected(root)
    # Mostly edits a patch covers; a duplicate stays until a later step rewrites it.
    kinds = ["rename"] * 8 + ["plain"] * 8 + ["broken", "two", "duplicate", "connection-id"]
    kinds += ["invalid"]
    patched = 0
    for step in range(60):
        picked = rng.sample(range(FILES), rng.choice([1, 1, 1, 2, 3]))
        changed = set()
        for i in picked:
            path = root / f"d{i % 3}" / f"c{i:02}.yaml"
            path.write_text(text(rng.choice(kinds), i, step), encoding="utf-8")
            changed.add(os.path.realpath(path))
        before = loader._assembled
        got = loader.refresh(changed)
        assert got == expected(root), f"step {step}: {picked}"
        patched += before is not None and loader._assembled is before
    assert patched > 10  # the point: most edits are patches, not full assemblies


def test_a_patch_is_refused_where_only_a_full_assembly_can_decide(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    for i in range(3):
        (root / f"c{i}.yaml").write_text(manifest(f"c{i}"), encoding="utf-8")
    loader = IncrementalLoader(root, secrets_dirs=(tmp_path / "secrets",))
    loader.load()
    kept = loader._assembled
    assert kept is not None

    # A rename is a patch: the same bookkeeping object carries on.
    (root / "c0.yaml").write_text(manifest("c0", display="zero"), encoding="utf-8")
    assert loader.refresh({os.path.realpath(root / "c0.yaml")}) == expected(root)
    assert loader._assembled is kept

    # A duplicate with another file: assembled whole, and such a result is not kept.
    (root / "c1.yaml").write_text(manifest("c2"), encoding="utf-8")
    assert loader.refresh({os.path.realpath(root / "c1.yaml")}) == expected(root)
    assert loader._assembled is None

    # Fixed again: assembled whole (the last result had a duplicate), then kept.
    (root / "c1.yaml").write_text(manifest("c1"), encoding="utf-8")
    assert loader.refresh({os.path.realpath(root / "c1.yaml")}) == expected(root)
    assert loader._assembled is not None

    # A new file is not a patch either (the walk's files changed).
    (root / "c3.yaml").write_text(manifest("c3"), encoding="utf-8")
    last = loader._assembled
    assert loader.refresh({os.path.realpath(root / "c3.yaml")}) == expected(root)
    assert loader._assembled is not last
