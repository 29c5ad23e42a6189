"""The Kubernetes recipe's oauth2-proxy component (deploy/kubernetes/ui-oauth2-proxy/).

Read as data: the component must hand chanops the same password oauth2-proxy sends,
forward only /ui/, and keep every credential in a Secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from chanops.commands.run import command

COMPONENT = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "ui-oauth2-proxy"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((COMPONENT / name).read_text()) if d]


def test_the_proxy_and_chanops_share_the_password_and_only_ui_is_forwarded() -> None:
    (component,) = documents("kustomization.yaml")
    assert component["kind"] == "Component"
    assert component["resources"] == ["oauth2-proxy.yaml"]
    (patch,) = component["patches"]
    added = [op["value"] for op in yaml.safe_load(patch["patch"])]
    assert added == ["--ui-password-file", "/etc/chanops/secret/ui-password"]
    # chanops's own Secret is mounted there by the base (deploy/kubernetes/deployment.yaml).
    options = {o for p in command.params for o in p.opts}
    assert "--ui-password-file" in options

    deployment, service = documents("oauth2-proxy.yaml")
    (proxy,) = deployment["spec"]["template"]["spec"]["containers"]
    args = proxy["args"]
    assert "--upstream=http://chanops:9464/ui/" in args
    assert "--pass-basic-auth=true" in args
    env = {e["name"]: e for e in proxy["env"]}
    password = env["OAUTH2_PROXY_BASIC_AUTH_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": "chanops", "key": "ui-password"}
    for name in ("CLIENT_ID", "CLIENT_SECRET", "COOKIE_SECRET"):
        assert "secretKeyRef" in env[f"OAUTH2_PROXY_{name}"]["valueFrom"]  # never a value
    assert not any("secret=" in a or "password=" in a for a in args)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
