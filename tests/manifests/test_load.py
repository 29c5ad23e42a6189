"""Loading the example set and the model the rest of chanops reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chanops.manifests import (
    Diagnostic,
    Discovered,
    LoadOptions,
    LoadResult,
    SecretRef,
    assemble_result,
    discover,
    discover_roots,
    load_file,
    load_manifests,
    schemas,
)
from chanops.manifests import (
    _pool as pool,
)
from chanops.manifests.durations import (
    DURATION_PATTERN,
    format_duration,
    parse_duration,
    parse_flag_duration,
)
from chanops.manifests.secrets import default_secrets_dirs

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
    monkeypatch.setattr(pool, "PARALLEL_MIN_FILES", 2)
    parallel = load_manifests([root], parallel=True)
    light = load_manifests([root], identities_only=True, parallel=True)
    assert serial.diagnostics == parallel.diagnostics == light.diagnostics
    assert len(serial.diagnostics) == 2  # the duplicate, reported at both places
    assert serial.manifests == parallel.manifests
    assert [m.name for m in light.manifests] == [m.name for m in serial.manifests]


def test_library_code_never_forks_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers are forked only when the caller (a command's composition root) asks."""
    root = tmp_path / "many"
    root.mkdir()
    for i in range(5):
        (root / f"p{i}.yaml").write_text(POS.format(name=f"p{i}"))
    monkeypatch.setattr(pool, "PARALLEL_MIN_FILES", 2)

    def no_fork() -> None:
        raise AssertionError("forked without being asked")

    monkeypatch.setattr(pool, "_fork_context", no_fork)
    assert len(load_manifests([root]).manifests) == 5
    with pytest.raises(AssertionError, match="forked without being asked"):
        load_manifests([root], parallel=True)


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


def test_flag_durations_take_bare_seconds() -> None:
    assert parse_flag_duration("300") == 300.0 and parse_flag_duration(" 0.5 ") == 0.5
    assert parse_flag_duration("5m") == 300.0
    with pytest.raises(ValueError, match="invalid duration"):
        parse_flag_duration("5 minutes")


def test_the_schema_spells_durations_as_durations_py_does() -> None:
    sync = schemas.connection_schema()["properties"]["spec"]["properties"]["sync"]
    for key in ("interval", "jitter", "timeout"):
        assert sync["properties"][key]["pattern"] == DURATION_PATTERN


def test_copy_of_examples_elsewhere_still_valid(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "connections.d")
    assert load_manifests([tmp_path / "connections.d"]).ok


# A fresh interpreter for the forked-worker cases: workers are only forked by a process
# with no other thread, which a long pytest session cannot promise.
BACKGROUND = """
import json, os, sys
from chanops.manifests import _pool as pool, load
pool.BACKGROUND_MIN_BYTES = 1
mode, root = sys.argv[1], sys.argv[2]
if mode == "kill-one":
    real = pool._worker_main
    def dies_on_p07(writer, files, load_one, light):
        if any(f.endswith("p07.yaml") for f in files):
            os._exit(9)  # like the OOM killer: no answer through the pipe
        real(writer, files, load_one, light)
    pool._worker_main = dies_on_p07
job = load.start_load([root])
pids = [p.pid for _, _, p in job._forked._jobs] if job._forked else []
if mode == "close":
    job.close()
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    print(json.dumps({"workers": job.workers, "alive": alive}))
    sys.exit(0)
result = job.result()
print(json.dumps({
    "workers": job.workers,
    "manifests": [repr(m) for m in result.manifests],
    "diagnostics": [str(d) for d in result.diagnostics],
    "failed": sorted(result.failed_files),
}))
"""


def _background(mode: str, root: Path) -> dict[str, object]:
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", BACKGROUND, mode, str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer: dict[str, object] = json.loads(proc.stdout)
    return answer


def _cores() -> int:
    import os

    return min(len(os.sched_getaffinity(0)), 8)


def _many(tmp_path: Path) -> Path:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(40):
        (root / f"p{i:02}.yaml").write_text(POS.format(name=f"p{i:02}"))
    (root / "p00-dup.yaml").write_text(POS.format(name="p00"))
    (root / "p13.yaml").write_text(POS.format(name="Not A Name"))
    return root


def test_background_load_in_workers_gives_the_same_answer(tmp_path: Path) -> None:
    root = _many(tmp_path)
    serial = load_manifests([root])
    answer = _background("load", root)
    assert answer["workers"] == (_cores() if _cores() > 1 else 0)
    assert answer["manifests"] == [repr(m) for m in serial.manifests]
    assert answer["diagnostics"] == [str(d) for d in serial.diagnostics]
    assert len(serial.diagnostics) == 3  # the duplicate twice, the bad name once
    assert answer["failed"] == sorted(serial.failed_files)


def test_a_worker_that_dies_loses_nothing(tmp_path: Path) -> None:
    root = _many(tmp_path)
    serial = load_manifests([root])
    answer = _background("kill-one", root)
    assert answer["manifests"] == [repr(m) for m in serial.manifests]
    assert answer["diagnostics"] == [str(d) for d in serial.diagnostics]


def test_closing_a_background_load_stops_its_workers(tmp_path: Path) -> None:
    answer = _background("close", _many(tmp_path))
    assert answer["workers"] == (_cores() if _cores() > 1 else 0)
    assert answer["alive"] == []


def test_assemble_result_gives_what_load_manifests_gives(tmp_path: Path) -> None:
    """The daemon's incremental loader keeps per-file outcomes and calls assemble_result:
    failed files, duplicates and refused directories follow the same rules."""
    root = _many(tmp_path)
    (tmp_path / "away").mkdir()
    (root / "team").symlink_to(tmp_path / "away", target_is_directory=True)
    found = discover_roots([root])
    options = LoadOptions(default_secrets_dirs(root), roots=found.directories)
    result = assemble_result(found, [load_file(f, options) for f in found.files])
    assert result == load_manifests([root])
    assert {Path(f).name for f in result.failed_files} == {
        "p00.yaml",
        "p00-dup.yaml",
        "p13.yaml",
        "team",
    }
    assert not result.root_ok
    # From a walk kept from earlier (the daemon's refresh), without walking again.
    kept = Discovered.from_walk(str(root), *discover(str(root)))
    assert assemble_result(kept, [load_file(f, options) for f in kept.files]) == result


def test_assemble_result_of_an_empty_root(tmp_path: Path) -> None:
    result = assemble_result(Discovered.from_walk(str(tmp_path), [], [], True), [])
    assert result == load_manifests([tmp_path])
    assert [d.code for d in result.diagnostics] == ["empty-root"] and not result.root_ok


def test_assemble_result_of_a_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    result = assemble_result(discover_roots([missing]), [])
    assert result == LoadResult(
        str(missing),
        (),
        (Diagnostic("error", str(missing), 1, 1, "path does not exist", code="missing-root"),),
        (),
        frozenset(),
        False,
    )
