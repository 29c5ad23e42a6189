"""Which events need a person, and what to tell them: one message per streak.

The event sink carries everything chanops does; `classify` keeps what needs a
person and says whether it *opens* a failure streak (`connection.failed`,
`platform.unreachable`, ...), *closes* one (the connection written again, the platform
answering), or stands alone (`daemon.crashed`). `Streaks` remembers the open ones: the
first event of a streak is a message, the rest are not, and the recovery is one more
message to the providers that got the failure. Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "EVENT_TYPES",
    "Classified",
    "Notice",
    "Streaks",
    "classify",
]

Severity = Literal["info", "warning", "error"]

# The event types a route can name, failures first then their recoveries.
EVENT_TYPES = (
    "connection.failed",
    "connection.recovered",
    "guard.blocked",
    "guard.released",
    "platform.unreachable",
    "platform.reachable",
    "git.fetch_failed",
    "git.fetch_recovered",
    "sync.failed",
    "sync.stuck",
    "sync.recovered",
    "auth.reauthorization_required",
    "auth.restored",
    "daemon.crashed",
    "git.revision",
)

# Events that say a connection was written successfully: its failure streak is over.
_WRITTEN = frozenset(
    f"connection.{past}"
    for past in (
        "recovered",
        "created",
        "updated",
        "adopted",
        "recreated",
        "enabled",
        "disabled",
        "deleted",
        "orphaned",
    )
)
# Guards that hold a whole root, not one connection.
_ROOT_GUARDS = frozenset({"root-unreadable", "unhealthy-root", "mass-delete"})

_GUARD_ADVICE = {
    "mass-delete": "More connections would be deleted than --max-delete allows, so none "
    "were. If that is intended, delete in smaller steps or raise --max-delete for one "
    "run; if not, restore the missing manifests. `chanops plan` lists them.",
    "frozen": "The manifest file that defines this connection does not load, so the "
    "connection is frozen (no update, no delete). `chanops validate` names the problem.",
    "unhealthy-root": "A deletion waits while another manifest file fails to load (the "
    "gone file may be half of a move). Fix the failing file; `chanops validate` names it.",
    "root-unreadable": "The manifests root is missing, unreadable or holds no manifest, "
    "so nothing is deleted. Check the directory (or the git checkout) and its permissions.",
    "immutable": "The change needs the connection recreated (an immutable field such as "
    "the driver changed). Revert the change, or run with --allow-recreate.",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One message to send: what happened, where, and what to do."""

    type: str  # one of EVENT_TYPES (or notify.test)
    severity: Severity
    title: str
    text: str
    action: str  # what to do
    connection: str | None = None
    file: str | None = None
    revision: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    recovery: bool = False
    at: str = ""  # RFC 3339 UTC, set by the notifier


@dataclass(frozen=True, slots=True)
class Classified:
    """What an event means for notifications."""

    type: str
    role: Literal["open", "close", "once", "close_guards"]
    key: str = ""


_FIXED = {
    "platform.unreachable": Classified("platform.unreachable", "open", "platform"),
    "platform.reachable": Classified("platform.reachable", "close", "platform"),
    "git.fetch_failed": Classified("git.fetch_failed", "open", "git"),
    "git.follow_failed": Classified("git.fetch_failed", "open", "git"),
    "git.fetch_recovered": Classified("git.fetch_recovered", "close", "git"),
    "auth.reauthorization_required": Classified("auth.reauthorization_required", "open", "auth"),
    "auth.restored": Classified("auth.restored", "close", "auth"),
    "daemon.crashed": Classified("daemon.crashed", "once"),
}
# event -> (type, role, streak family): one streak per connection and family
_PER_CONNECTION: dict[str, tuple[str, Literal["open", "close"], str]] = {
    "connection.failed": ("connection.failed", "open", "connection"),
    "connection.parked": ("connection.failed", "open", "connection"),
    "sync.failed": ("sync.failed", "open", "sync"),
    "sync.stuck": ("sync.stuck", "open", "sync"),
    "sync.completed": ("sync.recovered", "close", "sync"),
    **{name: ("connection.recovered", "close", "connection") for name in _WRITTEN},
}


def _guard(fields: Mapping[str, Any]) -> Classified:
    rule = str(fields.get("rule") or "")
    conn = str(fields.get("connection") or "")
    key = f"guard:{rule}" if rule in _ROOT_GUARDS else f"guard:{rule}:{conn}"
    return Classified("guard.blocked", "open", key)


def _full_reconcile(fields: Mapping[str, Any]) -> Classified | None:
    """A full reconcile that blocked nothing releases every guard."""
    if fields.get("kind") == "full" and not fields.get("blocked"):
        return Classified("guard.released", "close_guards")
    return None


def _revision(fields: Mapping[str, Any]) -> Classified | None:
    """A reconcile at a git revision; the notifier tells each revision once."""
    if not fields.get("revision"):
        return None
    return Classified("git.revision", "once", f"revision:{fields['revision']}")


_SPECIAL = {
    "guard.blocked": _guard,
    "reconcile.completed": _full_reconcile,
    "reconcile.started": _revision,
}


def classify(name: str, fields: Mapping[str, Any]) -> Classified | None:
    """The notification meaning of an event, or None when it needs nobody."""
    fixed = _FIXED.get(name)
    if fixed is not None:
        return fixed
    per = _PER_CONNECTION.get(name)
    if per is not None:
        conn = fields.get("connection")
        return Classified(per[0], per[1], f"{per[2]}:{conn}") if conn else None
    special = _SPECIAL.get(name)
    return special(fields) if special is not None else None


class Streaks:
    """Open failure streaks: key -> the providers told about it."""

    def __init__(self) -> None:
        self._open: dict[str, frozenset[str]] = {}

    def is_open(self, key: str) -> bool:
        return key in self._open

    def open(self, key: str, providers: frozenset[str]) -> None:
        self._open[key] = providers

    def close(self, key: str) -> frozenset[str] | None:
        """End a streak: the providers to tell it recovered (None: no streak was open)."""
        return self._open.pop(key, None)

    def close_prefix(self, prefix: str) -> list[tuple[str, frozenset[str]]]:
        closed = [(k, p) for k, p in self._open.items() if k.startswith(prefix)]
        for key, _ in closed:
            del self._open[key]
        return closed

    def __len__(self) -> int:
        return len(self._open)


# -- wording ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wording:
    severity: Severity
    title: str
    text: str
    action: str


def _where(fields: Mapping[str, Any]) -> str:
    return str(fields.get("connection") or "?")


def word(kind: Classified, name: str, fields: Mapping[str, Any]) -> Wording:
    """The severity and the words of a message (fields already redacted)."""
    conn = _where(fields)
    error = str(fields.get("error") or fields.get("reason") or "")
    if kind.type == "connection.failed":
        action = str(fields.get("action") or "write")
        return Wording(
            "error",
            f"Connection {conn}: {action} failed",
            f"chanops could not {action} connection {conn}"
            + (f" ({fields['driver']})" if fields.get("driver") else "")
            + (f": {error}" if error else "."),
            "If the platform refused the change (a 4xx answer such as a validation error), "
            "fix the manifest: chanops waits for the manifest to change. Other failures are "
            "retried with backoff. `chanops plan` shows what chanops will do next.",
        )
    if kind.type == "connection.recovered":
        return Wording(
            "info",
            f"Connection {conn}: recovered",
            f"Connection {conn} was written successfully again.",
            "Nothing: the failure streak is over.",
        )
    if kind.type == "guard.blocked":
        return _guard_wording(fields, conn)
    if kind.type == "guard.released":
        return Wording(
            "info",
            "Guard released",
            "A full reconcile finished with no action held back by a safety guard.",
            "Nothing: the actions held back have gone ahead or are no longer planned.",
        )
    return _other(kind.type, fields, conn, error)


def _guard_wording(fields: Mapping[str, Any], conn: str) -> Wording:
    rule = str(fields.get("rule") or "guard")
    action = str(fields.get("action") or "change")
    reason = str(fields.get("reason") or "")
    subject = "deletions held back" if rule in _ROOT_GUARDS else f"connection {conn}"
    return Wording(
        "warning",
        f"Guard held ({rule}): {subject}",
        f"The {rule} guard held back the {action} of connection {conn}"
        + (f": {reason}" if reason else "."),
        _GUARD_ADVICE.get(rule, "`chanops plan` shows the blocked actions and why."),
    )


_OTHER: dict[str, tuple[Severity, str, str, str]] = {
    "platform.unreachable": (
        "error",
        "Platform unreachable",
        "chanops cannot reach the platform; no connection is being reconciled.",
        "Check the platform URL, the network and the platform's health. chanops retries "
        "at least every 30 s and catches up as soon as the platform answers.",
    ),
    "platform.reachable": (
        "info",
        "Platform reachable again",
        "The platform answers again; chanops is catching up.",
        "Nothing: the outage is over.",
    ),
    "git.fetch_failed": (
        "warning",
        "Git fetch failing",
        "chanops cannot fetch the manifests repository; it keeps using the last good "
        "checkout, so new commits are not applied.",
        "Check the repository URL, its credentials and the ref; /status shows the error.",
    ),
    "git.fetch_recovered": (
        "info",
        "Git fetch recovered",
        "chanops fetches the manifests repository again.",
        "Nothing: new commits are applied again.",
    ),
    "sync.failed": (
        "warning",
        "Sync failed: {conn}",
        "The sync job of connection {conn} failed.",
        "Look at the sync job on the platform; the next sync runs as scheduled.",
    ),
    "sync.stuck": (
        "warning",
        "Sync stuck: {conn}",
        "The sync job of connection {conn} has run far longer than expected.",
        "Look at the sync job on the platform; chanops keeps following it.",
    ),
    "sync.recovered": (
        "info",
        "Sync recovered: {conn}",
        "A sync job of connection {conn} completed again.",
        "Nothing: syncs succeed again.",
    ),
    "auth.reauthorization_required": (
        "error",
        "Authorisation required",
        "The platform no longer accepts chanops's authorisation (the refresh token was "
        "revoked or expired); nothing is reconciled until it is renewed.",
        "Run `chanops login` with the daemon's --state, --platform and client id "
        "(docs/core1.md): the daemon resumes by itself, no restart.",
    ),
    "auth.restored": (
        "info",
        "Authorisation restored",
        "chanops is authorised again and reconciles.",
        "Nothing: the authorisation is renewed.",
    ),
    "git.revision": (
        "info",
        "Applying git revision {revision}",
        "chanops reconciles the manifests at git revision {revision}: {subject}",
        "Nothing: for information (the first reconcile of each new commit).",
    ),
    "daemon.crashed": (
        "error",
        "chanops daemon crashed",
        "The daemon's reconcile loop died and the process is exiting (code 70).",
        "Its supervisor restarts it; if it crashes again, the log line `daemon.crashed` "
        "has the error to report.",
    ),
}


def _other(type_: str, fields: Mapping[str, Any], conn: str, error: str) -> Wording:
    severity, title, text, action = _OTHER[type_]
    revision = str(fields.get("revision") or "")[:12]
    subject = str(fields.get("subject") or "")
    text = text.format(conn=conn, revision=revision, subject=subject)
    title = title.replace("{revision}", revision)
    if error and severity != "info":
        text = f"{text} Error: {error}"
    return Wording(severity, title.format(conn=conn), text, action)
