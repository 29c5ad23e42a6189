"""Secret references: the rules of docs/security.md, and values never in messages."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from chanops.errors import ConfigError, SecretResolutionError
from chanops.manifests import Manifest, SecretRef, SourceLocation
from chanops.manifests.secrets import (
    MIN_SECRET_CHARS,
    OperatorCredential,
    check_secret_ref,
    default_secrets_dirs,
    guard_operator_credentials,
    iter_secret_refs,
    resolve_credentials,
    resolve_secret_values,
)


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
    (tmp_path / "k").write_text("value-of-k")
    m = manifest({"apiKey": SecretRef(file=str(tmp_path / "k"))}, driver="shopify")
    assert resolve_credentials(m, secrets_dirs=[tmp_path], environ={}) == {"apiKey": "value-of-k"}


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


def test_the_only_default_secrets_dir_is_beside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "connections.d"
    assert default_secrets_dirs(root) == (tmp_path.resolve() / "secrets",)
    assert Path("/run/secrets") not in default_secrets_dirs(Path("/manifests"))


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    m = manifest({"apiKey": SecretRef(file="pipe")}, driver="shopify")
    outcome: list[BaseException] = []

    def resolve() -> None:
        try:
            resolve_credentials(m, secrets_dirs=[tmp_path], environ={})
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=resolve, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert time.monotonic() - started < 5
    (exc,) = outcome
    assert isinstance(exc, SecretResolutionError)
    assert "is not a regular file" in str(exc)
    assert check_secret_ref(SecretRef(file="pipe"), secrets_dirs=[tmp_path], must_resolve=True) == (
        "is not a regular file (a FIFO, device or directory is refused)"
    )


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    m = manifest({"apiKey": SecretRef(file="dir")}, driver="shopify")
    with pytest.raises(SecretResolutionError, match="is not a regular file"):
        resolve_credentials(m, secrets_dirs=[tmp_path], environ={})


@pytest.mark.parametrize("value", ["", "1", "Sh0rt!", "x" * (MIN_SECRET_CHARS - 1)])
def test_a_short_secret_is_refused_naming_connection_and_field_never_value(
    tmp_path: Path, value: str
) -> None:
    (tmp_path / "short").write_text(value + "\n")
    for ref, env in [
        (SecretRef(env="SHORTONE"), {"SHORTONE": value}),
        (SecretRef(file="short"), {}),
    ]:
        m = manifest({"apiKey": ref}, driver="shopify")
        for resolve in (resolve_credentials, resolve_secret_values):
            with pytest.raises(SecretResolutionError) as info:
                resolve(m, secrets_dirs=[tmp_path], environ=env)
            text = str(info.value)
            assert text.startswith(
                f"connection c1: spec.credentials.apiKey: secretRef {ref.describe()} "
            )
            assert f"shorter than {MIN_SECRET_CHARS} characters" in text
            if value:
                assert f" {value} " not in text and f"({value})" not in text
        why = check_secret_ref(ref, secrets_dirs=[tmp_path], environ=env, must_resolve=True)
        assert why is not None and "shorter than" in why
        # Without must_resolve (plain validate), nothing is read.
        assert check_secret_ref(ref, secrets_dirs=[tmp_path], environ=env) is None


def test_eight_characters_are_enough(tmp_path: Path) -> None:
    m = manifest({"apiKey": SecretRef(env="EIGHT")}, driver="shopify")
    values = resolve_secret_values(m, secrets_dirs=[], environ={"EIGHT": "8" * MIN_SECRET_CHARS})
    assert values == {"/credentials/apiKey": "8" * MIN_SECRET_CHARS}


# -- operator credentials -------------------------------------------------------------


def _token(tmp_path: Path) -> tuple[Path, Path, OperatorCredential]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (tmp_path / "run").mkdir()
    token = tmp_path / "run" / "platform-token"
    token.write_text("TOKEN-VALUE-1234\n")
    return secrets, token, OperatorCredential("the platform token file", token, "--token-file")


def test_a_credential_inside_a_secrets_dir_refuses_to_start(tmp_path: Path) -> None:
    secrets, _, _ = _token(tmp_path)
    inside = secrets / "platform-token"
    inside.write_text("TOKEN-VALUE-1234\n")
    cred = OperatorCredential("the platform token file", inside, "--token-file")
    with pytest.raises(ConfigError) as info:
        guard_operator_credentials([cred], [secrets])
    text = str(info.value)
    assert f"the platform token file {inside} lies inside the secrets directory {secrets}" in text
    assert "--secrets-dir" in text and "--token-file" in text
    assert "TOKEN-VALUE" not in text


def test_a_secrets_dir_reached_through_a_symlink_is_seen_through(tmp_path: Path) -> None:
    secrets, _, _ = _token(tmp_path)
    (secrets / "platform-token").write_text("TOKEN-VALUE-1234\n")
    alias = tmp_path / "alias"
    alias.symlink_to(secrets)
    cred = OperatorCredential("the platform token file", alias / "platform-token", "--token-file")
    with pytest.raises(ConfigError, match="lies inside the secrets directory"):
        guard_operator_credentials([cred], [secrets])
    with pytest.raises(ConfigError, match="lies inside the secrets directory"):
        guard_operator_credentials(
            [OperatorCredential("the platform token file", secrets / "platform-token", "x")],
            [alias],
        )


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_a_link_to_a_credential_in_a_secrets_dir_refuses_to_start(
    tmp_path: Path, kind: str
) -> None:
    secrets, token, cred = _token(tmp_path)
    link = secrets / "innocent-name"
    if kind == "hardlink":
        os.link(token, link)
    else:
        link.symlink_to(token)
    with pytest.raises(ConfigError) as info:
        guard_operator_credentials([cred], [secrets])
    assert f"holds {link}, a link to the platform token file {token}" in str(info.value)


def test_a_link_made_after_startup_is_refused_when_read(tmp_path: Path) -> None:
    secrets, token, cred = _token(tmp_path)
    guard_operator_credentials([cred], [secrets])  # a clean layout starts
    os.link(token, secrets / "later")
    m = manifest({"apiKey": SecretRef(file="later")}, driver="shopify")
    with pytest.raises(SecretResolutionError) as info:
        resolve_credentials(m, secrets_dirs=[secrets], environ={})
    assert "is the platform token file, which only chanops itself may read" in str(info.value)
    assert "TOKEN-VALUE" not in str(info.value)


def test_a_credential_outside_every_secrets_dir_is_fine(tmp_path: Path) -> None:
    secrets, _, cred = _token(tmp_path)
    (secrets / "ok").write_text("an-ordinary-secret\n")
    absent = OperatorCredential("the state store", tmp_path / "state" / "state.db", "--state")
    guard_operator_credentials([cred, absent], [secrets, tmp_path / "missing"])
    m = manifest({"apiKey": SecretRef(file="ok")}, driver="shopify")
    assert resolve_credentials(m, secrets_dirs=[secrets], environ={}) == {
        "apiKey": "an-ordinary-secret"
    }
