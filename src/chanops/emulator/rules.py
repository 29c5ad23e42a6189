"""The emulated platform's own per-driver rules (pure: no I/O).

The emulator plays an independent platform, so it keeps its own table of what each
driver's credentials look like (from the platform documentation) and never
imports chanops's manifest schemas: if the two disagree, tests show it.

Every check returns a `RuleViolation` (error code, message, field path) or None; the
app turns a violation into a `{error, message, field}` response.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

FieldType = Literal["string", "boolean", "object"]

AUTOMATION_VALUES = ("never", "2m", "5m", "10m", "15m", "20m", "30m", "60m")
AUTOMATION_KEYS = ("orderDownload", "returnDownload")
DEFAULT_AUTOMATION = {"orderDownload": "never", "returnDownload": "never"}

# A secret value with this prefix is rejected by the (emulated) marketplace.
INVALID_PREFIX = "invalid"
# Emulator-only: a connection whose credentials hold a value with this prefix gets sync
# jobs that fail, so tests can exercise sync.failed without a broken marketplace.
FAIL_SYNC_PREFIX = "fail-sync"


@dataclass(frozen=True, slots=True)
class CredField:
    name: str
    type: FieldType = "string"
    secret: bool = False
    required: bool = False
    immutable: bool = False  # cannot change after create
    oauth: bool = False  # written only by the authorize flow
    fmt: str | None = None  # "https-url" | "host" | "email"
    children: tuple[CredField, ...] = ()


@dataclass(frozen=True, slots=True)
class DriverRules:
    name: str
    title: str
    creatable: bool
    credentials: tuple[CredField, ...] = ()
    # dotted settings paths whose values come from the marketplace's data model and so
    # are known only after the first successful sync
    model_settings: tuple[str, ...] = ()
    # settings lists whose items lock once a sync has succeeded with them
    locking_settings: tuple[str, ...] = ()
    # every setting waits for the first sync (Magento 2), not only `model_settings`
    all_settings_after_sync: bool = False
    # boolean settings offered only when the account has these plugins installed
    plugin_settings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # boolean settings that may be true only while another one is (setting -> its lock)
    locked_unless: Mapping[str, str] = field(default_factory=dict)
    how_created: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def _sfcc_instance(required: bool) -> CredField:
    return CredField(
        "staging" if required else "production",
        type="object",
        required=required,
        children=(
            CredField("url", required=True, fmt="https-url"),
            CredField("clientId", required=True),
            CredField("clientPassword", secret=True, required=True),
            CredField("username", required=True, fmt="email"),
            CredField("userPassword", secret=True, required=True),
            # needed beside the client ID and password; expires after one year
            CredField("accessToken", secret=True, required=True),
        ),
    )


DRIVERS: dict[str, DriverRules] = {
    d.name: d
    for d in (
        DriverRules(
            "shopware6",
            "Shopware 6",
            True,
            (
                CredField("url", required=True, fmt="https-url"),
                CredField("accessKeyId", required=True),
                CredField("secretAccessKey", secret=True, required=True),
            ),
            # the API cannot detect the shop's default language
            model_settings=("defaultLanguage",),
            locking_settings=("priceRules",),
            plugin_settings={"klarna": ("klarna", "shopware"), "ratepay": ("ratepay", "shopware")},
        ),
        DriverRules(
            "shopify",
            "Shopify",
            False,
            (CredField("shopUrl", fmt="host"), CredField("apiKey", secret=True)),
            how_created="Shopify connections are created by installing the Actindo app "
            "from the Shopify app store; adopt the existing connection instead",
        ),
        DriverRules(
            "sfcc",
            "Salesforce Commerce Cloud",
            True,
            (
                CredField("productionMode", type="boolean"),
                _sfcc_instance(True),
                _sfcc_instance(False),
            ),
        ),
        DriverRules(
            "amazon",
            "Amazon",
            True,
            (
                CredField("sellerId", required=True),
                CredField("marketplace", required=True, immutable=True),
                CredField("accessToken", secret=True, oauth=True),
            ),
        ),
        DriverRules(
            "magento2",
            "Magento 2",
            True,
            (
                CredField("url", required=True, fmt="https-url"),
                CredField("username", required=True),
                CredField("password", secret=True, required=True),
                CredField("accessToken", secret=True),
            ),
            all_settings_after_sync=True,
            locked_unless={
                "orderStates.notifyCustomerAboutInvoice": "orderStates.createInvoiceWhenPaid"
            },
        ),
        DriverRules(
            "tradebyte",
            "Tradebyte",
            True,
            (
                CredField("merchantNumber", required=True),
                CredField("shopName", required=True),
                CredField("restUsername", required=True),
                CredField("restPassword", secret=True, required=True),
                CredField("sftpUsername", required=True),
                CredField("sftpPassword", secret=True, required=True),
                CredField("testApi", type="boolean"),
            ),
            model_settings=("salesChannels", "languages"),
        ),
        DriverRules(
            "actindo-pos",
            "Actindo POS",
            False,
            (),
            how_created="Actindo POS connections are created by creating a POS store in "
            "Actindo; adopt the existing connection instead",
        ),
        # Created by hand, or by the vendor's app from the BigCommerce App Store (a
        # marketplace install here); either way one connection per store hash.
        DriverRules(
            "bigcommerce",
            "BigCommerce",
            True,
            (
                CredField("storeHash", required=True),
                CredField("accessToken", secret=True, required=True),
            ),
        ),
    )
}

ALL_DRIVERS: tuple[str, ...] = tuple(DRIVERS)


@dataclass(frozen=True, slots=True)
class RuleViolation:
    status: int
    code: str
    message: str
    field: str | None = None


def _bad(code: str, message: str, field: str | None = None, status: int = 422) -> RuleViolation:
    return RuleViolation(status, code, message, field)


_HTTPS_URL = re.compile(r"^https://[^\s/?#]+[^\s]*$")
_HOST = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_format(f: CredField, value: str, path: str) -> RuleViolation | None:
    if f.fmt == "https-url" and not _HTTPS_URL.match(value):
        return _bad("invalid_credentials", f"{path} must be an https URL", path)
    if f.fmt == "host" and not _HOST.match(value):
        return _bad(
            "invalid_credentials", f"{path} must be a host name without scheme or path", path
        )
    if f.fmt == "email" and not _EMAIL.match(value):
        return _bad("invalid_credentials", f"{path} must be an e-mail address", path)
    return None


def check_credentials(
    fields: Sequence[CredField],
    creds: Mapping[str, Any],
    *,
    prefix: str = "credentials",
    require: bool = True,
    production_mode: bool | None = None,
) -> RuleViolation | None:
    """Shape, types, formats and the marketplace's verdict on secrets.

    `require=False` skips the required-field check (used for nested optional objects).
    """
    known = {f.name: f for f in fields}
    for key in creds:
        if key not in known:
            return _bad(
                "invalid_credentials", f"unknown credential field {prefix}.{key}", f"{prefix}.{key}"
            )
    for f in fields:
        path = f"{prefix}.{f.name}"
        value = creds.get(f.name)
        needed = f.required or (f.name == "production" and production_mode is True)
        if value is None:
            if require and needed:
                return _bad("invalid_credentials", f"{path} is required", path)
            continue
        bad = _check_value(f, value, path, needed=needed)
        if bad:
            return bad
    return None


def _check_value(f: CredField, value: Any, path: str, *, needed: bool) -> RuleViolation | None:
    """One present credential field: its type, format, and the marketplace's verdict."""
    if f.type == "boolean":
        if not isinstance(value, bool):
            return _bad("invalid_credentials", f"{path} must be a boolean", path)
        return None
    if f.type == "object":
        if not isinstance(value, dict):
            return _bad("invalid_credentials", f"{path} must be an object", path)
        return check_credentials(f.children, value, prefix=path)
    return _check_string(f, value, path, needed=needed)


def _check_string(f: CredField, value: Any, path: str, *, needed: bool) -> RuleViolation | None:
    if not isinstance(value, str):
        return _bad("invalid_credentials", f"{path} must be a string", path)
    if not value and needed:
        return _bad("invalid_credentials", f"{path} must not be empty", path)
    bad_format = _check_format(f, value, path) if value else None
    if bad_format:
        return bad_format
    if f.secret and value.startswith(INVALID_PREFIX):
        return _bad(
            "invalid_credentials",
            f"the marketplace rejected {path}: authentication failed",
            path,
        )
    return None


def validate_credentials(driver: str, creds: Mapping[str, Any]) -> RuleViolation | None:
    rules = DRIVERS[driver]
    mode = creds.get("productionMode") if driver == "sfcc" else None
    problem = check_credentials(
        rules.credentials, creds, production_mode=mode if isinstance(mode, bool) else None
    )
    if problem:
        return problem
    if driver == "magento2" and creds.get("accessToken"):
        return _bad(
            "invalid_credentials",
            "credentials.accessToken must be left empty for now (Magento 2 token auth is "
            "not supported)",
            "credentials.accessToken",
        )
    return None


def secret_paths(fields: Sequence[CredField], prefix: str = "") -> list[str]:
    out: list[str] = []
    for f in fields:
        if f.children:
            out.extend(secret_paths(f.children, f"{prefix}{f.name}."))
        elif f.secret:
            out.append(prefix + f.name)
    return out


@dataclass(frozen=True, slots=True)
class _Redaction:
    """How `redact` treats one level of credential fields, precomputed per driver."""

    # field name -> (nested level if the field has children, whether it is secret)
    fields: Mapping[str, tuple[_Redaction | None, bool]]
    secrets: tuple[str, ...]  # in field order: added as null when absent


def _redaction(fields: Sequence[CredField]) -> _Redaction:
    by_name: dict[str, tuple[_Redaction | None, bool]] = {}
    for f in fields:
        by_name[f.name] = (_redaction(f.children) if f.children else None, f.secret)
    secrets = tuple(dict.fromkeys(f.name for f in fields if f.secret))
    return _Redaction(by_name, secrets)


_REDACTIONS: dict[str, _Redaction] = {
    name: _redaction(d.credentials) for name, d in DRIVERS.items()
}


def _redact(plan: _Redaction, data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields = plan.fields
    for key, value in data.items():
        f = fields.get(key)
        if f is None:
            out[key] = value
        elif f[0] is not None and isinstance(value, Mapping):
            out[key] = _redact(f[0], value)
        elif f[1]:
            out[key] = None
        else:
            out[key] = value
    for name in plan.secrets:
        if name not in out:
            out[name] = None  # unset secrets read as null too: no set/unset oracle
    return out


def redact(driver: str, creds: Mapping[str, Any]) -> dict[str, Any]:
    """Credentials as the API returns them: every secret field present but null."""
    return _redact(_REDACTIONS[driver], creds)


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


def sync_would_fail(creds: Mapping[str, Any]) -> bool:
    return any(s.startswith(FAIL_SYNC_PREFIX) for s in strings_in(creds))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch."""
    if not isinstance(patch, Mapping):
        return patch
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def get_path(data: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def check_immutables(
    driver: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> RuleViolation | None:
    for f in DRIVERS[driver].credentials:
        if f.immutable and before.get(f.name) != after.get(f.name):
            return _bad(
                "immutable_field",
                f"credentials.{f.name} cannot change after the connection is created",
                f"credentials.{f.name}",
            )
    return None


def oauth_written(driver: str, patch: Mapping[str, Any]) -> RuleViolation | None:
    for f in DRIVERS[driver].credentials:
        if f.oauth and f.name in patch:
            return _bad(
                "immutable_field",
                f"credentials.{f.name} is set by the platform's authorize (OAuth) flow and "
                "cannot be written through the API",
                f"credentials.{f.name}",
            )
    return None


def check_model_settings(
    driver: str, before: Mapping[str, Any], after: Mapping[str, Any], synced: bool
) -> RuleViolation | None:
    if synced:
        return None
    rules = DRIVERS[driver]
    if rules.all_settings_after_sync and after != before:
        changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
        return _bad(
            "unknown_value",
            f"settings.{changed[0]}: {rules.title} settings can be configured only after the "
            "connection is established and synchronised (the first successful sync)",
            f"settings.{changed[0]}",
        )
    for dotted in rules.model_settings:
        value = get_path(after, dotted)
        if value is not None and value != get_path(before, dotted):
            return _bad(
                "unknown_value",
                f"settings.{dotted}: the marketplace's data model is not known yet; this "
                "value can be set after the first successful sync",
                f"settings.{dotted}",
            )
    return None


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def check_locked(
    driver: str, after: Mapping[str, Any], locked: Mapping[str, set[str]]
) -> RuleViolation | None:
    for dotted in DRIVERS[driver].locking_settings:
        kept = get_path(after, dotted)
        kept_set = {canonical(v) for v in kept} if isinstance(kept, list) else set()
        for item in sorted(locked.get(dotted, set())):
            if item not in kept_set:
                return _bad(
                    "locked_setting",
                    f"settings.{dotted}: {item} cannot be removed because a sync has already "
                    "created its price attribute",
                    f"settings.{dotted}",
                )
    return None


def check_plugins(
    driver: str, before: Mapping[str, Any], after: Mapping[str, Any], installed: Sequence[str]
) -> RuleViolation | None:
    """A plugin integration turned on while the account lacks one of its plugins."""
    for dotted, plugins in DRIVERS[driver].plugin_settings.items():
        if get_path(after, dotted) is not True or get_path(before, dotted) is True:
            continue
        missing = [p for p in plugins if p not in installed]
        if missing:
            return _bad(
                "plugin_not_installed",
                f"settings.{dotted} is offered only when the account has the "
                f"{' and '.join(plugins)} plugins installed; missing: {', '.join(missing)}",
                f"settings.{dotted}",
            )
    return None


def check_locked_unless(driver: str, after: Mapping[str, Any]) -> RuleViolation | None:
    """A setting set true while the setting that unlocks it is not (Magento 2's invoices)."""
    for dotted, unlock in DRIVERS[driver].locked_unless.items():
        if get_path(after, dotted) is True and get_path(after, unlock) is not True:
            return _bad(
                "locked_setting",
                f"settings.{dotted} is locked unless settings.{unlock} is true",
                f"settings.{dotted}",
            )
    return None


def check_automation(automation: Any) -> RuleViolation | None:
    if not isinstance(automation, Mapping):
        return _bad("invalid_request", "automation must be an object", "automation", 400)
    for key, value in automation.items():
        if key not in AUTOMATION_KEYS:
            return _bad("invalid_request", f"unknown automation field {key}", f"automation.{key}")
        if value not in AUTOMATION_VALUES:
            return _bad(
                "invalid_request",
                f"automation.{key} must be one of {', '.join(AUTOMATION_VALUES)}",
                f"automation.{key}",
            )
    return None
