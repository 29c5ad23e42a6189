"""Loading the example set and the model the rest of chanops reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chanops.manifests import SecretRef, load, load_file, load_manifests
from chanops.manifests.durations import format_duration, parse_duration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "connections.d"
POS = """apiVersion: chanops/v1
kind: Connection
metadata:
  name: {name}
spec:
  driver: actindo-pos
"""


def test_example_set_is_valid_and_covers_the_drivers() -> None:
    result = load_manifests([EXAMPLES])
    assert result.ok and result.root_ok and result.diagnostics == ()
    assert {m.driver for m in result.manifests} >= {
        "shopware6",
        "sfcc",
        "amazon",
        "tradebyte",
        "magento2",
        "shopify",
    }
    shopify = next(m for m in result.manifests if m.driver == "shopify")
    assert shopify.connection_id == 2001  # adopted


def test_model_fields_from_a_manifest() -> None:
    result = load_manifests([EXAMPLES / "shopware-de.yaml"])
    (m,) = result.manifests
    assert m.name == "shopware-de" and m.display_name == "Shopware DE"
    assert m.labels == {"team": "emea", "country": "de"}
    assert m.credentials["secretAccessKey"] == SecretRef(file="shopware-de-secret-access-key")
    assert m.settings["orders"]["importStatuses"] == ["open", "in_progress"]
    assert m.automation == {"orderDownload": "5m", "returnDownload": "30m"}
    assert m.sync is not None
    assert (m.sync.interval_seconds, m.sync.jitter_seconds, m.sync.timeout_seconds) == (
        1800.0,
        120.0,
        2700.0,
    )
    assert m.deletion_policy == "Disable" and m.enabled and not m.suspend
    assert (m.source.line, m.source.column) == (2, 1)


def test_defaults_and_multi_document_positions(tmp_path: Path) -> None:
    path = tmp_path / "pos.yaml"
    path.write_text(POS.format(name="a") + "---\n" + POS.format(name="b") + "---\n")
    result = load_manifests([path])
    a, b = result.manifests
    assert (a.source.line, b.source.line) == (1, 8)
    assert a.display_name == "a" and a.sync is None and a.automation == {}
    assert a.deletion_policy == "Delete" and a.enabled and a.ignore_differences == ()


def test_sfcc_ignore_differences_and_cron() -> None:
    (m,) = load_manifests([EXAMPLES / "sfcc-eu.yaml"]).manifests
    assert m.ignore_differences == ("/settings/priceBooks",)
    assert m.sync is not None and m.sync.cron == "*/20 6-22 * * *"
    assert m.credentials["staging"]["userPassword"] == SecretRef(file="sfcc-eu-user-password")


def test_yaml_1_1_surprises_are_off(tmp_path: Path) -> None:
    # `on`/`NO` are strings (not booleans), dates stay strings for the schema to check.
    path = tmp_path / "a.yaml"
    path.write_text(
        POS.format(name="a").replace("metadata:", "metadata:\n  labels: {x: on, y: NO}")
    )
    (m,) = load_manifests([path]).manifests
    assert m.labels == {"x": "on", "y": "NO"}


def test_discovery_skips_hidden_and_editor_files(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / ".git").mkdir(parents=True)
    (root / "sub").mkdir()
    for name in (".hidden.yaml", "#a.yaml#", "a.yaml~", ".#a.yaml", "notes.txt", ".git/x.yaml"):
        (root / name).write_text("not: [valid")
    (root / "sub" / "pos.yml").write_text(POS.format(name="pos"))
    result = load_manifests([root])
    assert result.files == (str(root / "sub" / "pos.yml"),)
    assert result.ok


def test_missing_and_empty_roots_are_not_ok(tmp_path: Path) -> None:
    missing = load_manifests([tmp_path / "nope"])
    assert not missing.root_ok
    assert [d.code for d in missing.diagnostics] == ["missing-root"]
    (tmp_path / "empty").mkdir()
    empty = load_manifests([tmp_path / "empty"])
    assert not empty.root_ok and empty.manifests == ()


def test_invalid_file_is_failed_but_its_valid_documents_load(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(POS.format(name="ok") + "---\n" + POS.format(name="Bad!"))
    result = load_manifests([tmp_path])
    assert [m.name for m in result.manifests] == ["ok"]
    assert result.failed_files == {str(path)}
    assert result.root_ok


def test_load_file_for_one_changed_file() -> None:
    outcome = load_file(EXAMPLES / "amazon.yaml")
    assert [m.name for m in outcome.manifests] == ["amazon-de", "amazon-fr"]
    assert not outcome.failed and outcome.diagnostics == []


def test_parallel_path_gives_the_same_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(40):
        (root / f"p{i:02}.yaml").write_text(POS.format(name=f"p{i:02}"))
    (root / "p00-dup.yaml").write_text(POS.format(name="p00"))
    serial = load_manifests([root])
    monkeypatch.setattr(load, "PARALLEL_MIN_FILES", 2)
    parallel = load_manifests([root])
    light = load_manifests([root], identities_only=True)
    assert serial.diagnostics == parallel.diagnostics == light.diagnostics
    assert len(serial.diagnostics) == 2  # the duplicate, reported at both places
    assert serial.manifests == parallel.manifests
    assert [m.name for m in light.manifests] == [m.name for m in serial.manifests]


def test_merge_keys_and_unsupported_tags(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "apiVersion: chanops/v1\nkind: Connection\nmetadata: {name: m}\n"
        "spec:\n  <<: {driver: actindo-pos, enabled: false}\n  enabled: true\n"
    )
    (m,) = load_manifests([path]).manifests
    assert m.driver == "actindo-pos" and m.enabled is True
    bad = tmp_path / "t.yaml"
    bad.write_text("apiVersion: !!python/object:os.system chanops/v1\n")
    assert [str(d) for d in load_manifests([bad]).diagnostics] == [
        f"{bad}:1:13: error: unsupported YAML tag tag:yaml.org,2002:python/object:os.system: "
        "manifests use plain data only"
    ]


def test_durations() -> None:
    assert parse_duration("30m") == 1800.0
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("1.5h") == 5400.0
    assert parse_duration("2d") == 172800.0
    assert format_duration(1800) == "30m"
    for bad in ("", "30", "m", "-5m", "5 m", "5w"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)


def test_copy_of_examples_elsewhere_still_valid(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "connections.d")
    assert load_manifests([tmp_path / "connections.d"]).ok
