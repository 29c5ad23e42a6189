"""Where chanops's settings come from: flags, then CHANOPS_* variables, then chanops.yaml.

Loaded once, at the edge (the CLI), into small frozen dataclasses. Library code never
reads the environment for configuration.

`load_settings` also refuses settings that would hand an operator credential to whoever
writes a manifest (one inside a secrets directory), or send the platform token in clear
text across a network (`http://` to a host that is not loopback, without
`--insecure-http`). Problems that do not stop chanops (a token file others can read)
come back as `Settings.warnings` for the command to print.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from chanops.errors import ConfigError

if TYPE_CHECKING:
    # Imported where used: it loads the manifests package, which `chanops emulator` and
    # `--help` do not need.
    from chanops.manifests.secrets import OperatorCredential
    from chanops.notify.config import LoadedNotifications
    from chanops.rpcprofile import Profile

DEFAULT_MANIFESTS = "connections.d"
ENV_PREFIX = "CHANOPS_"
CONFIG_FILE = "chanops.yaml"
# A --state that starts so is a PostgreSQL DSN (chanops.state.factory.SCHEMES).
STATE_DSN_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True, slots=True)
class PlatformSettings:
    url: str  # https://..., http://..., or local:PATH (embedded emulator)
    token: str | None  # never logged
    # OAuth instead of a static token (chanops login): the registered client; its token
    # set lives in the state store.
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)  # never logged
    # --profile core1: Core1's RPC convention, the shipped mapping with chanops.yaml's
    # `core1Profile:` over it; None: the REST contract.
    profile: Profile | None = None

    @property
    def is_local(self) -> bool:
        return self.url.startswith("local:")


@dataclass(frozen=True, slots=True)
class Settings:
    manifests: Path
    state: Path
    platform: PlatformSettings
    secrets_dirs: tuple[Path, ...]
    insecure_http: bool = False
    # One line each, for the command to print (stderr): nothing here stops chanops.
    warnings: tuple[str, ...] = ()
    # `--state postgresql://...`: the shared PostgreSQL store (docs/ha.md). `state` is
    # then the default path, which only locates the git checkouts.
    state_dsn: str | None = None

    @property
    def state_location(self) -> str | Path:
        """What `chanops.state.factory.open_store` opens: the DSN, else the path."""
        return self.state_dsn if self.state_dsn is not None else self.state


def _config_file(explicit: str | None) -> Mapping[str, Any]:
    path = Path(explicit) if explicit else Path(CONFIG_FILE)
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        from chanops.notify.config import yaml_problem

        raise ConfigError(yaml_problem(str(path), exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
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


TRUE_WORDS = ("1", "true", "yes", "on")


def read_token(token: str | None, token_file: str | None) -> str | None:
    return _token_source(token, token_file)[0]


def _token_source(
    token: str | None, token_file: str | None
) -> tuple[str | None, OperatorCredential | None]:
    """(the token, the file it came from as an operator credential, if a file)."""
    from chanops.manifests.secrets import OperatorCredential

    if token:
        return token, None
    if token_file:
        try:
            value = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read platform token file {token_file}: {exc.strerror}"
            ) from None
        return value, OperatorCredential(
            "the platform token file",
            Path(token_file),
            "--token-file / CHANOPS_PLATFORM_TOKEN_FILE",
        )
    # systemd LoadCredential=token
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / "platform-token").is_file():
        path = Path(cred_dir) / "platform-token"
        return path.read_text(encoding="utf-8").strip(), OperatorCredential(
            "the platform token file", path, "LoadCredential= ($CREDENTIALS_DIRECTORY)"
        )
    return None, None


def token_file_warning(path: Path, what: str = "the platform token file") -> str | None:
    """A warning when others than chanops's user may read the token (or client secret) file.

    Group-readable counts only when the group is not chanops's own: Kubernetes mounts
    secrets root-owned, mode 0440, group fsGroup (the pod's group), and that is the only
    way a non-root pod reads them.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    others = bool(mode & stat.S_IROTH)
    group = bool(mode & stat.S_IRGRP) and st.st_gid != os.getegid()
    if not (others or group):
        return None
    who = "other users" if others else "members of its group"
    return f"{what} {path} is readable by {who} (mode {mode:04o}): chmod 600 {path}"


def is_loopback_url(url: str) -> bool:
    """True when `url`'s host is this machine (localhost, 127.0.0.0/8, ::1)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def state_files(state: Path) -> tuple[Path, ...]:
    """The state store's files: database, its WAL and shared memory, HMAC key.

    The names `chanops.state.store` gives them (tests/state checks they agree); spelled
    out here so reading settings does not import SQLite before `plan` forks its workers.
    """
    key = state.with_name(state.name.removesuffix(".db") + ".key")
    return (state, Path(f"{state}-wal"), Path(f"{state}-shm"), key)


def default_state_path(manifests: Path) -> Path:
    """`.chanops/state.db` beside the manifests root."""
    return manifests.resolve().parent / ".chanops" / "state.db"


def default_platform_url(manifests: Path) -> str:
    """The embedded default: the emulator in-process over SQLite beside the manifests root."""
    return "local:" + str(manifests.resolve().parent / ".chanops" / "platform.db")


def load_settings(  # noqa: PLR0913 (one keyword per flag of the common options)
    *,
    manifests: str | None = None,
    state: str | None = None,
    platform: str | None = None,
    token: str | None = None,
    token_file: str | None = None,
    secrets_dirs: tuple[str, ...] = (),
    config: str | None = None,
    insecure_http: bool | None = None,
    credentials: Sequence[OperatorCredential] = (),
    client_id: str | None = None,
    client_secret_file: str | None = None,
    profile: str | None = None,
) -> Settings:
    """Settings from flags, environment and config file, checked (ConfigError).

    `credentials`: the command's other operator credential files (git ssh key, webhook
    secret, ...); with the token file, the state store and the embedded platform's
    database they must all stay out of reach of `secretRef.file`.
    """
    from chanops.manifests.secrets import guard_operator_credentials

    cfg = _config_file(config)
    manifests_path = Path(pick(manifests, "MANIFESTS", cfg, "manifests") or DEFAULT_MANIFESTS)
    state_value = pick(state, "STATE", cfg, "state")
    state_dsn = state_value if state_value and state_value.startswith(STATE_DSN_SCHEMES) else None
    state_path = (
        Path(state_value) if state_value and not state_dsn else default_state_path(manifests_path)
    )
    url = pick(platform, "PLATFORM_URL", cfg, "platform") or default_platform_url(manifests_path)
    tok, token_cred = _token_source(
        pick(token, "PLATFORM_TOKEN", cfg, "token"),
        pick(token_file, "PLATFORM_TOKEN_FILE", cfg, "tokenFile"),
    )
    oauth_id, oauth_secret, secret_cred = _oauth_client(client_id, client_secret_file, cfg)
    insecure = bool(insecure_http) or (
        (pick(None, "INSECURE_HTTP", cfg, "insecureHttp") or "").strip().lower() in TRUE_WORDS
    )
    sends_secret = tok or oauth_secret
    if url.startswith("http://") and sends_secret and not insecure and not is_loopback_url(url):
        # Refused before any connection is made: the first request would carry the token.
        raise ConfigError(
            f"platform URL {url} is plain http:// to a host that is not this machine: the "
            "token would cross the network unencrypted. Use https://, or pass "
            "--insecure-http (CHANOPS_INSECURE_HTTP=1, insecureHttp: true) if the link is "
            "protected some other way"
        )
    dirs, dirs_setting = _secrets_dirs(secrets_dirs, cfg, manifests_path)
    guarded = [*credentials, *_own_files(token_cred, state_path, url, cfg, config)]
    if secret_cred is not None:
        guarded.append(secret_cred)
    guard_operator_credentials(guarded, dirs, dirs_setting=dirs_setting)
    return Settings(
        manifests=manifests_path,
        state=state_path,
        platform=PlatformSettings(
            url=url,
            token=tok,
            client_id=oauth_id,
            client_secret=oauth_secret,
            profile=_profile(profile, cfg, config),
        ),
        secrets_dirs=dirs,
        insecure_http=insecure,
        warnings=_credential_warnings(token_cred, secret_cred, bool(tok), oauth_id),
        state_dsn=state_dsn,
    )


def _credential_warnings(
    token_cred: OperatorCredential | None,
    secret_cred: OperatorCredential | None,
    static_token: bool,
    client_id: str | None,
) -> tuple[str, ...]:
    """Credential files others may read; a static token that the OAuth client overrides."""
    warnings: list[str] = []
    if token_cred is not None and token_cred.setting.startswith("--token-file"):
        warnings.append(token_file_warning(token_cred.path) or "")
    if secret_cred is not None:
        warnings.append(token_file_warning(secret_cred.path, "the OAuth client secret file") or "")
        if static_token:
            warnings.append(
                f"both a static platform token and an OAuth client id ({client_id}) are set: "
                "chanops uses the OAuth client and ignores the token"
            )
    return tuple(w for w in warnings if w)


PROFILES = ("rest", "core1")


def _profile(flag: str | None, cfg: Mapping[str, Any], config: str | None) -> Profile | None:
    """--profile (CHANOPS_PROFILE, `profile:`): None for REST, else the loaded profile."""
    from chanops.rpcprofile import load_profile

    name = pick(flag, "PROFILE", cfg, "profile") or "rest"
    if name not in PROFILES:
        raise ConfigError(f"profile {name[:40]!r}: expected one of {', '.join(PROFILES)}")
    if name == "rest":
        return None
    source = f"{config or CONFIG_FILE}: core1Profile"
    return load_profile(cfg.get("core1Profile"), source=source)


# Core1's rule for the client id of an app registration.
CLIENT_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,30}")


def _oauth_client(
    client_id: str | None, secret_file: str | None, cfg: Mapping[str, Any]
) -> tuple[str | None, str | None, OperatorCredential | None]:
    """The OAuth client id, its secret (read from its file) and that file as a credential."""
    from chanops.manifests.secrets import OperatorCredential

    cid = pick(client_id, "CLIENT_ID", cfg, "clientId")
    path = pick(secret_file, "CLIENT_SECRET_FILE", cfg, "clientSecretFile")
    if cid is None and path is None:
        return None, None, None
    if cid is None:
        raise ConfigError(
            "--client-secret-file needs --client-id (CHANOPS_CLIENT_ID, clientId in the "
            "config file)"
        )
    if not CLIENT_ID.fullmatch(cid):
        raise ConfigError(
            f"client id {cid[:40]!r}: expected 4 to 31 letters, digits or underscores, "
            "starting with a letter (the rule of Core1's app registration)"
        )
    if path is None:
        raise ConfigError(
            f"--client-id {cid} needs --client-secret-file FILE (CHANOPS_CLIENT_SECRET_FILE): "
            "the client secret shown once when the app was registered"
        )
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read client secret file {path}: {reason}") from None
    if not secret:
        raise ConfigError(f"client secret file {path} is empty")
    setting = "--client-secret-file / CHANOPS_CLIENT_SECRET_FILE"
    return cid, secret, OperatorCredential("the OAuth client secret file", Path(path), setting)


def _secrets_dirs(
    flags: tuple[str, ...], cfg: Mapping[str, Any], manifests: Path
) -> tuple[tuple[Path, ...], str]:
    """The directories secretRef.file may read, and the setting that named them."""
    from chanops.manifests.secrets import default_secrets_dirs

    if flags:
        return tuple(Path(d) for d in flags), "--secrets-dir"
    if cfg.get("secretsDirs"):
        return (
            tuple(Path(d) for d in cfg["secretsDirs"]),
            "secretsDirs in the config file (or pass --secrets-dir)",
        )
    return (
        default_secrets_dirs(manifests),
        "--secrets-dir (the default is secrets/ beside the manifests root)",
    )


def _own_files(
    token_cred: OperatorCredential | None,
    state: Path,
    url: str,
    cfg: Mapping[str, Any],
    config: str | None,
) -> list[OperatorCredential]:
    """chanops's own credential files: token file, state store, embedded platform, config."""
    from chanops.manifests.secrets import OperatorCredential

    own = [] if token_cred is None else [token_cred]
    own += [
        OperatorCredential("the state store", f, "--state / CHANOPS_STATE")
        for f in state_files(state)
    ]
    if url.startswith("local:") and url not in ("local:", "local::memory:"):
        # The embedded platform's database holds every connection's credentials.
        own.append(
            OperatorCredential(
                "the embedded platform's database",
                Path(url[len("local:") :]),
                "--platform / CHANOPS_PLATFORM_URL",
            )
        )
    if "token" in cfg:  # the token written into the config file itself
        own.append(
            OperatorCredential(
                "the config file (it holds the token)", Path(config or CONFIG_FILE), "--config"
            )
        )
    return own


def load_notifications(
    config: str | None, secrets_dirs: Sequence[Path] = ()
) -> LoadedNotifications | None:
    """The `notifications:` section of the config file, its credential files read.

    ConfigError (file:line:col: field: problem) for an unknown provider kind, a missing
    or empty credential file, an inline URL or password, a bad selector. Like the token
    file, the credential files must stay out of reach of `secretRef.file`.
    """
    from chanops.manifests.secrets import OperatorCredential, guard_operator_credentials
    from chanops.notify.config import (
        LoadedNotifications,
        credential_paths,
        parse_notifications,
        read_credentials,
    )

    path = Path(config) if config else Path(CONFIG_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    parsed = parse_notifications(str(path), text)
    if parsed is None:
        return None
    base = path.resolve().parent
    credentials = {p.name: read_credentials(p, base) for p in parsed.providers}
    guarded = [
        OperatorCredential(
            f"the {what} of notification provider {p.name}",
            file,
            "notifications.providers in the config file",
        )
        for p in parsed.providers
        for what, file in credential_paths(p, base)
    ]
    guard_operator_credentials(guarded, secrets_dirs)
    return LoadedNotifications(parsed, credentials, path)
