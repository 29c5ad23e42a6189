"""The replica recipes (docs/ha.md): the kustomize component deploy/kubernetes/ha and
deploy/compose.ha.yaml. Structure checked statically; the component is built with
kubectl when it is installed; the compose replica's own command line runs with --once
against the emulator and a real PostgreSQL store."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.helpers import chanops_launcher, manifest, write_atomic
from deploy.recipes import DEPLOY, flag_value, load_yaml_documents
from support.emulator import EmulatorProcess
from support.postgres import fresh_database

HA = DEPLOY / "kubernetes" / "ha"


def _doc(name: str) -> dict[str, Any]:
    (doc,) = load_yaml_documents(HA / name)
    return doc  # type: ignore[no-any-return]


def test_the_component_patches_the_base_into_two_replicas_on_postgresql() -> None:
    component = _doc("kustomization.yaml")
    assert component["kind"] == "Component"
    assert set(component["resources"]) == {"secret-postgres.yaml", "pdb.yaml"}
    patch = _doc("deployment.yaml")
    spec = patch["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0  # a standby stays
    pod = spec["template"]["spec"]
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    (container,) = pod["containers"]
    (env,) = container["env"]
    assert env["name"] == "CHANOPS_STATE"  # never on the command line (ps shows argv)
    assert env["valueFrom"]["secretKeyRef"] == {"name": "chanops-postgres", "key": "dsn"}
    secret = _doc("secret-postgres.yaml")
    assert secret["stringData"]["dsn"].startswith("postgresql://")
    pdb = _doc("pdb.yaml")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/component": "daemon"}


def _build() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    overlay = Path(os.environ.get("TMPDIR", "/tmp"))
    overlay = Path(subprocess.check_output(["mktemp", "-d", "-p", str(overlay)], text=True).strip())
    base = os.path.relpath(DEPLOY / "kubernetes", overlay)
    (overlay / "kustomization.yaml").write_text(
        f"resources: [{base}]\ncomponents: [{base}/ha]\n", encoding="utf-8"
    )
    try:
        res = subprocess.run(
            [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60
        )
    finally:
        shutil.rmtree(overlay)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def test_the_component_builds_over_the_base() -> None:
    built = _build()
    kinds = [d["kind"] for d in built]
    assert "PersistentVolumeClaim" not in kinds  # the state is in PostgreSQL
    assert kinds.count("PodDisruptionBudget") == 1
    assert all(
        d["metadata"].get("namespace") == "chanops" for d in built if d["kind"] != "Namespace"
    )
    (deployment,) = [d for d in built if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert "--state" not in container["args"]  # it would override CHANOPS_STATE
    assert container["args"][0] == "run" and "--git" in container["args"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes["state"] and "persistentVolumeClaim" not in volumes["state"]
    (pdb,) = [d for d in built if d["kind"] == "PodDisruptionBudget"]
    labels = pod["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())


def _compose() -> dict[str, Any]:
    (doc,) = load_yaml_documents(DEPLOY / "compose.ha.yaml")
    return doc  # type: ignore[no-any-return]


def _replica_argv(service: dict[str, Any]) -> list[str]:
    (script,) = service["command"]
    assert service["entrypoint"] == ["sh", "-c"]
    assert script.startswith('CHANOPS_STATE="postgresql://chanops:$$(cat /run/secrets/')
    return shlex.split(script.split("exec ", 1)[1])


def test_compose_runs_two_replicas_on_a_postgresql_service() -> None:
    doc = _compose()
    services = doc["services"]
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-password"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    replicas = [services["chanops-a"], services["chanops-b"]]
    argvs = [_replica_argv(s) for s in replicas]
    assert argvs[0] == argvs[1]
    assert argvs[0][:2] == ["chanops", "run"]
    assert "--state" not in argvs[0]
    ports = {p for s in replicas for p in s["ports"]}
    assert ports == {"127.0.0.1:9464:9464", "127.0.0.1:9465:9464"}
    for service in replicas:
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "postgres-password" in service["secrets"]
        assert service["read_only"] is True


def test_the_compose_replica_command_runs_once_on_postgresql(
    tmp_path: Path, emulator: EmulatorProcess
) -> None:
    argv = _replica_argv(_compose()["services"]["chanops-a"])
    root = tmp_path / "manifests"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    write_atomic(root / "a.yaml", manifest("a", display="From compose"))
    token = tmp_path / "platform-token"
    token.write_text(emulator.token)
    token.chmod(0o600)
    localized = {
        "--manifests": str(root),
        "--platform": emulator.url,
        "--secrets-dir": str(secrets),
    }
    args = list(argv[1:])
    for flag, value in localized.items():
        assert flag_value(args, flag) is not None, flag
        args[args.index(flag) + 1] = value
    with fresh_database("chanops_compose") as dsn:
        done = subprocess.run(
            [*chanops_launcher(), *args, "--once"],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "CHANOPS_STATE": dsn,
                "CHANOPS_PLATFORM_TOKEN_FILE": str(token),
                "SW_SECRET": "s3cr3t-compose-1",
            },
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert [c["name"] for c in emulator.admin.connections()] == ["From compose"]
