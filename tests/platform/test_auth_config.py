"""--client-id and --client-secret-file (and their CHANOPS_* and chanops.yaml forms)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chanops.config import load_settings
from chanops.errors import ConfigError


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "client-secret"
    path.write_text("s3cret-value\n")
    path.chmod(0o600)
    return path


def _load(tmp_path: Path, **kw: object) -> object:
    return load_settings(
        manifests=str(tmp_path / "connections.d"),
        platform="https://ws.example.com",
        config=None,
        **kw,  # type: ignore[arg-type]
    )


def test_the_client_id_and_secret_reach_the_platform_settings(
    tmp_path: Path, secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = _load(tmp_path, client_id="chanops_1", client_secret_file=str(secret))
    platform = settings.platform  # type: ignore[attr-defined]
    assert (platform.client_id, platform.client_secret) == ("chanops_1", "s3cret-value")
    assert "s3cret" not in repr(settings)


def test_a_client_secret_file_others_may_read_is_a_warning(
    tmp_path: Path, secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = _load(tmp_path, client_id="chanops_1", client_secret_file=str(secret))
    assert settings.warnings == ()  # type: ignore[attr-defined]
    secret.chmod(0o644)
    settings = _load(tmp_path, client_id="chanops_1", client_secret_file=str(secret))
    (warning,) = settings.warnings  # type: ignore[attr-defined]
    assert warning.startswith("the OAuth client secret file ")
    assert "readable by other users (mode 0644): chmod 600" in warning
    assert "s3cret" not in warning


def test_a_static_token_beside_a_client_id_is_a_warning(
    tmp_path: Path, secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = _load(
        tmp_path, client_id="chanops_1", client_secret_file=str(secret), token="static-tok"
    )
    (warning,) = settings.warnings  # type: ignore[attr-defined]
    assert "uses the OAuth client and ignores the token" in warning
    assert "static-tok" not in warning


def test_the_environment_names_them_too(
    tmp_path: Path, secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHANOPS_CLIENT_ID", "fromenv")
    monkeypatch.setenv("CHANOPS_CLIENT_SECRET_FILE", str(secret))
    platform = _load(tmp_path).platform  # type: ignore[attr-defined]
    assert platform.client_id == "fromenv"
    assert platform.client_secret == "s3cret-value"


@pytest.mark.parametrize(
    ("client_id", "secret_file", "message"),
    [
        ("1abc", "SECRET", "client id '1abc': expected 4 to 31 letters, digits or underscores"),
        ("abc", "SECRET", "client id 'abc'"),
        ("a" * 32, "SECRET", "expected 4 to 31"),
        ("has-dash", "SECRET", "client id 'has-dash'"),
        ("chanops", None, "--client-id chanops needs --client-secret-file"),
        (None, "SECRET", "--client-secret-file needs --client-id"),
        ("chanops", "MISSING", "cannot read client secret file"),
        ("chanops", "EMPTY", "is empty"),
    ],
)
def test_bad_oauth_settings_are_one_clear_error(
    tmp_path: Path,
    secret: Path,
    monkeypatch: pytest.MonkeyPatch,
    client_id: str | None,
    secret_file: str | None,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").write_text("\n")
    files = {
        "SECRET": str(secret),
        "MISSING": str(tmp_path / "nope"),
        "EMPTY": str(tmp_path / "empty"),
    }
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, client_id=client_id, client_secret_file=files.get(secret_file or ""))
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_the_client_secret_never_goes_over_plain_http_to_another_host(
    tmp_path: Path, secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="plain http://"):
        load_settings(
            manifests=str(tmp_path / "connections.d"),
            platform="http://ws.example.com",
            client_id="chanops",
            client_secret_file=str(secret),
        )


def test_the_client_secret_file_may_not_sit_in_a_secrets_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    inside = secrets_dir / "client-secret"
    inside.write_text("s3cret-value")
    with pytest.raises(ConfigError, match="OAuth client secret file"):
        load_settings(
            manifests=str(tmp_path / "connections.d"),
            platform="https://ws.example.com",
            client_id="chanops",
            client_secret_file=str(inside),
            secrets_dirs=(str(secrets_dir),),
        )
