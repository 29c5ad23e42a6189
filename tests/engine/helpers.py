"""Builders shared by the engine tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chanops.manifests.model import LoadResult, Manifest, SecretRef, SourceLocation

ENV = {
    "SW_SECRET": "sw-secret-1",
    "TB_REST": "tb-rest-1",
    "TB_SFTP": "tb-sftp-1",
    "SHOPIFY_KEY": "shopify-key-1",
}


def credentials(driver: str) -> dict[str, Any]:
    if driver == "shopware6":
        return {
            "url": "https://shop.example.com",
            "accessKeyId": "SWIA1",
            "secretAccessKey": SecretRef(env="SW_SECRET"),
        }
    if driver == "tradebyte":
        return {
            "merchantNumber": "123",
            "shopName": "shop",
            "restUsername": "rest",
            "restPassword": SecretRef(env="TB_REST"),
            "sftpUsername": "sftp",
            "sftpPassword": SecretRef(env="TB_SFTP"),
        }
    if driver == "shopify":
        return {"shopUrl": "shop.myshopify.com", "apiKey": SecretRef(env="SHOPIFY_KEY")}
    if driver == "amazon":
        return {"sellerId": "A1", "marketplace": "DE"}
    return {}


def manifest(name: str, driver: str = "shopware6", **kw: Any) -> Manifest:
    file = kw.pop("file", f"{name}.yaml")
    kw.setdefault("display_name", name)
    kw.setdefault("credentials", credentials(driver))
    return Manifest(name=name, driver=driver, source=SourceLocation(file, 1, 1), **kw)


def load_result(
    manifests: Iterable[Manifest],
    *,
    failed: Iterable[str] = (),
    root_ok: bool = True,
    root: str | Path = "connections.d",
) -> LoadResult:
    ms = tuple(manifests)
    failed_files = frozenset(failed)
    return LoadResult(
        root=str(root),
        manifests=tuple(m for m in ms if m.source.file not in failed_files),
        diagnostics=(),
        files=tuple(sorted({m.source.file for m in ms} | failed_files)),
        failed_files=failed_files,
        root_ok=root_ok,
    )


def write_manifest(
    root: Path,
    name: str,
    driver: str = "shopware6",
    *,
    display_name: str | None = None,
    enabled: bool = True,
    settings: str = "",
    extra: str = "",
    credentials_yaml: str | None = None,
) -> Path:
    """A manifest file as a user writes it (YAML text), for emulator/CLI tests."""
    creds = credentials_yaml
    if creds is None:
        creds = {
            "shopware6": "    url: https://shop.example.com\n    accessKeyId: SWIA1\n"
            "    secretAccessKey: {secretRef: {env: SW_SECRET}}\n",
            "tradebyte": "    merchantNumber: '123'\n    shopName: shop\n    restUsername: rest\n"
            "    restPassword: {secretRef: {env: TB_REST}}\n    sftpUsername: sftp\n"
            "    sftpPassword: {secretRef: {env: TB_SFTP}}\n",
            "shopify": "    shopUrl: shop.myshopify.com\n"
            "    apiKey: {secretRef: {env: SHOPIFY_KEY}}\n",
            "amazon": "    sellerId: A1\n    marketplace: DE\n",
        }.get(driver, "")
    text = (
        "apiVersion: chanops/v1\nkind: Connection\nmetadata:\n"
        f"  name: {name}\nspec:\n  driver: {driver}\n"
        f"  displayName: {display_name or name}\n  enabled: {'true' if enabled else 'false'}\n"
    )
    if creds:
        text += "  credentials:\n" + creds
    if settings:
        text += "  settings:\n" + settings
    text += extra
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path
