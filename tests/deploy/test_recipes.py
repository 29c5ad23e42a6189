"""deploy/: every YAML parses, every recipe's command line is one chanops accepts and the
recipes agree with each other (ports, paths, probes); every recipe names its secrets
directory and keeps chanops's own credentials out of it; the systemd unit verifies; each
recipe's command runs with --once against a local emulator."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from deploy.recipes import (
    DEPLOY,
    REPO,
    Recipe,
    ci_chanops_calls,
    flag_value,
    flags_of,
    kubernetes_objects,
    load_yaml_documents,
    localize,
    parse_dockerfile,
    parse_unit,
    recipe_commands,
    set_flag,
)

# What the commands document today (DESIGN section 3, issue 5's run flags, issue 6's git
# flags, and @common_options). Once a command is built, its own click options are the
# reference instead (see `accepted`).
COMMON = {
    "--manifests",
    "--platform",
    "--token",
    "--token-file",
    "--state",
    "--secrets-dir",
    "--config",
    "--insecure-http",
}
GIT_FLAGS = {
    "--git",
    "--git-ref",
    "--git-path",
    "--git-interval",
    "--git-ssh-key",
    "--webhook-secret-file",
}
DOCUMENTED = {
    "run": COMMON
    | GIT_FLAGS
    | {
        "--listen",
        "--resync",
        "--once",
        "--log-format",
        "--log-level",
        "--shutdown-timeout",
        "--concurrency",
        "--max-delete",
        "--allow-recreate",
    },
    "validate": {"--format", "--strict", "--check-secrets", "--secrets-dir", "--config"},
    "plan": COMMON | GIT_FLAGS | {"--format", "--detailed-exitcode", "--target", "--selector"},
}


def built_options(name: str) -> set[str] | None:
    """The options `chanops NAME` accepts, or None while it is still a placeholder."""
    from chanops.cli import main

    with click.Context(main) as ctx:
        cmd = main.get_command(ctx, name)
    if cmd is None or not cmd.params:
        return None
    return {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")}


def accepted(name: str, flags: list[str]) -> None:
    documented = DOCUMENTED[name]
    unknown = sorted(set(flags) - documented)
    assert not unknown, f"chanops {name}: flags no command documents: {unknown}"
    options = built_options(name)
    if options is None:
        return
    missing = sorted(set(flags) - options)
    assert not missing, f"chanops {name} does not accept {missing}"


RECIPES = recipe_commands()
BY_NAME = {r.name: r for r in RECIPES}


def test_every_yaml_file_in_deploy_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert len(files) >= 10
    for path in files:
        docs = load_yaml_documents(path)
        assert docs, f"{path} is empty"
        assert all(isinstance(d, dict) for d in docs), path


def test_recipes_are_found() -> None:
    assert set(BY_NAME) == {"docker", "compose:chanops", "systemd", "kubernetes:chanops"}
    for recipe in RECIPES:
        assert recipe.argv[:2] == ("chanops", "run"), recipe


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_recipe_flags_are_documented_and_accepted(recipe: Recipe) -> None:
    accepted("run", recipe.flags())


# Where systemd puts LoadCredential= files for this unit ($CREDENTIALS_DIRECTORY).
SYSTEMD_CREDENTIALS = "/run/credentials/chanops.service"
_CREDENTIAL_FLAGS = ("--token-file", "--webhook-secret-file", "--git-ssh-key")
_PATH = r"/[^\s\\\"',\]]+"  # an absolute path as a recipe writes it (shell, YAML, JSON)


def _within(path: str, directory: str) -> bool:
    path, directory = os.path.normpath(path), os.path.normpath(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def operator_credential_paths(recipe: Recipe) -> dict[str, str]:
    """Every path the recipe's file gives an operator credential, comments included
    (a commented ssh-key line is what an operator copies)."""
    text = recipe.source.read_text().replace("${CREDENTIALS_DIRECTORY}", SYSTEMD_CREDENTIALS)
    found: dict[str, str] = {}
    for flag in _CREDENTIAL_FLAGS:
        for i, m in enumerate(re.finditer(rf"{flag}[ =]+({_PATH})", text)):
            found[f"{flag}#{i}"] = m.group(1)
        if recipe.flag(flag):
            found[flag] = recipe.flag(flag) or ""
    for i, m in enumerate(re.finditer(rf"CHANOPS_PLATFORM_TOKEN_FILE[=:\s]+({_PATH})", text)):
        found[f"CHANOPS_PLATFORM_TOKEN_FILE#{i}"] = m.group(1)
    if "CHANOPS_PLATFORM_TOKEN_FILE" in recipe.env:
        found["CHANOPS_PLATFORM_TOKEN_FILE"] = recipe.env["CHANOPS_PLATFORM_TOKEN_FILE"]
    if recipe.name == "systemd":
        for key, value in parse_unit(recipe.source)["Service"]:
            if key == "LoadCredential":
                name, _, source = value.partition(":")
                found[f"LoadCredential {name}"] = source
                found[f"$CREDENTIALS_DIRECTORY/{name}"] = f"{SYSTEMD_CREDENTIALS}/{name}"
    state = recipe.flag("--state") or recipe.env.get("CHANOPS_STATE")
    if state:
        found["state store"] = state
        found["state key"] = state.removesuffix(".db") + ".key"
    return {k: v.strip("\"'") for k, v in found.items()}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_no_recipe_puts_an_operator_credential_in_its_secrets_dir(recipe: Recipe) -> None:
    """The attack of issue 11 finding 2: a manifest with `secretRef: {file: platform-token}`
    must find nothing. Each recipe names its secrets directory (no implicit default) and
    every token, webhook secret, ssh key and state file lies outside it."""
    secrets_dir = recipe.flag("--secrets-dir")
    assert secrets_dir, f"{recipe.name}: no --secrets-dir (the default must not be relied on)"
    text = recipe.source.read_text()
    # Every --secrets-dir the file shows (a commented drop-in too) is checked.
    dirs = {secrets_dir, *re.findall(rf"--secrets-dir[ =]+({_PATH})", text)}
    credentials = operator_credential_paths(recipe)
    assert any("TOKEN" in k or "platform-token" in k for k in credentials), credentials
    for directory in dirs:
        assert directory.startswith("/"), directory
        for what, path in credentials.items():
            assert not _within(path, directory), (
                f"{recipe.name}: {what} {path} lies inside the secrets directory {directory}"
            )
            # Nor the other way round: a secrets dir inside a credentials directory.
            if what.startswith("$CREDENTIALS_DIRECTORY"):
                assert not _within(directory, os.path.dirname(path)), directory


def test_the_credential_check_catches_the_old_layout() -> None:
    """The check above fails on what the recipes used to do (token in /run/secrets, read
    through the implicit /run/secrets default), so it is not vacuous."""
    old = Recipe(
        "old",
        DEPLOY / "compose.yaml",
        ("chanops", "run", "--secrets-dir", "/run/secrets"),
        {"CHANOPS_PLATFORM_TOKEN_FILE": "/run/secrets/platform-token"},
    )
    credentials = operator_credential_paths(old)
    assert _within(credentials["CHANOPS_PLATFORM_TOKEN_FILE"], "/run/secrets")
    with pytest.raises(AssertionError, match="lies inside the secrets directory"):
        test_no_recipe_puts_an_operator_credential_in_its_secrets_dir(old)


@pytest.mark.parametrize("ci_file", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_examples_call_only_documented_commands(ci_file: str) -> None:
    calls = ci_chanops_calls(DEPLOY / "ci" / ci_file)
    subcommands = [c[1] for c in calls]
    assert subcommands == ["validate", "plan"], calls
    for call in calls:
        accepted(call[1], flags_of(call))
    plan = next(c for c in calls if c[1] == "plan")
    assert flag_value(plan, "--format") == "markdown"
    assert "--detailed-exitcode" in plan


def test_github_workflow_annotates_and_keeps_one_comment() -> None:
    (wf,) = load_yaml_documents(DEPLOY / "ci" / "github-actions.yml")
    validate = next(c for c in ci_chanops_calls(DEPLOY / "ci" / "github-actions.yml"))
    assert flag_value(validate, "--format") == "github"
    steps = wf["jobs"]["plan"]["steps"]
    script = next(s for s in steps if s.get("uses", "").startswith("actions/github-script"))
    code = script["with"]["script"]
    # One comment per pull request: found again by its marker and updated, not re-posted.
    assert "<!-- chanops-plan -->" in code
    assert "updateComment" in code and "createComment" in code
    # Untrusted step outputs reach the script through env, not ${{ }} inside JavaScript.
    assert "${{" not in code
    assert wf["jobs"]["plan"]["permissions"]["pull-requests"] == "write"


def test_gitlab_plan_is_an_artifact() -> None:
    (ci,) = load_yaml_documents(DEPLOY / "ci" / "gitlab-ci.yml")
    assert ci["chanops:plan"]["artifacts"]["paths"] == ["plan.md"]


def test_dockerfile() -> None:
    df = parse_dockerfile(DEPLOY / "docker" / "Dockerfile")
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert df.stages >= 2
    assert "-slim" in text
    assert ".whl" in text
    assert df.entrypoint == ("chanops",)
    assert df.cmd[0] == "run"
    assert flag_value(df.cmd, "--secrets-dir") == "/run/secrets/connections"
    assert df.user and not df.user.startswith(("root", "0"))
    # HEALTHCHECK uses python (no curl in slim) on the port the image exposes.
    assert df.healthcheck[0] == "python"
    assert "/healthz" in df.healthcheck[-1]
    assert f"127.0.0.1:{df.expose[0]}/healthz" in df.healthcheck[-1]
    # Read-only root: everything written lives under the volume.
    (volume,) = df.volumes
    assert df.env["CHANOPS_STATE"].startswith(volume + "/")
    assert df.env["HOME"].startswith(volume)
    assert df.env.get("PYTHONDONTWRITEBYTECODE") == "1"
    platform = df.env.get("CHANOPS_PLATFORM_URL", "")
    assert not platform.startswith("local:") or platform.startswith(f"local:{volume}/")


def compose_mount(volume: str) -> tuple[str, str]:
    """'SOURCE:TARGET[:ro]' -> (TARGET, SOURCE); SOURCE may hold ${VAR:-default}."""
    for mode in (":ro", ":rw"):
        volume = volume.removesuffix(mode)
    source, _, target = volume.rpartition(":")
    return target, source


def test_compose() -> None:
    (doc,) = load_yaml_documents(DEPLOY / "compose.yaml")
    daemon = doc["services"]["chanops"]
    recipe = BY_NAME["compose:chanops"]
    assert "emulator" in doc["services"]
    assert recipe.flag("--platform") == "http://emulator:8787"
    assert "--port 8787" in " ".join(doc["services"]["emulator"]["command"])
    # The token comes from a compose secret, as a file, mounted outside the secrets dir.
    assert "platform-token" in doc["secrets"]
    (token_secret,) = daemon["secrets"]
    assert token_secret["source"] == "platform-token"
    assert recipe.env["CHANOPS_PLATFORM_TOKEN_FILE"] == token_secret["target"]
    assert token_secret["target"] == "/run/chanops/platform-token"
    mounts = dict(compose_mount(v) for v in daemon["volumes"])
    manifests = recipe.flag("--manifests") or ""
    assert manifests in mounts
    assert "connections.d" in mounts[manifests]
    # The connections' secrets: the repository's demo secrets/, on their own mount.
    assert mounts[recipe.flag("--secrets-dir") or ""] == "${CHANOPS_SECRETS_DIR:-../secrets}"
    # Plain http to the emulator is allowed explicitly, and only there.
    assert (recipe.flag("--platform") or "").startswith("http://")
    assert "--insecure-http" in recipe.argv
    state_dir = str(Path(recipe.flag("--state") or "").parent)
    assert state_dir in mounts
    assert daemon["read_only"] is True
    port = (recipe.flag("--listen") or "").rsplit(":", 1)[1]
    assert any(p.endswith(f":{port}") for p in daemon["ports"])
    # The emulator's command line is checked against `chanops emulator` the same way.
    (script,) = doc["services"]["emulator"]["command"]
    assert "CHANOPS_EMULATOR_TOKEN=" in script  # token from the secret, not argv
    emulator_argv = shlex.split(script.split("exec ", 1)[1])
    assert emulator_argv[:2] == ["chanops", "emulator"]
    options = built_options("emulator")
    if options is not None:
        assert set(flags_of(emulator_argv)) <= options, emulator_argv


def test_systemd_unit_directives() -> None:
    service = dict(parse_unit(DEPLOY / "systemd" / "chanops.service")["Service"])
    assert service["Type"] in {"simple", "notify", "exec"}
    assert service["DynamicUser"] == "yes"
    assert service["StateDirectory"] == "chanops"
    assert service["LoadCredential"].startswith("platform-token:")
    assert service["Restart"] == "on-failure"
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
    }.items():
        assert service[key] == value, key
    assert set(service["RestrictAddressFamilies"].split()) <= {"AF_UNIX", "AF_INET", "AF_INET6"}
    recipe = BY_NAME["systemd"]
    assert (recipe.flag("--state") or "").startswith("/var/lib/chanops/")
    assert (recipe.flag("--listen") or "").startswith("127.0.0.1:")
    # Why Type= is what it is, written beside it.
    text = (DEPLOY / "systemd" / "chanops.service").read_text()
    assert "sd_notify" in text


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart's binary exists: point it at the installed entry point.
    chanops = Path(sys.executable).parent / "chanops"
    unit = tmp_path / "chanops.service"
    unit.write_text(
        (DEPLOY / "systemd" / "chanops.service")
        .read_text()
        .replace("/usr/local/bin/chanops", str(chanops))
    )
    res = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and bad values but warns about them: both must be clean.
    problems = [line for line in res.stderr.splitlines() if "chanops.service" in line]
    assert res.returncode == 0 and not problems, res.stderr


def k8s(kind: str) -> list[dict[str, Any]]:
    return [o for o in kubernetes_objects() if o["kind"] == kind]


def test_kubernetes_base() -> None:
    root = DEPLOY / "kubernetes"
    (kustomization,) = load_yaml_documents(root / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in root.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    kinds = {o["kind"] for o in kubernetes_objects()}
    assert kinds >= {
        "Namespace",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
    }

    (deployment,) = k8s("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    recipe = BY_NAME["kubernetes:chanops"]
    assert recipe.flag("--git"), "the Deployment uses the git source"
    assert "git-sync" in (root / "deployment.yaml").read_text()  # the choice is explained

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (recipe.flag("--listen") or "").endswith(f":{ports['http']}")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]

    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True

    # Files the args and env name live on the volumes mounted there.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    state_mount = mounts[next(n for n, v in volumes.items() if "persistentVolumeClaim" in v)]
    assert (recipe.flag("--state") or "").startswith(state_mount + "/")
    (pvc,) = k8s("PersistentVolumeClaim")
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    secrets = {o["metadata"]["name"]: o for o in k8s("Secret")}
    assert set(secrets) == {"chanops", "chanops-connections"}
    by_secret = {v["secret"]["secretName"]: n for n, v in volumes.items() if "secret" in v}
    own = secrets["chanops"]
    for path in (recipe.flag("--webhook-secret-file"), recipe.env["CHANOPS_PLATFORM_TOKEN_FILE"]):
        assert path is not None
        directory, key = path.rsplit("/", 1)
        assert directory == mounts[by_secret["chanops"]]
        assert key in own["stringData"]
    # Manifests read secrets from the other Secret's mount only.
    assert recipe.flag("--secrets-dir") == mounts[by_secret["chanops-connections"]]
    assert volumes[by_secret["chanops-connections"]]["secret"].get("optional") is True

    (service,) = k8s("Service")
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in ("http", ports["http"])
    selector = service["spec"]["selector"]
    labels = pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in selector.items()), labels


def test_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    res = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "kubernetes")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    built = [d for d in yaml.safe_load_all(res.stdout) if d]
    assert all(
        d["metadata"].get("namespace") == "chanops" for d in built if d["kind"] != "Namespace"
    )


def test_ci_docs_show_the_pre_commit_hook_that_exists() -> None:
    hooks_file = REPO / ".pre-commit-hooks.yaml"
    docs = REPO / "docs" / "ci.md"
    if not hooks_file.exists():
        pytest.skip(".pre-commit-hooks.yaml is not in the repository yet")
    ids = {h["id"] for h in yaml.safe_load(hooks_file.read_text())}
    assert any(f"id: {i}" in docs.read_text() for i in ids), ids


# -- each recipe's command, run for real with --once ---------------------------------

MANIFEST = """\
apiVersion: chanops/v1
kind: Connection
metadata:
  name: shopware-recipe
spec:
  driver: shopware6
  credentials:
    url: https://shop.example.com
    accessKeyId: SWIARECIPE
    secretAccessKey: recipe-test-secret
"""
# The same connection with its secret read through the recipe's --secrets-dir.
MANIFEST_REF = MANIFEST.replace(
    "secretAccessKey: recipe-test-secret", "secretAccessKey: {secretRef: {file: recipe-secret}}"
)


def _git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _manifests_repo(tmp_path: Path) -> Path:
    work = tmp_path / "repo-work"
    (work / "connections.d").mkdir(parents=True)
    (work / "connections.d" / "shopware.yaml").write_text(MANIFEST_REF)
    bare = tmp_path / "manifests.git"
    _git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(bare))
    _git(tmp_path, "init", "--quiet", "-b", "main", str(work))
    _git(work, "add", "-A")
    _git(work, "commit", "--quiet", "-m", "one connection")
    _git(work, "push", "--quiet", str(bare), "HEAD:main")
    return bare


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_recipe_command_runs_once(recipe: Recipe, tmp_path: Path) -> None:
    options = built_options("run")
    if options is None or "--once" not in options:
        pytest.skip("chanops run is not built yet")
    accepted("run", recipe.flags())
    from support.emulator import free_port, start_emulator

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "shopware.yaml").write_text(MANIFEST_REF)
    state = tmp_path / "var-lib-chanops"
    state.mkdir()
    # chanops's own credentials and the connections' secrets, apart as in the recipes
    # (chanops refuses to start otherwise).
    operator = tmp_path / "operator-credentials"
    operator.mkdir(mode=0o700)
    connection_secrets = tmp_path / "connection-secrets"
    connection_secrets.mkdir()
    (connection_secrets / "recipe-secret").write_text("recipe-test-secret\n")

    with start_emulator(tmp_path / "emulator") as emu:
        (operator / "platform-token").write_text(emu.token + "\n")
        (operator / "webhook-secret").write_text("recipe-webhook-secret\n")
        os.chmod(operator / "platform-token", 0o600)
        local = localize(
            recipe,
            {
                # host paths -> tmp
                "/var/lib/chanops": str(state),
                "/manifests": str(manifests),
                "/etc/chanops/connections.d": str(manifests),
                "/run/secrets/connections": str(connection_secrets),
                "/etc/chanops/secrets": str(connection_secrets),
                "/run/chanops": str(operator),
                "/etc/chanops/secret": str(operator),
                # platforms -> the local emulator (the Docker default stays embedded)
                "http://emulator:8787": emu.url,
                "https://platform.example.com": emu.url,
                # the git source -> a bare repository on disk
                "https://github.com/example/manifests.git": str(_manifests_repo(tmp_path)),
            },
        )
        argv = set_flag(local.argv, "--listen", f"127.0.0.1:{free_port()}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
        env.update(local.env)
        env["HOME"] = str(tmp_path)
        env["CREDENTIALS_DIRECTORY"] = str(operator)  # what systemd's LoadCredential gives
        chanops = Path(sys.executable).parent / "chanops"
        res = subprocess.run(
            [str(chanops), *argv[1:], "--once"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, f"{argv}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        if not (
            local.env.get("CHANOPS_PLATFORM_URL", "").startswith("local:")
            and "--platform" not in argv
        ):
            names = [c["name"] for c in emu.admin.connections()]
            assert names == ["shopware-recipe"], names
        # The run resolved its secret and warned about nothing it could fix.
        assert "Warning:" not in res.stderr, res.stderr


def _ci_call(ci_file: str, subcommand: str) -> tuple[str, ...]:
    return next(c for c in ci_chanops_calls(DEPLOY / "ci" / ci_file) if c[1] == subcommand)


def _run_ci(
    call: tuple[str, ...], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    chanops = Path(sys.executable).parent / "chanops"
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    return subprocess.run(
        [str(chanops), *call[1:]],
        cwd=cwd,
        env={**base, "HOME": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_github_validate_call_annotates_a_broken_manifest(tmp_path: Path) -> None:
    if built_options("validate") is None:
        pytest.skip("chanops validate is not built yet")
    call = _ci_call("github-actions.yml", "validate")
    (tmp_path / "connections.d").mkdir()
    (tmp_path / "connections.d" / "ok.yaml").write_text(MANIFEST)
    ok = _run_ci(call, tmp_path, {"CHANOPS_MANIFESTS": "connections.d"})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (tmp_path / "connections.d" / "bad.yaml").write_text(MANIFEST.replace("shopware6", "shopware9"))
    bad = _run_ci(call, tmp_path, {"CHANOPS_MANIFESTS": "connections.d"})
    assert bad.returncode == 1
    assert "::error file=connections.d/bad.yaml" in bad.stdout + bad.stderr


@pytest.mark.parametrize("ci_file", ["github-actions.yml", "gitlab-ci.yml"])
def test_plan_call_renders_markdown_against_an_emulator(ci_file: str, tmp_path: Path) -> None:
    options = built_options("plan")
    if options is None or "--format" not in options:
        pytest.skip("chanops plan is not built yet")
    from support.emulator import start_emulator

    call = _ci_call(ci_file, "plan")
    (tmp_path / "connections.d").mkdir()
    (tmp_path / "connections.d" / "shopware.yaml").write_text(MANIFEST)
    with start_emulator(tmp_path / "emulator") as emu:
        res = _run_ci(
            call,
            tmp_path,
            {
                "CHANOPS_MANIFESTS": "connections.d",
                "CHANOPS_PLATFORM_URL": emu.url,
                "CHANOPS_PLATFORM_TOKEN": emu.token,
            },
        )
        assert emu.admin.connections() == []  # plan never writes
    assert res.returncode == 2, res.stdout + res.stderr  # --detailed-exitcode: changes
    assert "shopware-recipe" in res.stdout
    assert "recipe-test-secret" not in res.stdout  # secrets stay (sensitive value)
