"""The release workflow's structure: triggered by a tag only, each job with the
permissions it needs and no more, and the steps a release cannot do without."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    data["on"] = data.pop(True)
    return data


def _steps(job: dict[str, Any]) -> str:
    return "\n".join(
        f"{step.get('uses', '')} {step.get('run', '')} {step.get('with', '')}"
        for step in job["steps"]
    )


def test_only_a_version_tag_triggers_it(workflow: dict[str, Any]) -> None:
    assert set(workflow["on"]) == {"push"}
    push = workflow["on"]["push"]
    assert set(push) == {"tags"}
    assert all(t.startswith("v") for t in push["tags"])


def test_permissions_are_none_by_default_and_minimal_per_job(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    assert set(jobs) == {"build", "test", "pypi", "image", "release"}
    assert jobs["build"]["permissions"] == {"contents": "read"}
    assert jobs["test"]["permissions"] == {"contents": "read"}
    # Trusted publishing: an OIDC token, nothing else (no stored PyPI token).
    assert jobs["pypi"]["permissions"] == {"id-token": "write"}
    assert jobs["image"]["permissions"] == {
        "contents": "read",
        "packages": "write",
        "id-token": "write",
        "attestations": "write",
    }
    assert jobs["release"]["permissions"] == {"contents": "write"}
    assert "secrets.PYPI" not in WORKFLOW.read_text()


def test_nothing_is_published_before_the_wheel_passed_the_tests(
    workflow: dict[str, Any],
) -> None:
    jobs = workflow["jobs"]
    assert jobs["test"]["needs"] == "build"
    assert jobs["pypi"]["needs"] == "test"
    assert jobs["image"]["needs"] == "test"
    assert set(jobs["release"]["needs"]) == {"pypi", "image"}


def test_the_steps_a_release_needs(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    build = _steps(jobs["build"])
    assert "python -m build" in build
    assert "twine check" in build
    assert jobs["build"]["steps"][0]["with"]["fetch-depth"] == 0  # the tag's version

    test = _steps(jobs["test"])
    assert "python -m venv" in test
    assert "dist/*.whl" in test
    assert "pytest" in test

    assert "pypa/gh-action-pypi-publish" in _steps(jobs["pypi"])

    (push,) = [s for s in jobs["image"]["steps"] if "build-push-action" in s.get("uses", "")]
    assert push["with"]["file"] == "deploy/docker/Dockerfile"
    assert push["with"]["push"] is True
    assert push["with"]["sbom"] is True
    assert str(push["with"]["provenance"]).startswith("mode=max")

    release = _steps(jobs["release"])
    assert "CHANGELOG.md" in release
    assert "gh release create" in release


@pytest.mark.parametrize("recipe", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_recipes_take_the_version_from_one_variable(recipe: str) -> None:
    text = (ROOT / "deploy" / "ci" / recipe).read_text()
    assert "CHANOPS_VERSION:" in text
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs
    assert all("CHANOPS_VERSION" in line for line in installs), installs


def test_the_release_step_finds_the_pinned_versions_changelog_section(
    workflow: dict[str, Any], tmp_path: Path
) -> None:
    """The release job's own script, run on CHANGELOG.md for the version the CI recipes
    pin: the section exists, is dated, and holds the notes (not the next section's)."""
    pinned = {
        yaml.safe_load((ROOT / "deploy" / "ci" / r).read_text())[
            "variables" if "gitlab" in r else "env"
        ]["CHANOPS_VERSION"]
        for r in ("github-actions.yml", "gitlab-ci.yml")
    }
    assert len(pinned) == 1, pinned
    (version,) = pinned
    (step,) = [s for s in workflow["jobs"]["release"]["steps"] if "CHANGELOG" in s.get("name", "")]
    (tmp_path / "CHANGELOG.md").write_text((ROOT / "CHANGELOG.md").read_text())
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", step["run"]],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "GITHUB_REF_NAME": f"v{version}"},
        check=True,
    )
    notes = (tmp_path / "release-notes.md").read_text()
    assert "### Added" in notes and "### Fixed" in notes
    assert "## [" not in notes  # one section, not the rest of the file
    heading = next(
        line
        for line in (ROOT / "CHANGELOG.md").read_text().splitlines()
        if line.startswith(f"## [{version}]")
    )
    assert re.fullmatch(rf"## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}", heading), heading
