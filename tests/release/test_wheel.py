"""The built wheel is complete: installed outside the source tree, chanops still works.

`.ci/run` builds the sdist and wheel, installs the wheel with its dependencies in a
fresh virtual environment and points CHANOPS_TEST_WHEEL_VENV at it. Run on its own
(plain `pytest`), this module builds the wheel itself and installs it without
dependencies into a fresh venv that borrows the development venv's packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "chanops"
EXAMPLE = ROOT / "connections.d"


def _build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("chanops-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path | None]]:
    """(the venv's python, the wheel file when this module built it)."""
    given = os.environ.get("CHANOPS_TEST_WHEEL_VENV")
    if given:
        yield Path(given) / "bin" / "python", None
        return
    base = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(base / "dist")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    # Borrow the development venv's dependencies. A directory named in a .pth file gets
    # no .pth processing of its own, so the editable install's finder never loads.
    purelib = Path(sysconfig.get_paths()["purelib"])
    (site,) = (env_dir / "lib").glob("python3*/site-packages")
    (site / "chanops-test-deps.pth").write_text(f"{purelib}\n")
    yield python, wheel


def _chanops(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(python), "-m", "chanops", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_chanops_resolves_to_the_installed_wheel(
    installed: tuple[Path, Path | None], tmp_path: Path
) -> None:
    python, _ = installed
    done = subprocess.run(
        [str(python), "-c", "import chanops; print(chanops.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    location = Path(done.stdout.strip()).resolve()
    assert "site-packages" in location.parts
    assert ROOT not in location.parents


def test_validate_and_schema_run_from_the_wheel(
    installed: tuple[Path, Path | None], tmp_path: Path
) -> None:
    python, _ = installed
    shutil.copytree(EXAMPLE, tmp_path / "connections.d")
    shutil.copytree(ROOT / "secrets", tmp_path / "secrets")

    validated = _chanops(python, tmp_path, "validate", "connections.d")
    assert validated.returncode == 0, validated.stdout + validated.stderr

    schema = _chanops(python, tmp_path, "schema", "--driver", "shopware6")
    assert schema.returncode == 0, schema.stderr
    assert '"title"' in schema.stdout

    version = _chanops(python, tmp_path, "--version")
    assert version.returncode == 0
    # An installed wheel has no work tree: the version alone, no commit.
    assert version.stdout.startswith("chanops ")
    assert "commit" not in version.stdout
    # Before the first tag too: a development version, never setuptools-scm's fallback
    # marker (its fallback_version is the base it counts untagged commits from).
    assert "unknown" not in version.stdout


def test_the_wheel_declares_its_license_as_an_spdx_expression(
    installed: tuple[Path, Path | None], tmp_path: Path
) -> None:
    # `project.license` as a table is deprecated (setuptools stops building it in 2027).
    python, _ = installed
    done = subprocess.run(
        [
            str(python),
            "-c",
            "from importlib.metadata import metadata; "
            "m = metadata('chanops'); print(m['License-Expression'], m['License'])",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["Apache-2.0", "None"]


def test_the_wheel_carries_every_data_file_of_the_package(
    installed: tuple[Path, Path | None], tmp_path: Path
) -> None:
    python, wheel = installed
    if wheel is None:  # .ci/run installed it: find the files in the venv instead
        done = subprocess.run(
            [
                str(python),
                "-c",
                "import chanops, pathlib; print(pathlib.Path(chanops.__file__).parent)",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        installed_root = Path(done.stdout.strip())
        shipped = {
            p.relative_to(installed_root).as_posix()
            for p in installed_root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
    else:
        with zipfile.ZipFile(wheel) as archive:
            shipped = {
                name.removeprefix("chanops/")
                for name in archive.namelist()
                if name.startswith("chanops/")
            }
    # What git tracks is what a release is built from (untracked files never ship).
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--", "src/chanops"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    expected = {
        Path(p).relative_to("src/chanops").as_posix() for p in tracked if (ROOT / p).is_file()
    }
    assert "schemas/connection.schema.json" in expected
    missing = sorted(expected - shipped)
    assert not missing, f"files of src/chanops missing from the wheel: {missing}"
