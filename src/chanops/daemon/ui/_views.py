"""What each page shows, built from the /status document (pure: dicts in, dicts out).

The routes (`_app.py`) read the daemon's state once per change into a `Snapshot` of
rows; every page is a function of that snapshot and the request's query. Nothing here
reads a clock (callers pass `now`), the network or a file, so the page logic is tested
in-process with plain dicts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
ATTENTION_SHOWN = 50  # the overview lists this many; the rest is a link to the list
LABEL_SUGGESTIONS = 200  # label selectors the list's filter suggests at most

# A connection's state in one word, worst first: the list sorts and filters by it.
STATES = (
    "failing",
    "stalled",
    "blocked",
    "frozen",
    "waiting",
    "pending",
    "removing",
    "converged",
    "unmanaged",
)
_WAITING = frozenset(
    {"AwaitingAuthorization", "AwaitingMarketplaceSetup", "AwaitingInitialSync", "Suspended"}
)
_REAUTHORIZATION = "ReauthorizationRequired"  # chanops.daemon.auth.REASON
_SORT_KEYS = ("name", "driver", "state", "id", "lastSync", "nextSync")


def conditions(raw: Iterable[Any]) -> list[dict[str, str]]:
    """Conditions as dicts with the Kubernetes field names, whatever /status carries.

    Typed conditions come as {type, status, reason, message, lastTransitionTime}; a
    store written before they were typed holds bare names, which mean "this holds".
    """
    out = []
    for c in raw:
        if isinstance(c, Mapping):
            out.append(
                {
                    "type": str(c.get("type", "")),
                    "status": str(c.get("status", "True")),
                    "reason": str(c.get("reason", "")),
                    "message": str(c.get("message", "")),
                    "lastTransitionTime": str(c.get("lastTransitionTime", "")),
                }
            )
        else:
            out.append(
                {
                    "type": str(c),
                    "status": "True",
                    "reason": str(c),
                    "message": "",
                    "lastTransitionTime": "",
                }
            )
    return out


def holding(conds: Sequence[Mapping[str, str]]) -> list[str]:
    """The condition types that hold, `Ready` left out (it is the summary)."""
    return [c["type"] for c in conds if c["status"] == "True" and c["type"] != "Ready"]


def _last_significant(events: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    e: Mapping[str, Any]
    for e in reversed(events):
        name = str(e.get("event", ""))
        if name == "guard.blocked" or name.startswith("connection."):
            return e
    return {}


def _trouble(entry: Mapping[str, Any], held: Sequence[str]) -> tuple[str, str] | None:
    """Failing, stalled or blocked, from the retry state and the last connection event."""
    backoff = entry.get("backoff") or {}
    last = _last_significant(entry.get("events") or ())
    if "Stalled" in held or backoff.get("untilManifestChanges"):
        return "stalled", str(backoff.get("error") or "refused until the manifest changes")
    if backoff.get("error"):
        return "failing", str(backoff["error"])
    if last.get("event") == "connection.failed":
        return "failing", str(last.get("error") or "failed")
    if last.get("event") == "guard.blocked":
        return "blocked", str(last.get("reason") or "a safety rule held an action back")
    return None


def state_of(entry: Mapping[str, Any], held: Sequence[str]) -> tuple[str, str]:
    """(state, why) of one /status connection entry.

    While chanops's own grant is refused (the banner's "Authorisation required") a
    failed write is that refusal's doing, not the connection's: it waits, as /status's
    AwaitingAuthorization condition says (stalled, blocked and frozen still show).
    """
    trouble = _trouble(entry, held)
    if trouble is not None and not (trouble[0] == "failing" and _login_awaited(entry)):
        return trouble
    waiting = [c for c in held if c in _WAITING]
    if entry.get("frozen") or "Frozen" in held:
        found = ("frozen", "its manifest file fails to load: no update, no delete")
    elif waiting:
        found = ("waiting", ", ".join(waiting))
    elif entry.get("desired") is None:
        found = ("removing", "removed from the manifests")
    elif entry.get("observed") is None:
        found = ("pending", "not on the platform yet")
    else:
        found = ("converged", "")
    return found


def _login_awaited(entry: Mapping[str, Any]) -> bool:
    """Whether the entry carries the AwaitingAuthorization of chanops's own refused
    grant (chanops.daemon.auth adds it; a marketplace's has another reason)."""
    return any(
        c["type"] == "AwaitingAuthorization"
        and c["status"] == "True"
        and c["reason"] == _REAUTHORIZATION
        for c in conditions(entry.get("conditions") or ())
    )


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the connections list: managed (by name) or unmanaged (by id)."""

    name: str
    href: str
    managed: bool
    driver: str
    display_name: str
    labels: Mapping[str, str]
    enabled: bool | None
    state: str
    why: str
    conditions: tuple[str, ...]
    connection_id: int | None
    file: str | None
    last_sync: str
    last_sync_outcome: str
    next_sync: str
    platform_status: str
    search: str = field(repr=False, default="")

    def to_view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "href": self.href,
            "managed": self.managed,
            "driver": self.driver,
            "displayName": self.display_name,
            "labels": dict(self.labels),
            "enabled": self.enabled,
            "state": self.state,
            "why": self.why,
            "conditions": list(self.conditions),
            "id": self.connection_id,
            "file": self.file,
            "lastSync": self.last_sync,
            "lastSyncOutcome": self.last_sync_outcome,
            "nextSync": self.next_sync,
            "platformStatus": self.platform_status,
        }


def managed_row(entry: Mapping[str, Any]) -> Row:
    desired = entry.get("desired") or {}
    observed = entry.get("observed") or {}
    held = holding(conditions(entry.get("conditions") or ()))
    state, why = state_of(entry, held)
    last = entry.get("lastSync") or {}
    name = str(entry["name"])
    display = str(desired.get("displayName") or observed.get("name") or "")
    enabled = desired.get("enabled")
    if enabled is None and observed:
        enabled = observed.get("status") == "active"
    return Row(
        name=name,
        href=f"connections/{quote(name, safe='')}",
        managed=True,
        driver=str(desired.get("driver") or observed.get("driver") or ""),
        display_name=display,
        labels=dict(desired.get("labels") or {}),
        enabled=enabled,
        state=state,
        why=why,
        conditions=tuple(held),
        connection_id=observed.get("id") or desired.get("connectionId"),
        file=entry.get("file"),
        last_sync=str(last.get("at") or ""),
        last_sync_outcome=str(last.get("outcome") or ""),
        next_sync=str(entry.get("nextSync") or ""),
        platform_status=str(observed.get("status") or ""),
        search=f"{name}\n{display}".casefold(),
    )


def unmanaged_row(conn: Mapping[str, Any]) -> Row:
    cid = int(conn["id"])
    name = str(conn.get("name") or "")
    return Row(
        name=name,
        href=f"unmanaged/{cid}",
        managed=False,
        driver=str(conn.get("driver") or ""),
        display_name=name,
        labels={},
        enabled=conn.get("status") == "active",
        state="unmanaged",
        why="no manifest: chanops lists it and never touches it",
        conditions=(),
        connection_id=cid,
        file=None,
        last_sync="",
        last_sync_outcome="",
        next_sync="",
        platform_status=str(conn.get("status") or ""),
        search=name.casefold(),
    )


# -- the connections list -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """The list's query string, read leniently: an unknown value means "no filter"."""

    q: str = ""
    driver: str = ""
    label: str = ""
    condition: str = ""
    enabled: str = ""  # "", "true", "false"
    state: str = ""
    kind: str = ""  # "", "managed", "unmanaged"
    sort: str = "name"
    desc: bool = False
    page: int = 1
    size: int = PAGE_SIZE

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        sort = params.get("sort", "name")
        return cls(
            q=params.get("q", "").strip(),
            driver=params.get("driver", ""),
            label=params.get("label", "").strip(),
            condition=params.get("condition", ""),
            enabled=params.get("enabled", "") if params.get("enabled") in ("true", "false") else "",
            state=params.get("state", "") if params.get("state") in STATES else "",
            kind=params.get("kind", "") if params.get("kind") in ("managed", "unmanaged") else "",
            sort=sort if sort in _SORT_KEYS else "name",
            desc=params.get("order") == "desc",
            page=_int(params.get("page"), 1, 1, 1 << 30),
            size=_int(params.get("size"), PAGE_SIZE, 1, MAX_PAGE_SIZE),
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """The query as URL parameters (defaults left out), with `changes` applied."""
        values = {
            "q": self.q,
            "driver": self.driver,
            "label": self.label,
            "condition": self.condition,
            "enabled": self.enabled,
            "state": self.state,
            "kind": self.kind,
            "sort": "" if self.sort == "name" else self.sort,
            "order": "desc" if self.desc else "",
            "page": "" if self.page == 1 else str(self.page),
            "size": "" if self.size == PAGE_SIZE else str(self.size),
        }
        values.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v}

    def matches(self, row: Row) -> bool:
        return (
            (not self.q or self.q.casefold() in row.search)
            and (not self.driver or row.driver == self.driver)
            and (not self.kind or row.managed == (self.kind == "managed"))
            and (not self.state or row.state == self.state)
            and (not self.enabled or row.enabled == (self.enabled == "true"))
            and (not self.condition or self.condition in row.conditions)
            and (not self.label or _has_label(row.labels, self.label))
        )


def _int(text: str | None, default: int, low: int, high: int) -> int:
    if text is None or not text.strip().isdigit():
        return default
    return max(low, min(high, int(text)))


def _has_label(labels: Mapping[str, str], selector: str) -> bool:
    """`team=emea` matches that value; `team` matches any value of the key."""
    key, sep, value = selector.partition("=")
    key = key.strip()
    if key not in labels:
        return False
    return not sep or labels[key] == value.strip()


def _sort_key(sort: str) -> Any:
    if sort == "driver":
        return lambda r: (r.driver, r.name)
    if sort == "state":
        return lambda r: (STATES.index(r.state), r.name)
    if sort == "id":
        return lambda r: (r.connection_id is None, r.connection_id or 0, r.name)
    if sort == "lastSync":
        return lambda r: (r.last_sync == "", r.last_sync, r.name)
    if sort == "nextSync":
        return lambda r: (r.next_sync == "", r.next_sync, r.name)
    return lambda r: (r.name, r.connection_id or 0)


def select(rows: Sequence[Row], query: Query) -> list[Row]:
    """The rows the query selects, sorted (paging aside: the same for every page)."""
    selected = [r for r in rows if query.matches(r)]
    selected.sort(key=_sort_key(query.sort), reverse=query.desc)
    return selected


def listing(rows: Sequence[Row], query: Query, selected: list[Row] | None = None) -> dict[str, Any]:
    """One page of the rows the query selects, sorted, with the paging around it."""
    if selected is None:
        selected = select(rows, query)
    pages = max(1, math.ceil(len(selected) / query.size))
    page = min(query.page, pages)
    start = (page - 1) * query.size
    return {
        "rows": [r.to_view() for r in selected[start : start + query.size]],
        "total": len(selected),
        "all": len(rows),
        "page": page,
        "pages": pages,
        "first": start + 1 if selected else 0,
        "last": min(start + query.size, len(selected)),
    }


def facets(rows: Sequence[Row]) -> dict[str, list[str]]:
    """The values the list's filters offer: those present now.

    The label suggestions are every key, then `key=value` pairs up to
    `LABEL_SUGGESTIONS` in all: a label unique to each of 10,000 connections must not
    put 10,000 options on every page of the list (any selector can still be typed).
    """
    drivers = sorted({r.driver for r in rows if r.driver})
    conds = sorted({c for r in rows for c in r.conditions})
    keys = sorted({k for r in rows for k in r.labels})
    pairs = sorted({f"{k}={v}" for r in rows for k, v in r.labels.items()})
    labels = [*keys, *pairs][: max(LABEL_SUGGESTIONS, len(keys))]
    return {"drivers": drivers, "conditions": conds, "labels": labels, "states": list(STATES)}


# -- the overview ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Health:
    kind: str  # converged, reconciling, failing, unreachable, authorization, frozen, starting
    title: str
    detail: str


def health(doc: Mapping[str, Any], counts: Mapping[str, int], *, reconciling: bool) -> Health:
    """The one banner: the worst thing that is true, in the order an operator acts on it."""
    reasons = [str(r) for r in doc.get("reasons") or ()]
    platform = _platform_health(doc, reasons)
    if platform is not None:
        return platform
    failing = counts.get("failing", 0) + counts.get("stalled", 0) + counts.get("blocked", 0)
    if failing or any(r.startswith("crashed") for r in reasons):
        detail = f"{failing} connection(s) failing or held back" if failing else reasons[0]
        return Health("failing", "Failing", detail)
    errors = doc.get("manifestErrors") or ()
    if errors or counts.get("frozen", 0):
        return Health(
            "frozen",
            "Frozen manifests",
            f"{len(errors)} manifest error(s); {counts.get('frozen', 0)} connection(s) frozen",
        )
    if counts.get("authorization", 0):
        return Health(
            "authorization",
            "Authorisation needed",
            f"{counts['authorization']} connection(s) await a person's step",
        )
    if reconciling or not doc.get("ready"):
        detail = "; ".join(reasons) or "a reconcile is running"
        return Health("reconciling", "Reconciling", detail)
    return Health("converged", "Converged", "the platform matches the manifests")


def _platform_health(doc: Mapping[str, Any], reasons: Sequence[str]) -> Health | None:
    """chanops's own OAuth grant refused (not an outage, and the first thing to fix), or
    the platform unreachable; None when chanops reaches it."""
    login = [r for r in reasons if r.startswith("awaiting authorization:")]
    if login:
        return Health("authorization", "Authorisation required", login[0])
    retry = doc.get("platformRetry")
    if retry or any("platform not reachable" in r for r in reasons):
        error = str((retry or {}).get("error") or "the last resync could not list it")
        return Health("unreachable", "Platform unreachable", error)
    return None


def attention(rows: Sequence[Row], doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What needs a person: manifest errors first, then connections by how bad they are."""
    out: list[dict[str, Any]] = []
    for e in doc.get("manifestErrors") or ():
        where = f"{e.get('file')}:{e.get('line')}:{e.get('column')}"
        field_name = f" {e['field']}" if e.get("field") else ""
        out.append(
            {"kind": "manifest", "title": where, "href": None, "text": f"{field_name} {e['error']}"}
        )
    worst = [r for r in rows if r.state not in ("converged", "unmanaged", "pending", "removing")]
    worst.sort(key=lambda r: (STATES.index(r.state), r.name))
    out.extend({"kind": r.state, "title": r.name, "href": r.href, "text": r.why} for r in worst)
    return out


def overview(
    doc: Mapping[str, Any],
    rows: Sequence[Row],
    *,
    reconciles: Sequence[Mapping[str, Any]],
    reconciling: bool,
    next_resync: str,
) -> dict[str, Any]:
    states = Counter(r.state for r in rows)
    drivers = Counter(r.driver for r in rows if r.managed)
    counts = dict(states)
    counts["authorization"] = sum("AwaitingAuthorization" in r.conditions for r in rows)
    items = attention(rows, doc)
    return {
        "health": health(doc, counts, reconciling=reconciling),
        "states": [(s, states[s]) for s in STATES if states[s]],
        "drivers": sorted(drivers.items()),
        "managed": sum(r.managed for r in rows),
        "unmanaged": states["unmanaged"],
        "attention": items[:ATTENTION_SHOWN],
        "attentionMore": max(0, len(items) - ATTENTION_SHOWN),
        "reconciles": list(reversed(reconciles)),
        "lastReconcile": doc.get("lastReconcile") or {},
        "nextResync": next_resync,
        "revision": doc.get("revision"),
        "git": doc.get("git"),
    }


# -- one connection --------------------------------------------------------------------


_SYNC_EVENTS = ("sync.completed", "sync.failed", "sync.stuck", "sync.triggered")


def sync_jobs(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The recent sync jobs, newest first, each with its latest known outcome."""
    jobs: dict[Any, dict[str, Any]] = {}
    for e in events:
        name = str(e.get("event", ""))
        if name not in _SYNC_EVENTS:
            continue
        key = e.get("job_id") or f"at {e.get('timestamp')}"
        outcome = name.removeprefix("sync.")
        job = jobs.setdefault(key, {"job": e.get("job_id"), "started": e.get("timestamp")})
        job.update(
            outcome="running" if outcome == "triggered" else outcome,
            at=e.get("timestamp"),
            duration_ms=e.get("duration_ms", job.get("duration_ms")),
            error=e.get("error", job.get("error")),
        )
    return list(reversed(jobs.values()))


def connection(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The connection page's header, conditions, syncs and events (fields come apart)."""
    row = managed_row(entry)
    desired = entry.get("desired") or {}
    events = list(entry.get("events") or ())
    jobs = sync_jobs(events)
    last = entry.get("lastSync") or {}
    if last.get("job") and all(j["job"] != last["job"] for j in jobs):
        # A job older than the events kept (the initial sync a create started, a sync
        # before the daemon restarted): the state store remembers its last outcome.
        jobs.append(
            {"job": last["job"], "started": None, "outcome": last.get("outcome"), "at": None}
        )
    return {
        "row": row.to_view(),
        "desired": desired,
        "observed": entry.get("observed"),
        "conditions": conditions(entry.get("conditions") or ()),
        "backoff": entry.get("backoff"),
        "lastSync": entry.get("lastSync"),
        "nextSync": entry.get("nextSync"),
        "syncing": entry.get("syncing"),
        "syncJobs": jobs,
        "events": list(reversed(events)),
    }
