"""The `notifications:` section of chanops.yaml: providers and routes.

`parse_notifications(path, text)` is pure: it reads the YAML node tree (so every
problem names file:line:col and the field) and returns plain data. Credentials are
never inline: a provider names the *file* holding its URL, HMAC key or password, and an
inline `url`, `secret` or `password` is refused. `read_credentials` (the one function
here that does I/O) reads those files at start; a missing or empty file is refused with
the position of the field that names it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from chanops.errors import ConfigError
from chanops.notify._notices import EVENT_TYPES
from chanops.notify._selector import Selector, SelectorError, parse_selector

__all__ = [
    "KINDS",
    "SEVERITIES",
    "Credentials",
    "FileRef",
    "NotificationsConfig",
    "ProviderConfig",
    "RateLimit",
    "Route",
    "Severity",
    "parse_notifications",
    "read_credentials",
    "yaml_problem",
]

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error")
KINDS = ("slack", "msteams", "webhook", "email")
DEFAULT_RATE = "20/1m"
DEFAULT_TIMEOUT_S = 10.0
_MAX_PORT = 65535
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)?\s*(s|m|h)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}
# Fields that would put a credential in chanops.yaml itself, and the field to use instead.
_INLINE = {"url": "urlFile", "secret": "secretFile", "password": "passwordFile"}
_COMMON = {"name", "kind", "rateLimit", "timeout"}
_FIELDS = {
    "slack": _COMMON | {"urlFile"},
    "msteams": _COMMON | {"urlFile"},
    "webhook": _COMMON | {"urlFile", "secretFile"},
    "email": _COMMON
    | {"host", "port", "username", "passwordFile", "from", "to", "caFile", "subjectPrefix"},
}
_REQUIRED = {
    "slack": ("urlFile",),
    "msteams": ("urlFile",),
    "webhook": ("urlFile", "secretFile"),
    "email": ("host", "from", "to"),
}


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file named in the config, with where it was named (for errors)."""

    path: Path
    where: str  # "chanops.yaml:12:16: notifications.providers[0].urlFile"


@dataclass(frozen=True, slots=True)
class RateLimit:
    messages: int
    per_seconds: float


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: str
    where: str
    url_file: FileRef | None = None
    secret_file: FileRef | None = None
    password_file: FileRef | None = None
    ca_file: FileRef | None = None
    host: str | None = None
    port: int = 587
    username: str | None = None
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    subject_prefix: str = "[chanops]"
    rate_limit: RateLimit = RateLimit(20, 60.0)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def files(self) -> list[tuple[str, FileRef]]:
        """(what, file) for every credential file this provider reads."""
        named = [
            ("webhook URL file", self.url_file),
            ("HMAC key file", self.secret_file),
            ("SMTP password file", self.password_file),
        ]
        return [(what, ref) for what, ref in named if ref is not None]


@dataclass(frozen=True, slots=True)
class Route:
    providers: tuple[str, ...]
    severity: Severity = "warning"
    events: tuple[str, ...] = ("*",)
    selector: Selector | None = None
    where: str = ""


@dataclass(frozen=True, slots=True)
class NotificationsConfig:
    providers: tuple[ProviderConfig, ...] = ()
    routes: tuple[Route, ...] = ()

    def provider(self, name: str) -> ProviderConfig | None:
        return next((p for p in self.providers if p.name == name), None)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a provider's files hold; never logged, never rendered."""

    url: str | None = None
    secret: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    values: tuple[str, ...] = field(default=())


# -- the node tree ----------------------------------------------------------------------


class _Doc:
    """Positions and typed reads over one YAML node tree."""

    def __init__(self, path: str) -> None:
        self.path = path

    def at(self, node: yaml.Node, dotted: str) -> str:
        mark = node.start_mark
        return f"{self.path}:{mark.line + 1}:{mark.column + 1}: {dotted}"

    def fail(self, node: yaml.Node, dotted: str, message: str) -> ConfigError:
        return ConfigError(f"{self.at(node, dotted)}: {message}")

    def mapping(self, node: yaml.Node, dotted: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, dotted, "expected a mapping")
        found: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            name = str(key.value)
            if name in found:
                raise self.fail(key, f"{dotted}.{name}", "given twice")
            found[name] = (key, value)
        return found

    def sequence(self, node: yaml.Node, dotted: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, dotted, "expected a list")
        return list(node.value)

    def text(self, node: yaml.Node, dotted: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
            raise self.fail(node, dotted, "expected a non-empty string")
        return str(node.value).strip()

    def texts(self, node: yaml.Node, dotted: str) -> tuple[str, ...]:
        if isinstance(node, yaml.ScalarNode):
            return (self.text(node, dotted),)
        items = self.sequence(node, dotted)
        if not items:
            raise self.fail(node, dotted, "expected at least one entry")
        return tuple(self.text(n, f"{dotted}[{i}]") for i, n in enumerate(items))


def yaml_problem(path: str, exc: yaml.YAMLError) -> str:
    """A config file that is not YAML, in one line: `file:line:col: problem` (chanops.yaml
    as a whole reads through this too)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
    return f"{where}: not valid YAML: {problem}"


def parse_notifications(path: str, text: str) -> NotificationsConfig | None:
    """The `notifications:` section of the config file `path` (None when absent)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(path, exc)) from None
    doc = _Doc(path)
    if not isinstance(root, yaml.MappingNode):
        return None
    section = doc.mapping(root, "").get("notifications")
    if section is None or (isinstance(section[1], yaml.ScalarNode) and not section[1].value):
        return None
    fields = doc.mapping(section[1], "notifications")
    _no_unknown(doc, fields, {"providers", "routes"}, "notifications")
    providers: list[ProviderConfig] = []
    if "providers" in fields:
        items = doc.sequence(fields["providers"][1], "notifications.providers")
        for i, node in enumerate(items):
            provider = _provider(doc, node, f"notifications.providers[{i}]")
            if any(p.name == provider.name for p in providers):
                raise doc.fail(node, f"notifications.providers[{i}].name", "given twice")
            providers.append(provider)
    names = {p.name for p in providers}
    routes: list[Route] = []
    if "routes" in fields:
        items = doc.sequence(fields["routes"][1], "notifications.routes")
        routes = [_route(doc, n, f"notifications.routes[{i}]", names) for i, n in enumerate(items)]
    return NotificationsConfig(tuple(providers), tuple(routes))


def _no_unknown(
    doc: _Doc, fields: dict[str, tuple[yaml.Node, yaml.Node]], known: set[str], dotted: str
) -> None:
    for name, (key, _) in fields.items():
        if name in _INLINE and name not in known:
            raise doc.fail(
                key,
                f"{dotted}.{name}",
                f"credentials are never written in chanops.yaml: put the value in a file "
                f"readable only by chanops and name it with `{_INLINE[name]}`",
            )
        if name not in known:
            raise doc.fail(
                key,
                f"{dotted}.{name}",
                f"unknown field; expected one of {', '.join(sorted(known))}",
            )


def _provider(doc: _Doc, node: yaml.Node, dotted: str) -> ProviderConfig:
    fields = doc.mapping(node, dotted)
    if "kind" not in fields:
        raise doc.fail(node, f"{dotted}.kind", f"missing; expected one of {', '.join(KINDS)}")
    kind = doc.text(fields["kind"][1], f"{dotted}.kind")
    if kind not in KINDS:
        raise doc.fail(
            fields["kind"][1],
            f"{dotted}.kind",
            f"unknown provider kind {kind!r}; expected one of {', '.join(KINDS)}",
        )
    _no_unknown(doc, fields, _FIELDS[kind], dotted)
    for required in ("name", *_REQUIRED[kind]):
        if required not in fields:
            raise doc.fail(node, f"{dotted}.{required}", f"missing (a {kind} provider needs it)")
    name = doc.text(fields["name"][1], f"{dotted}.name")
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name):
        raise doc.fail(
            fields["name"][1], f"{dotted}.name", "expected lowercase letters, digits and '-'"
        )

    def file(key: str) -> FileRef | None:
        if key not in fields:
            return None
        value = fields[key][1]
        return FileRef(Path(doc.text(value, f"{dotted}.{key}")), doc.at(value, f"{dotted}.{key}"))

    def get(key: str, read: Callable[[yaml.Node, str], Any], default: Any) -> Any:
        return read(fields[key][1], f"{dotted}.{key}") if key in fields else default

    return ProviderConfig(
        name=name,
        kind=kind,
        where=doc.at(node, dotted),
        url_file=file("urlFile"),
        secret_file=file("secretFile"),
        password_file=file("passwordFile"),
        ca_file=file("caFile"),
        host=get("host", doc.text, None),
        port=get("port", lambda n, d: _port(doc, n, d), 587),
        username=get("username", doc.text, None),
        sender=get("from", doc.text, None),
        recipients=get("to", doc.texts, ()),
        subject_prefix=get("subjectPrefix", doc.text, "[chanops]"),
        rate_limit=get("rateLimit", lambda n, d: _rate(doc, n, d), _rate_of(DEFAULT_RATE)),
        timeout_s=get("timeout", lambda n, d: _seconds(doc, n, d), DEFAULT_TIMEOUT_S),
    )


def _port(doc: _Doc, node: yaml.Node, dotted: str) -> int:
    text = doc.text(node, dotted)
    if not text.isdigit() or not 0 < int(text) <= _MAX_PORT:
        raise doc.fail(node, dotted, "expected a port number (1-65535), e.g. 587")
    return int(text)


def _rate_of(text: str) -> RateLimit:
    m = _RATE.match(text)
    if m is None or int(m.group(1)) < 1:
        raise ValueError(text)
    return RateLimit(int(m.group(1)), int(m.group(2) or 1) * _UNIT_S[m.group(3)])


def _rate(doc: _Doc, node: yaml.Node, dotted: str) -> RateLimit:
    try:
        return _rate_of(doc.text(node, dotted))
    except ValueError:
        raise doc.fail(node, dotted, "expected messages per period, e.g. 20/1m or 5/30s") from None


def _seconds(doc: _Doc, node: yaml.Node, dotted: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", doc.text(node, dotted))
    if m is None or float(m.group(1)) <= 0:
        raise doc.fail(node, dotted, "expected a duration such as 10s or 500ms")
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def _route(doc: _Doc, node: yaml.Node, dotted: str, names: set[str]) -> Route:
    fields = doc.mapping(node, dotted)
    _no_unknown(doc, fields, {"providers", "severity", "events", "selector"}, dotted)
    if "providers" not in fields:
        raise doc.fail(node, f"{dotted}.providers", "missing: name the providers to send to")
    providers = doc.texts(fields["providers"][1], f"{dotted}.providers")
    for i, name in enumerate(providers):
        if name not in names:
            raise doc.fail(
                fields["providers"][1],
                f"{dotted}.providers[{i}]",
                f"no provider named {name!r} in notifications.providers",
            )
    severity: Severity = "warning"
    if "severity" in fields:
        value = doc.text(fields["severity"][1], f"{dotted}.severity")
        if value not in SEVERITIES:
            raise doc.fail(
                fields["severity"][1],
                f"{dotted}.severity",
                f"unknown severity {value!r}; expected one of {', '.join(SEVERITIES)}",
            )
        severity = value
    events: tuple[str, ...] = ("*",)
    if "events" in fields:
        events = doc.texts(fields["events"][1], f"{dotted}.events")
        for i, pattern in enumerate(events):
            if not fnmatch.filter(EVENT_TYPES, pattern):
                raise doc.fail(
                    fields["events"][1],
                    f"{dotted}.events[{i}]",
                    f"{pattern!r} matches no event type; expected one of "
                    f"{', '.join(EVENT_TYPES)} (or a pattern such as connection.*)",
                )
    selector = None
    if "selector" in fields:
        value_node = fields["selector"][1]
        try:
            selector = parse_selector(doc.text(value_node, f"{dotted}.selector"))
        except SelectorError as exc:
            raise doc.fail(value_node, f"{dotted}.selector", f"bad label selector: {exc}") from None
    return Route(providers, severity, events, selector, doc.at(node, dotted))


# -- the files (I/O, at start) ----------------------------------------------------------


def _read(ref: FileRef, what: str, base: Path) -> str:
    path = ref.path if ref.path.is_absolute() else base / ref.path
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{ref.where}: cannot read the {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{ref.where}: the {what} {path} is not UTF-8 text") from None
    if not value:
        raise ConfigError(f"{ref.where}: the {what} {path} is empty")
    return value


def _check_url(url: str, ref: FileRef) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        # The message never repeats the URL: for Slack and Teams it is the credential.
        raise ConfigError(f"{ref.where}: the file does not hold an http(s):// URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConfigError(
            f"{ref.where}: the URL is plain http:// to a host that is not this machine; "
            "use https:// (the URL and the messages would cross the network unencrypted)"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_credentials(provider: ProviderConfig, base: Path) -> Credentials:
    """Read a provider's credential files (relative paths: from the config's directory)."""
    url = secret = password = None
    if provider.url_file is not None:
        url = _read(provider.url_file, "webhook URL file", base)
        _check_url(url, provider.url_file)
    if provider.secret_file is not None:
        secret = _read(provider.secret_file, "HMAC key file", base)
    if provider.password_file is not None:
        password = _read(provider.password_file, "SMTP password file", base)
    ca = None
    if provider.ca_file is not None:
        ca = (
            provider.ca_file.path
            if provider.ca_file.path.is_absolute()
            else base / provider.ca_file.path
        )
        if not ca.is_file():
            raise ConfigError(f"{provider.ca_file.where}: the CA file {ca} does not exist")
    values = tuple(v for v in (url, secret, password) if v)
    return Credentials(url=url, secret=secret, password=password, ca_file=ca, values=values)


@dataclass(frozen=True, slots=True)
class LoadedNotifications:
    """The parsed section, each provider's credentials, and the file it came from."""

    config: NotificationsConfig
    credentials: dict[str, Credentials]
    path: Path

    def secret_values(self) -> list[str]:
        return [v for c in self.credentials.values() for v in c.values]


def credential_paths(provider: ProviderConfig, base: Path) -> list[tuple[str, Path]]:
    """(what, resolved path) of a provider's credential files."""
    return [
        (what, ref.path if ref.path.is_absolute() else base / ref.path)
        for what, ref in provider.files()
    ]
