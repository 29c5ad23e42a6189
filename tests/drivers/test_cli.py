"""The driver rules as a user meets them: `validate`, `schema --driver`, `plan`, `run --once`.

Real `chanops` subprocesses; `plan` and `run --once` against the module's emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.emulator import EmulatorProcess, free_port

CHANOPS = str(Path(sys.executable).parent / "chanops")
MAGENTO = """apiVersion: chanops/v1
kind: Connection
metadata:
  name: magento-lock
spec:
  driver: magento2
  credentials:
    url: https://m.example.com
    username: api
    password: {secretRef: {env: MAGENTO_PW}}
  settings:
    orderStates:
      createInvoiceWhenPaid: false
      notifyCustomerAboutInvoice: true
"""
SHOPWARE = """apiVersion: chanops/v1
kind: Connection
metadata:
  name: {name}
spec:
  driver: shopware6
  credentials:
    url: https://shop.example.com
    accessKeyId: SWIA1
    secretAccessKey: {{secretRef: {{env: SW_SECRET}}}}
  settings:
    priceRules: [{rules}]
"""


def chanops(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    env.update({"SW_SECRET": "sw-secret-value", "MAGENTO_PW": "magento-password"})
    return subprocess.run(
        [CHANOPS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_validate_rejects_the_locked_invoice_notification_naming_both_labels(
    tmp_path: Path,
) -> None:
    (tmp_path / "magento.yaml").write_text(MAGENTO, encoding="utf-8")
    done = chanops("validate", str(tmp_path))
    assert done.returncode == 1
    (line,) = [x for x in done.stdout.splitlines() if ": error: " in x]
    assert line == (
        f"{tmp_path / 'magento.yaml'}:14:35: error: "
        "spec.settings.orderStates.notifyCustomerAboutInvoice: "
        '"notifyCustomerAboutInvoice" (Notify customer about the invoice) is locked unless '
        '"createInvoiceWhenPaid" (Create an invoice in Magento for orders that are fully '
        "paid) is true; set createInvoiceWhenPaid: true or remove notifyCustomerAboutInvoice"
    )
    fixed = MAGENTO.replace("createInvoiceWhenPaid: false", "createInvoiceWhenPaid: true")
    (tmp_path / "magento.yaml").write_text(fixed, encoding="utf-8")
    assert chanops("validate", str(tmp_path)).returncode == 0


def test_validate_bigcommerce_needs_credentials_or_a_connection_id(tmp_path: Path) -> None:
    """By hand: the store hash and the token; the app's connection: adopted by its id."""
    head = "apiVersion: chanops/v1\nkind: Connection\nmetadata:\n  name: bc\nspec:\n"
    path = tmp_path / "bc.yaml"
    path.write_text(head + "  driver: bigcommerce\n", encoding="utf-8")
    done = chanops("validate", str(tmp_path))
    assert done.returncode == 1
    assert [x for x in done.stdout.splitlines() if ": error: " in x] == [
        f'{path}:6:3: error: spec: missing required field "credentials" (Credentials), '
        'or set "connectionId" to adopt an existing connection'
    ]
    path.write_text(head + "  driver: bigcommerce\n  connectionId: 42\n", encoding="utf-8")
    assert chanops("validate", str(tmp_path)).returncode == 0


def test_schema_for_bigcommerce() -> None:
    done = chanops("schema", "--driver", "bigcommerce")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    creds = schema["properties"]["credentials"]["properties"]
    assert creds["storeHash"]["title"] == "Store hash"
    assert creds["accessToken"]["x-chanops-secret"] is True
    settings = schema["properties"]["settings"]["properties"]
    assert settings["offers"]["properties"]["onlyPushMappedAttributes"]["default"] is False


@pytest.mark.slow  # three whole processes; in-process: test_reconcile.py, engine/test_cli.py
def test_plan_and_run_once_sync_after_the_change(emu: EmulatorProcess, tmp_path: Path) -> None:
    """`plan` shows the sync the create of price rules needs; `run --once` does it."""
    root = tmp_path / "connections.d"
    root.mkdir()
    (root / "shop.yaml").write_text(SHOPWARE.format(name="cli-shop", rules="b2b"), "utf-8")
    target = [
        "--manifests",
        str(root),
        "--platform",
        emu.url,
        "--token",
        emu.token,
        "--state",
        str(tmp_path / "state.db"),
    ]
    plan = chanops("plan", *target)
    assert plan.returncode == 0, plan.stderr
    assert (
        "# cli-shop will be synced (the vendor's procedure requires a sync after a change "
        "to /settings/priceRules)"
    ) in plan.stdout
    assert "Plan: 1 to create, 1 to sync." in plan.stdout

    listen = f"127.0.0.1:{free_port()}"
    run = chanops("run", "--once", "--log-format", "json", "--listen", listen, *target)
    assert run.returncode == 0, run.stdout + run.stderr
    events = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
    names = [e["event"] for e in events if e.get("connection") == "cli-shop"]
    assert names.index("connection.created") < names.index("sync.triggered")
    assert names.index("sync.triggered") < names.index("sync.completed")
    triggered = [e for e in events if e["event"] == "sync.triggered"]
    assert triggered and all(e["reason"].endswith("/settings/priceRules") for e in triggered)
    assert "No changes." in chanops("plan", *target).stdout
