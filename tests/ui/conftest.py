"""A daemon with the status page, for the UI tests: real emulator, real `chanops run`.

The manifests are the example `connections.d/` plus two written here: one whose display
name and label carry `<script>` (the escaping tests), one with a literal secret (the
secret search); every secret the world uses has a unique, searchable value (`SECRETS`).
One unmanaged connection is installed on the platform beside them.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.helpers import DaemonProcess, wait_until
from support.emulator import EmulatorProcess, start_emulator

REPO = Path(__file__).resolve().parents[2]
XSS = "<script>alert(1)</script>"
PLATFORM_TOKEN = "tok-ui-5d1f0c9e7b2a"  # every secret here is fake, and searched for
ENV_SECRET = "env-ui-secret-83c1f2"
LITERAL_SECRET = "literal-ui-secret-4be7"
UI_PASSWORD = "ui-pass-a9e3d7"


@dataclass
class World:
    emu: EmulatorProcess
    daemon: DaemonProcess
    root: Path  # the manifests root
    secrets: list[str]  # every secret value the world uses: none may reach a page
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.daemon.port}"

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(self.base + path, **kw)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.client.request(method, self.base + path, **kw)


def write_world(tmp: Path) -> tuple[Path, list[str]]:
    """The manifests root and secrets directory; returns (root, secret values)."""
    root = tmp / "connections.d"
    shutil.copytree(REPO / "connections.d", root)
    secrets_dir = tmp / "secrets"
    shutil.copytree(REPO / "secrets", secrets_dir)
    values = [PLATFORM_TOKEN, ENV_SECRET, LITERAL_SECRET, UI_PASSWORD]
    for i, path in enumerate(sorted(p for p in secrets_dir.iterdir() if p.name != "README.md")):
        value = f"file-ui-secret-{i:02}-{path.name[:6]}"
        path.write_text(value + "\n", encoding="utf-8")
        values.append(value)
    (root / "xss.yaml").write_text(
        "apiVersion: chanops/v1\nkind: Connection\nmetadata:\n  name: xss-shop\n"
        f"  labels: {{owner: '{XSS}'}}\n"
        f"spec:\n  driver: shopware6\n  displayName: '{XSS}'\n  credentials:\n"
        "    url: https://xss.example.com\n    accessKeyId: SWIAXSS\n"
        "    secretAccessKey: {secretRef: {env: UI_TEST_SECRET}}\n",
        encoding="utf-8",
    )
    (root / "literal.yaml").write_text(
        "apiVersion: chanops/v1\nkind: Connection\nmetadata:\n  name: literal-shop\n"
        "  labels: {team: qa}\n"
        "spec:\n  driver: magento2\n  credentials:\n    url: https://literal.example.com\n"
        f"    username: chanops\n    password: {LITERAL_SECRET}\n",
        encoding="utf-8",
    )
    return root, values


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("ui")
    root, secrets = write_world(tmp)
    with start_emulator(tmp / "emulator", time_scale=0.002, token=PLATFORM_TOKEN) as emu:
        emu.admin.marketplace_install("shopify", "legacy-shop")
        daemon = DaemonProcess(
            tmp,
            manifests=root,
            platform=emu.url,
            token=PLATFORM_TOKEN,
            env={"UI_TEST_SECRET": ENV_SECRET},
        )
        world = World(emu, daemon, root, secrets)
        try:
            daemon.start()
            drift_ignored_field(world)
            # The first full resync has listed the platform: the plan page has a plan.
            wait_until(
                lambda: (
                    "No changes" in world.get("/ui/plan").text
                    or "Plan:" in world.get("/ui/plan").text
                ),
                timeout=30,
                what="a plan on /ui/plan",
            )
            yield world
        finally:
            daemon.stop()
            world.client.close()


def drift_ignored_field(world: World) -> None:
    """Someone edits sfcc-eu's price books in the platform's UI (spec.ignoreDifferences
    keeps that difference); SIGHUP resyncs, so the daemon's listing has it."""
    (conn,) = [c for c in world.emu.admin.connections() if c["name"] == "Commerce Cloud EU"]
    world.emu.admin.patch(
        f"/api/v1/connections/{conn['id']}",
        {"settings": {"priceBooks": [{"id": "ui-edited", "currency": "EUR"}]}},
        headers={"If-Match": str(conn["version"])},
    )
    mark = world.daemon.mark()
    world.daemon.signal(signal.SIGHUP)
    world.daemon.wait_event(
        lambda e: e["event"] == "reconcile.completed" and e.get("kind") == "full",
        after=mark,
        timeout=30,
    )


def artefacts_dir(tmp_path: Path) -> Path:
    """Where tests write screenshots: $CHANOPS_TEST_ARTIFACTS, or under the test's tmp."""
    configured = os.environ.get("CHANOPS_TEST_ARTIFACTS")
    path = Path(configured) / "ui" if configured else tmp_path / "artefacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def exposed_daemon(world: World, tmp: Path, *extra: str) -> DaemonProcess:
    """A daemon listening on every address (not loopback) with an empty manifests root.

    Empty: it must not adopt the world daemon's connections from the same platform.
    """
    root = tmp / "empty.d"
    root.mkdir(exist_ok=True)
    daemon = DaemonProcess(
        tmp,
        manifests=root,
        platform=world.emu.url,
        token=PLATFORM_TOKEN,
        state=tmp / "state" / "exposed.db",
        extra=["--listen", "0.0.0.0:0", *extra],
        name="exposed",
    )
    return daemon.start()


@pytest.fixture(scope="session")
def guarded(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """An exposed daemon whose page takes the password in a file or the proxy's header."""
    tmp = tmp_path_factory.mktemp("guarded")
    password_file = tmp / "ui-password"
    password_file.write_text(UI_PASSWORD + "\n", encoding="utf-8")
    daemon = exposed_daemon(
        world,
        tmp,
        "--ui-password-file",
        str(password_file),
        "--ui-trusted-header",
        "X-Forwarded-Email",
    )
    try:
        yield daemon
    finally:
        daemon.stop()
