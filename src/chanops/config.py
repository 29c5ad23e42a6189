"""Where chanops's settings come from: flags, then CHANOPS_* variables, then chanops.yaml.

Loaded once, at the edge (the CLI), into small frozen dataclasses. Library code never
reads the environment for configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chanops.errors import ConfigError

DEFAULT_MANIFESTS = "connections.d"
ENV_PREFIX = "CHANOPS_"
CONFIG_FILE = "chanops.yaml"


@dataclass(frozen=True, slots=True)
class PlatformSettings:
    url: str  # https://..., http://..., or local:PATH (embedded emulator)
    token: str | None  # never logged

    @property
    def is_local(self) -> bool:
        return self.url.startswith("local:")


@dataclass(frozen=True, slots=True)
class Settings:
    manifests: Path
    state: Path
    platform: PlatformSettings
    secrets_dirs: tuple[Path, ...]


def _config_file(explicit: str | None) -> Mapping[str, Any]:
    path = Path(explicit) if explicit else Path(CONFIG_FILE)
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return data


def pick(
    flag: str | None,
    env_name: str,
    file_cfg: Mapping[str, Any],
    key: str,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """First of: the flag, CHANOPS_<env_name>, the config file's `key`."""
    environ = os.environ if env is None else env
    if flag is not None:
        return flag
    value = environ.get(ENV_PREFIX + env_name)
    if value:
        return value
    from_file = file_cfg.get(key)
    return None if from_file is None else str(from_file)


def read_token(token: str | None, token_file: str | None) -> str | None:
    if token:
        return token
    if token_file:
        try:
            return Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read platform token file {token_file}: {exc.strerror}"
            ) from None
    # systemd LoadCredential=token
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / "platform-token").is_file():
        return (Path(cred_dir) / "platform-token").read_text(encoding="utf-8").strip()
    return None


def default_state_path(manifests: Path) -> Path:
    """`.chanops/state.db` beside the manifests root."""
    return manifests.resolve().parent / ".chanops" / "state.db"


def default_platform_url(manifests: Path) -> str:
    """The embedded default: the emulator in-process over SQLite beside the manifests root."""
    return "local:" + str(manifests.resolve().parent / ".chanops" / "platform.db")


def load_settings(
    *,
    manifests: str | None = None,
    state: str | None = None,
    platform: str | None = None,
    token: str | None = None,
    token_file: str | None = None,
    secrets_dirs: tuple[str, ...] = (),
    config: str | None = None,
) -> Settings:
    cfg = _config_file(config)
    manifests_path = Path(pick(manifests, "MANIFESTS", cfg, "manifests") or DEFAULT_MANIFESTS)
    state_value = pick(state, "STATE", cfg, "state")
    state_path = Path(state_value) if state_value else default_state_path(manifests_path)
    url = pick(platform, "PLATFORM_URL", cfg, "platform") or default_platform_url(manifests_path)
    tok = read_token(
        pick(token, "PLATFORM_TOKEN", cfg, "token"),
        pick(token_file, "PLATFORM_TOKEN_FILE", cfg, "tokenFile"),
    )
    dirs = (
        tuple(Path(d) for d in secrets_dirs)
        or tuple(Path(d) for d in cfg.get("secretsDirs", ()))
        or (Path("/run/secrets"), manifests_path.resolve().parent / "secrets")
    )
    return Settings(
        manifests=manifests_path,
        state=state_path,
        platform=PlatformSettings(url=url, token=tok),
        secrets_dirs=dirs,
    )
