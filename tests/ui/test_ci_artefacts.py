"""CI keeps the status page's screenshots: the browser tests write them, CI uploads them."""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "release.yml"


def test_the_test_job_uploads_the_screenshots() -> None:
    job = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]["test"]
    (run,) = [s for s in job["steps"] if "pytest" in s.get("run", "")]
    artefacts = run["env"]["CHANOPS_TEST_ARTIFACTS"]
    (upload,) = [s for s in job["steps"] if "upload-artifact" in s.get("uses", "")]
    assert upload["if"] == "always()"  # a failing run is when they matter most
    assert upload["with"]["path"].rstrip("/") == f"{artefacts}/ui"
