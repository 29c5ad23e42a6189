"""Read the exact command line and environment each deploy/ recipe gives chanops.

`recipe_commands(DEPLOY)` returns one Recipe per way the recipes start the daemon:
the Dockerfile's ENTRYPOINT + CMD (with its ENV), the compose service's command, the
systemd unit's ExecStart (with Environment=), and the Kubernetes Deployment's args (with
env and the ConfigMap it loads). Tests check these statically and run them with --once
against a local emulator after `localize()` has mapped host paths and URLs into a tmp dir.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


@dataclass(frozen=True)
class Recipe:
    name: str  # docker | compose:<service> | systemd | kubernetes:<container>
    source: Path
    argv: tuple[str, ...]  # starts with "chanops"
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def subcommand(self) -> str:
        return self.argv[1] if len(self.argv) > 1 else ""

    def flags(self) -> list[str]:
        return flags_of(self.argv)

    def flag(self, name: str) -> str | None:
        """The value given to `--name VALUE` or `--name=VALUE`, else None."""
        return flag_value(self.argv, name)


def flags_of(argv: Iterable[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def flag_value(argv: Iterable[str], name: str) -> str | None:
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def set_flag(argv: Iterable[str], name: str, value: str) -> tuple[str, ...]:
    """argv with `name` set to `value` (replaced where present, appended otherwise)."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            args[i + 1] = value
            return tuple(args)
        if arg.startswith(name + "="):
            args[i] = f"{name}={value}"
            return tuple(args)
    return (*args, name, value)


def localize(recipe: Recipe, replacements: Mapping[str, str]) -> Recipe:
    """Replace host paths/URLs (longest prefix first) in argv and env values."""
    keys = sorted(replacements, key=len, reverse=True)

    def sub(text: str) -> str:
        for key in keys:
            if key in text:
                return text.replace(key, replacements[key])
        return text

    return replace(
        recipe,
        argv=tuple(sub(a) for a in recipe.argv),
        env={k: sub(v) for k, v in recipe.env.items()},
    )


# -- Dockerfile ---------------------------------------------------------------------


@dataclass(frozen=True)
class Dockerfile:
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: dict[str, str]
    healthcheck: tuple[str, ...]
    expose: tuple[str, ...]
    volumes: tuple[str, ...]
    user: str | None
    stages: int


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    buf = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # comment inside a continuation
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        lines.append(buf + stripped)
        buf = ""
    if buf:
        lines.append(buf)
    return lines


def _exec_form(value: str) -> tuple[str, ...]:
    value = value.strip()
    if value.startswith("["):
        return tuple(json.loads(value))
    return ("/bin/sh", "-c", value)


def parse_dockerfile(path: Path) -> Dockerfile:
    """The final stage's ENTRYPOINT, CMD, ENV, HEALTHCHECK, EXPOSE, VOLUME and USER."""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = {}
    health: tuple[str, ...] = ()
    expose: list[str] = []
    volumes: list[str] = []
    user = None
    stages = 0
    for line in _logical_lines(path.read_text()):
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            stages += 1
            entrypoint, cmd, env, health, expose, volumes, user = (), (), {}, (), [], [], None
        elif instr == "ENTRYPOINT":
            entrypoint = _exec_form(rest)
        elif instr == "CMD":
            cmd = _exec_form(rest)
        elif instr == "ENV":
            for token in shlex.split(rest):
                key, sep, value = token.partition("=")
                if sep:
                    env[key] = value
        elif instr == "HEALTHCHECK":
            _, _, command = rest.partition(" CMD ")
            health = _exec_form(command)
        elif instr == "EXPOSE":
            expose += rest.split()
        elif instr == "VOLUME":
            volumes += list(_exec_form(rest)) if rest.strip().startswith("[") else rest.split()
        elif instr == "USER":
            user = rest.strip()
    return Dockerfile(entrypoint, cmd, env, health, tuple(expose), tuple(volumes), user, stages)


def docker_recipe(path: Path = DEPLOY / "docker" / "Dockerfile") -> Recipe:
    df = parse_dockerfile(path)
    return Recipe("docker", path, (*df.entrypoint, *df.cmd), dict(df.env))


# -- compose ------------------------------------------------------------------------


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _env_mapping(env: Any) -> dict[str, str]:
    if isinstance(env, Mapping):
        return {str(k): str(v) for k, v in env.items()}
    out: dict[str, str] = {}
    for item in env or []:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def compose_recipes(path: Path = DEPLOY / "compose.yaml") -> list[Recipe]:
    """Services that run chanops through the image's ENTRYPOINT (the daemon, not helpers)."""
    (doc,) = load_yaml_documents(path)
    image = parse_dockerfile(DEPLOY / "docker" / "Dockerfile")
    recipes = []
    for name, svc in doc["services"].items():
        if "entrypoint" in svc:
            continue  # e.g. the emulator, started through sh
        command = svc.get("command", list(image.cmd))
        if isinstance(command, str):
            command = shlex.split(command)
        env = {**image.env, **_env_mapping(svc.get("environment"))}
        recipes.append(Recipe(f"compose:{name}", path, (*image.entrypoint, *command), env))
    return recipes


# -- systemd ------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections -> [(key, value)] in order (keys repeat in unit files)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def systemd_recipe(path: Path = DEPLOY / "systemd" / "chanops.service") -> Recipe:
    service = parse_unit(path)["Service"]
    (exec_start,) = [v for k, v in service if k == "ExecStart" and v]
    argv = shlex.split(exec_start.lstrip("-@+!:"))
    argv[0] = Path(argv[0]).name  # /usr/local/bin/chanops -> chanops
    env: dict[str, str] = {}
    for key, value in service:
        if key == "Environment":
            for token in shlex.split(value):
                k, _, v = token.partition("=")
                env[k] = v
    return Recipe("systemd", path, tuple(argv), env)


# -- Kubernetes ---------------------------------------------------------------------


def kubernetes_objects(root: Path = DEPLOY / "kubernetes") -> list[dict[str, Any]]:
    objects = []
    for path in sorted(root.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            if isinstance(doc, dict) and "kind" in doc and doc.get("kind") != "Kustomization":
                objects.append(doc)
    return objects


def kubernetes_recipes(root: Path = DEPLOY / "kubernetes") -> list[Recipe]:
    objects = kubernetes_objects(root)
    config_maps = {
        o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"
    }
    image = parse_dockerfile(DEPLOY / "docker" / "Dockerfile")
    recipes = []
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            command = container.get("command", list(image.entrypoint))
            args = container.get("args", [] if "command" in container else list(image.cmd))
            env = dict(image.env)
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref:
                    env.update({k: str(v) for k, v in config_maps[ref["name"]].items()})
            for item in container.get("env", []):
                if "value" in item:
                    env[item["name"]] = str(item["value"])
            recipes.append(
                Recipe(
                    f"kubernetes:{container['name']}",
                    root / "deployment.yaml",
                    (*command, *args),
                    env,
                )
            )
    return recipes


def recipe_commands(deploy_dir: Path = DEPLOY) -> list[Recipe]:
    """Every command line the recipes in `deploy_dir` give chanops."""
    return [
        docker_recipe(deploy_dir / "docker" / "Dockerfile"),
        *compose_recipes(deploy_dir / "compose.yaml"),
        systemd_recipe(deploy_dir / "systemd" / "chanops.service"),
        *kubernetes_recipes(deploy_dir / "kubernetes"),
    ]


# -- CI examples --------------------------------------------------------------------

_CHANOPS_CALL = re.compile(r"(?:^|[;&|(]\s*|\s)chanops\s+([a-z]+)((?:\s+(?!>|\|\||&&)[^\s;|&>]+)*)")


def ci_chanops_calls(path: Path) -> list[tuple[str, ...]]:
    """Every `chanops SUBCOMMAND args...` in a CI file's shell lines.

    GitHub Actions: `run:` (not github-script's `script:`, which is JavaScript);
    GitLab CI: `script:` and `before_script:`.
    """
    calls: list[tuple[str, ...]] = []
    shell_keys = {"run"} if "github" in path.name else {"script", "before_script"}

    def walk(node: Any, key: str | None) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in shell_keys:
            for m in _CHANOPS_CALL.finditer(node):
                calls.append(("chanops", m.group(1), *m.group(2).split()))

    for doc in load_yaml_documents(path):
        walk(doc, None)
    return calls
