"""A refusal that waits for an account change, as the daemon lives it (`chanops run`).

A Shopware 6 shop uses a language the account's DataHub lacks: the platform refuses the
create (`language_missing`). The daemon shows it as the Stalled condition naming the
language and does not ask again in a loop; once the account has the language, SIGHUP
(or a manifest edit) brings it back and the connection is created.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.helpers import DaemonProcess, wait_until, write_atomic
from support.emulator import EmulatorProcess

API = "/api/v1"
SECRET = "sw-secret-refusals"
URL = "https://refusals.example.com"
MANIFEST = f"""apiVersion: chanops/v1
kind: Connection
metadata:
  name: sw-fr
spec:
  driver: shopware6
  credentials:
    url: {URL}
    accessKeyId: SWIA1
    secretAccessKey: {{secretRef: {{env: SW_SECRET}}}}
"""


@pytest.fixture
def account(emu: EmulatorProcess) -> Iterator[dict[str, Any]]:
    """The account as the test found it; put back afterwards (one emulator per module)."""
    before: dict[str, Any] = emu.admin.get(f"{API}/testing/account")
    yield before
    emu.admin.post(f"{API}/testing/account", json=before)


def stalled(d: DaemonProcess) -> dict[str, str] | None:
    rows = d.http("/status").json()["connections"]
    conds = {c["type"]: c for r in rows if r["name"] == "sw-fr" for c in r["conditions"]}
    return conds.get("Stalled")


def test_a_missing_datahub_language_waits_for_the_account_not_a_retry_loop(
    emu: EmulatorProcess, account: dict[str, Any], tmp_path: Path
) -> None:
    emu.admin.post(f"{API}/testing/shop-languages", json={"url": URL, "languages": ["fr-FR"]})
    emu.admin.post(f"{API}/testing/account", json={"languages": ["de-DE"]})
    root = tmp_path / "connections.d"
    write_atomic(root / "sw-fr.yaml", MANIFEST)
    emu.admin.reset_stats()
    d = DaemonProcess(
        tmp_path, manifests=root, platform=emu.url, token=emu.token, env={"SW_SECRET": SECRET}
    )
    try:
        d.start()
        cond = wait_until(lambda: stalled(d), timeout=15, what="sw-fr Stalled")
        assert (cond["status"], cond["reason"]) == ("True", "LanguageMissing")
        assert "fr-FR" in cond["message"] and SECRET not in cond["message"]
        failed = d.wait_event(
            lambda e: e["event"] == "connection.failed" and e.get("connection") == "sw-fr"
        )
        assert "fr-FR" in failed["error"]
        d.wait_event(lambda e: e["event"] == "connection.parked" and e["connection"] == "sw-fr")
        # Not a retry loop: a retried failure would have been asked again after 1 s and
        # 2 s (the daemon's backoff); a refusal is asked once.
        time.sleep(3.5)
        assert emu.admin.stats().get("POST /api/v1/connections") == 1

        # The account gets the language; SIGHUP asks again, and the create goes through.
        emu.admin.post(f"{API}/testing/account", json={"languages": ["de-DE", "fr-FR"]})
        mark = d.mark()
        d.signal(signal.SIGHUP)
        created = d.wait_event(
            lambda e: e["event"] == "connection.created" and e.get("connection") == "sw-fr",
            after=mark,
            what="sw-fr created after the account change",
        )
        assert emu.admin.connection(created["connection_id"])["credentials"]["url"] == URL
        wait_until(lambda: stalled(d) is None, timeout=10, what="Stalled cleared")
        assert d.stop() == 0
        assert SECRET not in d.output()
    finally:
        d.kill()
