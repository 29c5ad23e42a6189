"""`chanops validate` and `chanops schema` as real processes: output formats, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus"


def chanops(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    full_env.update(env or {})
    return subprocess.run(
        [str(Path(sys.executable).parent / "chanops"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        check=False,
    )


def test_validate_default_root_is_connections_d() -> None:
    done = chanops("validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "valid: 8 manifests in 7 files, 0 errors, 0 warnings"


def test_validate_env_root_and_invalid_exit_1(tmp_path: Path) -> None:
    shutil.copy(CORPUS / "unknown-driver.yaml", tmp_path / "x.yaml")
    done = chanops("validate", env={"CHANOPS_MANIFESTS": str(tmp_path)})
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith(f"{tmp_path}/x.yaml:6:11: error: spec.driver:")
    assert done.stdout.splitlines()[-1] == "INVALID: 0 manifests in 1 files, 1 errors, 0 warnings"
    assert "Traceback" not in done.stderr


def test_usage_errors_exit_2() -> None:
    assert chanops("validate", "no/such/dir").returncode == 2
    assert chanops("validate", "--format", "xml").returncode == 2


def test_github_annotations() -> None:
    done = chanops("validate", "--format", "github", str(CORPUS / "unknown-key.yaml"))
    assert done.returncode == 1
    f = CORPUS / "unknown-key.yaml"
    assert done.stdout.splitlines() == [
        f"::error file={f},line=9,col=5,title=chanops validate::spec.credentials.usrname: "
        'unknown field "usrname"; did you mean "username"?',
        f"::error file={f},line=12,col=3,title=chanops validate::spec.setings: "
        'unknown field "setings"; did you mean "settings"?',
    ]


def test_json_format_and_strict() -> None:
    path = str(CORPUS / "literal-secret.yaml")
    lenient = chanops("validate", "--format", "json", path)
    assert lenient.returncode == 0
    report = json.loads(lenient.stdout)
    assert report["valid"] is True and report["warnings"] == 1
    assert report["diagnostics"][0]["path"] == "spec.credentials.secretAccessKey"
    strict = chanops("validate", "--strict", "--format", "json", path)
    assert strict.returncode == 1
    assert json.loads(strict.stdout)["errors"] == 1
    assert "s3cr3t" not in lenient.stdout + strict.stdout


def test_check_secrets_lists_missing_never_values(tmp_path: Path) -> None:
    # The examples with two references switched to env, so both kinds go missing.
    shutil.copytree(REPO / "connections.d", tmp_path / "connections.d")
    for name, old, new in [
        ("shopware-de", "{file: shopware-de-secret-access-key}", "{env: SHOPWARE_DE_SECRET}"),
        ("shopify-outlet", "{file: shopify-outlet-api-key}", "{env: SHOPIFY_OUTLET_API_KEY}"),
    ]:
        path = tmp_path / "connections.d" / f"{name}.yaml"
        path.write_text(path.read_text().replace(old, new))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for file in [
        "magento-b2b-password",
        "sfcc-eu-client-password",
        "sfcc-eu-access-token",
        "bigcommerce-us-access-token",
        "tradebyte-rest-password",
        "tradebyte-sftp-password",
    ]:
        (secrets / file).write_text(f"{file}-VALUE")
    env = {"SHOPWARE_DE_SECRET": "SW-VALUE"}
    done = chanops(
        "validate",
        "--check-secrets",
        "--secrets-dir",
        str(secrets),
        "connections.d",
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    assert errors == [
        "connections.d/sfcc-eu.yaml:17:33: error: spec.credentials.staging.userPassword: "
        f"secretRef file:sfcc-eu-user-password does not exist in the allowed secret "
        f"directories ({secrets})",
        "connections.d/shopify-outlet.yaml:15:25: error: spec.credentials.apiKey: "
        "secretRef env:SHOPIFY_OUTLET_API_KEY is not set in the environment",
    ]
    assert "VALUE" not in done.stdout + done.stderr
    # Without --check-secrets, references that merely are not there yet pass.
    passes = chanops("validate", "--secrets-dir", str(secrets), "connections.d", cwd=tmp_path)
    assert passes.returncode == 0


def test_the_examples_resolve_every_secret_from_the_demo_directory() -> None:
    """`chanops run` on a fresh checkout needs every example secret to resolve."""
    done = chanops("validate", "--check-secrets", "connections.d")
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_command() -> None:
    bundle = json.loads(chanops("schema").stdout)
    assert set(bundle["$defs"]) == {
        f"driver-{n}"
        for n in (
            "shopware6",
            "shopify",
            "sfcc",
            "amazon",
            "magento2",
            "tradebyte",
            "actindo-pos",
            "bigcommerce",
        )
    }
    amazon = json.loads(chanops("schema", "--driver", "amazon").stdout)
    assert amazon["properties"]["credentials"]["properties"]["accessToken"]["x-chanops-oauth"]
    raw = json.loads(chanops("schema", "--raw").stdout)
    assert raw == json.loads((REPO / "schemas" / "connection.schema.json").read_text())
    bad = chanops("schema", "--driver", "amazn")
    assert bad.returncode == 2 and 'did you mean "amazon"?' in bad.stderr


def test_validate_refuses_schedules_the_daemon_would_refuse(tmp_path: Path) -> None:
    head = "apiVersion: chanops/v1\nkind: Connection\nmetadata: {{name: {}}}\nspec:\n"
    head += "  driver: actindo-pos\n  sync:\n"
    (tmp_path / "cron.yaml").write_text(head.format("cron") + '    cron: "99 * * * *"\n')
    (tmp_path / "fast.yaml").write_text(head.format("fast") + "    interval: 5s\n")
    (tmp_path / "weekdays.yaml").write_text(head.format("weekdays") + "    cron: 0 6 * * 1-5\n")
    done = chanops("validate", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"{tmp_path}/cron.yaml:7:12: error: spec.sync.cron: minute 99 is out of range 0-59"
    )
    assert lines[1].startswith(
        f"{tmp_path}/fast.yaml:7:15: error: spec.sync.interval: interval 5s is shorter than "
        "the minimum of 1m"
    )
    assert lines[2].startswith(
        f"{tmp_path}/weekdays.yaml:7:19: warning: spec.sync.cron: day-of-week 1-5 means tue-sat"
    )
    assert lines[-1] == "INVALID: 1 manifests in 3 files, 2 errors, 1 warnings"
    strict = chanops("validate", "--strict", "--format", "json", str(tmp_path))
    report = json.loads(strict.stdout)
    assert strict.returncode == 1 and report["errors"] == 3 and report["manifests"] == 0
    assert {d["code"] for d in report["diagnostics"]} == {"schedule"}
