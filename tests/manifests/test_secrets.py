"""Secret references: DESIGN.md section 6 rules, and values never in messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from chanops.errors import SecretResolutionError
from chanops.manifests import Manifest, SecretRef, SourceLocation
from chanops.manifests.secrets import check_secret_ref, iter_secret_refs, resolve_credentials


def manifest(credentials: dict[str, object], driver: str = "sfcc") -> Manifest:
    return Manifest(
        name="c1",
        driver=driver,
        display_name="c1",
        source=SourceLocation("x.yaml", 1, 1),
        credentials=credentials,
    )


def test_resolves_env_and_file(tmp_path: Path) -> None:
    (tmp_path / "client").write_text("file-secret\n")
    m = manifest(
        {
            "productionMode": False,
            "staging": {
                "url": "https://s",
                "clientPassword": SecretRef(file="client"),
                "userPassword": SecretRef(env="USER_PW"),
            },
        }
    )
    resolved = resolve_credentials(m, secrets_dirs=[tmp_path], environ={"USER_PW": "env-secret"})
    assert resolved["staging"] == {
        "url": "https://s",
        "clientPassword": "file-secret",
        "userPassword": "env-secret",
    }
    assert m.credentials["staging"]["clientPassword"] == SecretRef(file="client")  # untouched
    refs = dict(iter_secret_refs(m))
    assert refs == {
        "/credentials/staging/clientPassword": SecretRef(file="client"),
        "/credentials/staging/userPassword": SecretRef(env="USER_PW"),
    }


def test_absolute_file_inside_allowed_dir(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("v")
    m = manifest({"apiKey": SecretRef(file=str(tmp_path / "k"))}, driver="shopify")
    assert resolve_credentials(m, secrets_dirs=[tmp_path], environ={}) == {"apiKey": "v"}


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        (SecretRef(env="CHANOPS_PLATFORM_TOKEN"), "may not read CHANOPS_* variables"),
        (SecretRef(env="MISSING"), "is not set in the environment"),
        (SecretRef(file="../outside"), "must not contain '..'"),
        (SecretRef(file="/etc/hostname"), "is outside the allowed secret directories"),
        (SecretRef(file="link"), "via a symlink"),
        (SecretRef(file="absent"), "does not exist in the allowed secret directories"),
    ],
)
def test_refusals_name_connection_field_and_ref_never_value(
    tmp_path: Path, ref: SecretRef, reason: str
) -> None:
    allowed = tmp_path / "secrets"
    allowed.mkdir()
    (tmp_path / "outside").write_text("TOPSECRET")
    (allowed / "link").symlink_to(tmp_path / "outside")
    m = manifest({"apiKey": ref}, driver="shopify")
    env = {"CHANOPS_PLATFORM_TOKEN": "TOPSECRET"}
    with pytest.raises(SecretResolutionError) as info:
        resolve_credentials(m, secrets_dirs=[allowed], environ=env)
    text = str(info.value)
    assert text.startswith(f"connection c1: spec.credentials.apiKey: secretRef {ref.describe()} ")
    assert reason in text
    assert "TOPSECRET" not in text


def test_check_without_resolving_allows_absent_targets(tmp_path: Path) -> None:
    assert check_secret_ref(SecretRef(file="later"), secrets_dirs=[tmp_path]) is None
    assert check_secret_ref(SecretRef(env="LATER"), secrets_dirs=[], environ={}) is None
    assert (
        check_secret_ref(SecretRef(env="LATER"), secrets_dirs=[], environ={}, must_resolve=True)
        == "is not set in the environment"
    )


def test_literal_is_listed_as_a_string() -> None:
    m = manifest({"url": "https://x", "accessKeyId": "a", "secretAccessKey": "lit"}, "shopware6")
    assert list(iter_secret_refs(m)) == [("/credentials/secretAccessKey", "lit")]
