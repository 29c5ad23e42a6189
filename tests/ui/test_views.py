"""The status page's pure parts: rows, filters, the banner, fields, conditions, live feed."""

from __future__ import annotations

import asyncio
from typing import Any

from chanops.daemon.ui import _live as live
from chanops.daemon.ui import _views as views
from chanops.daemon.ui._fields import field_rows
from chanops.daemon.ui._live import LiveFeed
from chanops.events import Event, EventSink
from chanops.manifests.model import Manifest, SecretRef, SourceLocation
from chanops.platform.models import Connection
from chanops.sensitive import SENSITIVE_VALUE


def entry(name: str, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "file": f"{name}.yaml",
        "frozen": False,
        "desired": {
            "driver": "shopware6",
            "displayName": name.upper(),
            "enabled": True,
            "labels": {"team": "emea"},
            "connectionId": None,
        },
        "observed": {"id": 7, "name": name.upper(), "driver": "shopware6", "status": "active"},
        "conditions": [],
        "lastSync": None,
        "nextSync": None,
        "backoff": None,
        "events": [],
    }
    base.update(over)
    return base


def test_state_of_each_kind_of_trouble() -> None:
    def state(e: dict[str, Any]) -> str:
        return views.managed_row(e).state

    assert state(entry("a")) == "converged"
    assert state(entry("a", observed=None)) == "pending"
    assert state(entry("a", desired=None)) == "removing"
    assert state(entry("a", frozen=True)) == "frozen"
    assert state(entry("a", conditions=["AwaitingAuthorization"])) == "waiting"
    failing = {"error": "HTTP 500", "untilManifestChanges": False}
    assert state(entry("a", backoff=failing)) == "failing"
    parked = {"error": "unknown_value", "untilManifestChanges": True}
    assert state(entry("a", backoff=parked)) == "stalled"
    blocked = [{"event": "guard.blocked", "reason": "mass delete"}]
    assert state(entry("a", events=blocked)) == "blocked"
    healed = [*blocked, {"event": "connection.updated"}]
    assert state(entry("a", events=healed)) == "converged"


def test_typed_and_bare_conditions_read_alike() -> None:
    typed = {
        "type": "Stalled",
        "status": "True",
        "reason": "UnknownValue",
        "message": "no such language",
        "lastTransitionTime": "2026-12-01T10:00:00Z",
    }
    ready = {"type": "Ready", "status": "False", "reason": "UnknownValue", "message": ""}
    conds = views.conditions([typed, ready, "Suspended"])
    assert conds[0] == typed
    assert conds[2]["type"] == "Suspended" and conds[2]["status"] == "True"
    assert views.holding(conds) == ["Stalled", "Suspended"]
    assert views.managed_row(entry("a", conditions=[typed])).state == "stalled"


def rows() -> list[views.Row]:
    out = [
        views.managed_row(
            entry(
                f"shop-{i:03}",
                desired={
                    "driver": "sfcc" if i % 3 == 0 else "shopware6",
                    "displayName": f"Shop {i}",
                    "enabled": i % 2 == 0,
                    "labels": {"team": "emea" if i < 50 else "apac"},
                },
                observed={"id": 1000 - i, "name": f"Shop {i}", "status": "active"},
                conditions=["AwaitingAuthorization"] if i == 7 else [],
            )
        )
        for i in range(120)
    ]
    out.append(views.unmanaged_row({"id": 5, "name": "legacy", "driver": "amazon"}))
    return out


def test_listing_filters_sorts_and_pages() -> None:
    all_rows = rows()
    page = views.listing(all_rows, views.Query.parse({}))
    assert (page["total"], page["pages"], len(page["rows"])) == (121, 2, 100)
    assert page["rows"][0]["name"] == "legacy"  # names sort before shop-*
    second = views.listing(all_rows, views.Query.parse({"page": "2"}))
    assert [r["name"] for r in second["rows"]][-1] == "shop-119"
    assert second["first"] == 101 and second["last"] == 121

    q = views.Query.parse({"driver": "sfcc", "label": "team=emea", "enabled": "true"})
    names = [r["name"] for r in views.listing(all_rows, q)["rows"]]
    assert names == [f"shop-{i:03}" for i in range(0, 50, 6)]
    assert views.listing(all_rows, views.Query.parse({"label": "team"}))["total"] == 120
    by_cond = views.listing(all_rows, views.Query.parse({"condition": "AwaitingAuthorization"}))
    assert [r["name"] for r in by_cond["rows"]] == ["shop-007"]
    search = views.listing(all_rows, views.Query.parse({"q": "SHOP 11"}))
    assert {r["name"] for r in search["rows"]} == {
        "shop-011",
        *(f"shop-{i}" for i in range(110, 120)),
    }
    unmanaged = views.listing(all_rows, views.Query.parse({"kind": "unmanaged"}))
    assert [r["href"] for r in unmanaged["rows"]] == ["unmanaged/5"]

    by_id = views.listing(all_rows, views.Query.parse({"sort": "id", "order": "desc", "size": "3"}))
    assert [r["id"] for r in by_id["rows"]] == [1000, 999, 998]


def test_the_filters_offer_what_is_present_and_few_label_values() -> None:
    rows = [views.managed_row(entry(f"c{i}", conditions=["Suspended"])) for i in range(3)]
    shown = views.facets(rows)
    assert (shown["drivers"], shown["conditions"]) == (["shopware6"], ["Suspended"])
    assert shown["labels"] == ["team", "team=emea"]
    many = [
        views.managed_row(entry(f"c{i}", desired={"driver": "x", "labels": {"shop": f"s{i}"}}))
        for i in range(1000)
    ]
    labels = views.facets(many)["labels"]
    assert labels[0] == "shop" and len(labels) == views.LABEL_SUGGESTIONS


def test_query_reads_bad_input_as_no_filter() -> None:
    q = views.Query.parse({"page": "-3", "size": "99999", "sort": "drop table", "state": "x"})
    assert (q.page, q.size, q.sort, q.state) == (1, views.MAX_PAGE_SIZE, "name", "")
    assert q.params() == {"size": str(views.MAX_PAGE_SIZE)}
    assert views.Query.parse({"q": "a", "page": "3"}).params(page="") == {"q": "a"}


def test_health_names_the_worst_thing() -> None:
    ok = {"ready": True, "reasons": [], "manifestErrors": []}
    assert views.health(ok, {}, reconciling=False).kind == "converged"
    assert views.health(ok, {}, reconciling=True).kind == "reconciling"
    assert views.health(ok, {"authorization": 2}, reconciling=False).kind == "authorization"
    assert views.health(ok, {"frozen": 1}, reconciling=False).kind == "frozen"
    assert views.health(ok, {"failing": 1, "frozen": 1}, reconciling=False).kind == "failing"
    down = {**ok, "ready": False, "platformRetry": {"error": "connect refused"}}
    banner = views.health(down, {"failing": 3}, reconciling=True)
    assert (banner.kind, banner.detail) == ("unreachable", "connect refused")


def test_overview_lists_what_needs_attention_worst_first() -> None:
    doc = {
        "ready": True,
        "manifestErrors": [
            {"file": "bad.yaml", "line": 3, "column": 5, "field": "spec.driver", "error": "nope"}
        ],
    }
    all_rows = [
        views.managed_row(entry("w", conditions=["AwaitingMarketplaceSetup"])),
        views.managed_row(entry("f", backoff={"error": "HTTP 503"})),
        views.managed_row(entry("ok")),
    ]
    view = views.overview(doc, all_rows, reconciles=[], reconciling=False, next_resync="")
    kinds = [(a["kind"], a["title"]) for a in view["attention"]]
    assert kinds == [("manifest", "bad.yaml:3:5"), ("failing", "f"), ("waiting", "w")]
    assert view["health"].kind == "failing"
    assert dict(view["states"]) == {"failing": 1, "waiting": 1, "converged": 1}


def test_sync_jobs_keep_the_latest_outcome_of_each_job() -> None:
    events = [
        {"event": "sync.triggered", "job_id": 4, "timestamp": "t1"},
        {"event": "sync.completed", "job_id": 4, "timestamp": "t2", "duration_ms": 900},
        {"event": "sync.triggered", "job_id": 9, "timestamp": "t3"},
        {"event": "connection.updated", "timestamp": "t4"},
    ]
    jobs = views.sync_jobs(events)
    assert [(j["job"], j["outcome"]) for j in jobs] == [(9, "running"), (4, "completed")]
    assert jobs[1]["duration_ms"] == 900


def test_a_connection_page_lists_the_stored_last_sync_job_too() -> None:
    """The initial sync a create started has no event the page kept: the store has it."""
    stored = {"job": 8, "outcome": "queued", "at": None}
    page = views.connection(entry("shop", lastSync=stored))
    assert [(j["job"], j["outcome"]) for j in page["syncJobs"]] == [(8, "queued")]
    events = [{"event": "sync.completed", "job_id": 8, "timestamp": "t2"}]
    page = views.connection(entry("shop", lastSync=stored, events=events))
    assert [(j["job"], j["outcome"]) for j in page["syncJobs"]] == [(8, "completed")]


def manifest(**over: Any) -> Manifest:
    values: dict[str, Any] = {
        "name": "shop",
        "driver": "shopware6",
        "display_name": "Shop",
        "source": SourceLocation("shop.yaml", 1, 1),
        "credentials": {
            "url": "https://a.example",
            "secretAccessKey": SecretRef(env="X"),
            "literalToken": "s3cr3t-literal",
        },
        "settings": {"defaultLanguage": "de-DE", "priceBooks": ["a"]},
        "ignore_differences": ("/settings/priceBooks",),
    }
    values.update(over)
    return Manifest(**values)


def test_fields_mask_secrets_and_mark_ignored_differences() -> None:
    conn = Connection(
        id=3,
        name="Shop",
        driver="shopware6",
        status="active",
        version=1,
        credentials={"url": "https://b.example", "secretAccessKey": None, "apiPassword": "leak"},
        settings={"defaultLanguage": "de-DE", "priceBooks": ["b"], "currency": "EUR"},
    )
    secret_paths = {"/credentials/literalToken", "/credentials/apiPassword"}
    got = {r.path: r for r in field_rows(manifest(), conn, secret_paths=secret_paths)}
    assert got["/credentials/url"].state == "differs"
    assert got["/settings/defaultLanguage"].state == "equal"
    assert got["/settings/priceBooks"].state == "ignored"
    assert got["/settings/currency"].state == "unmanaged"
    assert got["/enabled"].state == "equal"
    for path in ("/credentials/secretAccessKey", "/credentials/literalToken"):
        assert (got[path].desired, got[path].state) == (SENSITIVE_VALUE, "sensitive")
    assert got["/credentials/apiPassword"].actual == SENSITIVE_VALUE
    shown = repr([r.to_view() for r in got.values()])
    assert "s3cr3t-literal" not in shown and "leak" not in shown


def test_fields_of_a_connection_not_created_yet() -> None:
    got = {r.path: r for r in field_rows(manifest(), None)}
    assert got["/name"].actual is None and got["/name"].state == "differs"
    assert got["/credentials/secretAccessKey"].actual is None


def test_live_feed_counts_changes_and_keeps_reconciles_scrubbed() -> None:
    feed = LiveFeed(
        scrub=lambda d: {k: str(v).replace("hunter2", "***") for k, v in d.items()},
        revision=lambda: "abc123",
        resync_seconds=300,
    )
    sink = EventSink(feed)
    sink.emit("reconcile.started", reconcile_id="r1", kind="full")
    assert set(feed.running) == {"r1"}
    sink.emit("reconcile.failed", reconcile_id="r1", kind="full", error="token hunter2 refused")
    assert not feed.running and feed.version == 2
    (last,) = feed.reconciles
    assert last["error"] == "token *** refused" and last["revision"] == "abc123"
    assert last["result"] == "failed" and feed.next_resync


def test_live_feed_keeps_the_reason_a_reconcile_started_with() -> None:
    # reconcile.completed names no reason: the overview's "full (startup)" comes from
    # the start of the same reconcile.
    feed = LiveFeed(scrub=dict, revision=lambda: None, resync_seconds=60)
    sink = EventSink(feed)
    sink.emit("reconcile.started", reconcile_id="r1", kind="full", reason="startup")
    sink.emit("reconcile.started", reconcile_id="r2", kind="partial", reason="files changed")
    sink.emit("reconcile.completed", reconcile_id="r2", kind="partial", converged=True)
    sink.emit("reconcile.completed", reconcile_id="r1", kind="full", converged=True)
    assert [(r["kind"], r["reason"]) for r in feed.reconciles] == [
        ("partial", "files changed"),
        ("full", "startup"),
    ]


def test_live_feed_names_what_changed() -> None:
    feed = LiveFeed(scrub=dict, revision=lambda: None, resync_seconds=60)
    feed(Event("connection.updated", "info", {"connection": "a"}))
    feed(Event("sync.completed", "info", {"connection": "b", "job_id": 7}))
    feed(Event("reconcile.completed", "info", {"kind": "partial"}))
    assert feed.changed_since(0) == "a b"
    assert feed.changed_since(1) == "b"
    assert feed.last_sync["b"]["job"] == 7 and feed.last_sync["b"]["outcome"] == "completed"
    assert feed.take_changes() == ({"a", "b"}, False)
    assert feed.take_changes() == (set(), False)
    feed(Event("reconcile.completed", "info", {"kind": "full"}))
    assert feed.changed_since(3) == "*"
    assert feed.take_changes() == (set(), True)
    feed(Event("manifest.invalid", "error", {"file": "x.yaml"}))
    assert feed.take_changes() == (set(), True)
    feed(Event("reconcile.started", "info", {"kind": "partial"}))  # names nothing
    assert feed.changed_since(5) == "-"
    for i in range(live.CHANGES_KEPT):
        feed(Event("connection.updated", "info", {"connection": f"c{i}"}))
    assert feed.changed_since(feed.version - 1) == f"c{live.CHANGES_KEPT - 1}"
    assert feed.changed_since(4) == "*"  # a change the log let go may have been anything
    assert feed.changed_since(6) == "*"  # more names than a message carries


def test_live_stream_reports_a_change_and_ends_when_the_daemon_stops() -> None:
    async def scenario() -> list[str]:
        feed = LiveFeed(scrub=dict, revision=lambda: None, resync_seconds=60)
        stream = feed.stream()
        got = [await anext(stream)]
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # nothing changed: the stream waits, no message
        feed(Event("connection.updated", "info", {"connection": "a"}))
        got.append(await asyncio.wait_for(waiting, 5))
        feed(Event("daemon.stopping", "info", {}))
        got += [chunk async for chunk in stream]
        return got

    hello, change, *rest = asyncio.run(scenario())
    assert hello.startswith("retry: ") and "event: hello\ndata: 0" in hello
    assert change == "event: change\ndata: 1 a\n\n"
    assert rest == ["event: bye\ndata: stopping\n\n"]


def test_live_stream_holds_a_change_until_the_reconcile_ends() -> None:
    """Pages fetch after a reconcile's writes, not during them (at most HOLD_SECONDS)."""

    async def scenario() -> tuple[str, str]:
        feed = LiveFeed(scrub=dict, revision=lambda: None, resync_seconds=60)
        stream = feed.stream()
        await anext(stream)
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.01)
        feed(Event("reconcile.started", "info", {"kind": "partial"}))
        feed(Event("connection.updated", "info", {"connection": "a"}))
        await asyncio.sleep(live.HOLD_SECONDS / 2)
        assert not waiting.done()  # held: the reconcile still runs
        feed(Event("reconcile.completed", "info", {"kind": "partial"}))
        after_end = await asyncio.wait_for(waiting, 5)
        # A reconcile that outlasts the hold (a resync of 10,000) still lets it through.
        feed(Event("reconcile.started", "info", {"kind": "full"}))
        started = asyncio.get_running_loop().time()
        during = await asyncio.wait_for(anext(stream), 5)
        assert asyncio.get_running_loop().time() - started >= live.HOLD_SECONDS * 0.9
        return after_end, during

    after_end, during = asyncio.run(scenario())
    assert after_end == "event: change\ndata: 3 a\n\n"
    assert during.startswith("event: change\ndata: 4 ")


def test_the_plan_page_prints_the_plan_once_as_chanops_plan_does() -> None:
    """The page shows `chanops plan`'s text, summary line included, and nothing twice: it
    had the summary above the text as well (issue 15)."""
    import html as html_module
    import re

    from chanops.condition import Condition, ConditionStatus, ConditionType
    from chanops.daemon.ui._app import environment
    from chanops.daemon.ui._source import PlanView
    from chanops.engine.plan import Plan
    from chanops.engine.render import render_text, summary

    waiting = Condition(
        ConditionType.AWAITING_AUTHORIZATION, ConditionStatus.TRUE, "OAuth", "log in"
    )
    plan = Plan(conditions={"amazon-de": (waiting,)})
    text = render_text(plan)
    view = PlanView(3, text.rstrip("\n").split("\n"), summary(plan), at="2026-12-02T05:00:00Z")
    page = environment().get_template("plan.html").render(base="/ui/", page="plan", plan=view)
    assert page.count("No changes. The platform matches the manifests.") == 1
    pre = re.search(r'<pre class="plan">(.*?)</pre>', page, re.DOTALL)
    assert pre is not None
    assert html_module.unescape(re.sub(r"<[^>]+>", "", pre.group(1))) == text


def test_a_refused_grant_makes_every_row_wait_not_fail() -> None:
    """While chanops's own grant is refused, a row shows what /status shows: waiting on
    AwaitingAuthorization, not the failed write the refusal caused (issue 15). A
    marketplace's own AwaitingAuthorization does not hide a failure."""
    from chanops.daemon.auth import REASON, AuthGate, awaiting_conditions

    class Session:
        awaiting_authorization = True
        awaiting_reason = "the platform refused the refresh token: run chanops login"
        awaiting_since = 1_700_000_000.0

    gate = AuthGate(Session())  # type: ignore[arg-type]
    failed = {"error": "ReauthorizationRequired: run chanops login", "failures": 1}
    events = [{"event": "connection.failed", "error": "ReauthorizationRequired"}]
    refused = awaiting_conditions(gate, [])
    assert refused[0]["reason"] == REASON
    row = views.managed_row(entry("a", backoff=failed, events=events, conditions=refused))
    assert (row.state, row.why) == ("waiting", "AwaitingAuthorization")
    assert views.managed_row(entry("a", backoff=failed)).state == "failing"
    marketplace = [{"type": "AwaitingAuthorization", "status": "True", "reason": "Marketplace"}]
    assert views.managed_row(entry("a", backoff=failed, conditions=marketplace)).state == "failing"
    parked = {"error": "unknown_value", "untilManifestChanges": True}
    assert views.managed_row(entry("a", backoff=parked, conditions=refused)).state == "stalled"
    assert awaiting_conditions(None, ["Suspended"]) == ["Suspended"]
    assert awaiting_conditions(gate, ["Suspended", "AwaitingAuthorization"]) == [
        "Suspended",
        refused[0],
    ]
