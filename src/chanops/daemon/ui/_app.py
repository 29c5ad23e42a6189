"""The status page's routes: server-rendered Jinja2 pages under /ui/, read only.

Every route answers GET (and HEAD) only; Starlette refuses any other method with 405.
Templates autoescape everything (names, labels and error texts are written by people
the daemon does not trust), and the pages load one script and one style sheet from
/ui/static/, so the Content-Security-Policy (`_auth.py`) can forbid inline script.
Without JavaScript the pages are complete; with it, `ui.js` follows /ui/live and
fetches the page again when something changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from chanops.daemon.ui import _views as views
from chanops.daemon.ui._auth import UIAuth, UIGuard, is_loopback
from chanops.daemon.ui._live import MAX_STREAMS, LiveFeed, reconciles_shown
from chanops.daemon.ui._source import UIData

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from chanops.daemon._parts import Parts
    from chanops.daemon._status import Status
    from chanops.manifests.model import LoadResult

HERE = Path(__file__).parent
GET = ["GET"]  # Starlette adds HEAD to a GET route
_WANT_DIGITS = 18  # a version number; anything longer is not one


@dataclass(frozen=True, slots=True)
class UIOptions:
    """How the page is served (`chanops run --ui-*`); `enabled` False leaves /ui/ out.

    `password` (from `--ui-password-file`) asks for HTTP basic authentication;
    `trusted_header` lets in a request an authenticating proxy vouched for. With
    neither, the page is open on a loopback `--listen` and locked on any other.
    """

    enabled: bool = True
    password: bytes | None = None
    trusted_header: str | None = None

    def auth(self, host: str) -> UIAuth:
        return UIAuth(self.password, self.trusted_header, exposed=not is_loopback(host))


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["qs"] = lambda params: "?" + urlencode(params) if params else "?"
    env.filters["plan_class"] = plan_class
    return env


_PLAN_SYMBOLS = (("-/+", "del"), ("+", "add"), ("-", "del"), ("~", "change"), ("!", "bad"))


def plan_class(line: str) -> str:
    """The colour class of one line of `chanops plan` output, by its leading symbol."""
    stripped = line.lstrip()
    if stripped.startswith("#"):
        return "p-head"
    for symbol, name in _PLAN_SYMBOLS:
        if stripped.startswith(symbol + " "):
            return f"p-{name}"
    return "p-plain"


def _wanted(request: Request) -> int:
    """The version the live script's fetch asks for (`X-Chanops-Want`); 0 for none."""
    text = request.headers.get("x-chanops-want", "")
    ok = text.isascii() and text.isdigit() and len(text) <= _WANT_DIGITS
    return int(text) if ok else 0


class Pages:
    def __init__(self, data: UIData, env: jinja2.Environment) -> None:
        self.data = data
        self.env = env

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        root = request.scope.get("root_path", "")
        state = request.scope.get("state", {})
        html = self.env.get_template(name).render(
            base=f"{root}/",
            user=state.get("ui_user", ""),
            page=name.removesuffix(".html"),
            **ctx,
        )
        return HTMLResponse(html, status_code=status)

    async def overview(self, request: Request) -> Response:
        await self.data.fresh(_wanted(request))
        snap = self.data.snapshot()
        feed = self.data.feed
        history = self.data.status.events
        view = snap.memo(
            ("overview", history.replaced),  # a standby's refresh replaces the history
            lambda: views.overview(
                snap.doc,
                snap.rows,
                reconciles=reconciles_shown(feed.reconciles, history.recent),
                reconciling=bool(feed.running),
                next_resync=feed.next_resync,
            ),
        )
        return self.render(request, "overview.html", view=view, version=snap.version)

    async def connections(self, request: Request) -> Response:
        await self.data.fresh(_wanted(request))
        snap = self.data.snapshot()
        query = views.Query.parse(request.query_params)
        # Filtered and sorted once per snapshot and query; each page is a slice of it.
        key = ("list", replace(query, page=1, size=views.PAGE_SIZE))
        selected = snap.memo(key, lambda: views.select(snap.rows, query))
        return self.render(
            request,
            "connections.html",
            query=query,
            listing=views.listing(snap.rows, query, selected),
            facets=snap.facets,
            version=snap.version,
        )

    async def connection(self, request: Request) -> Response:
        name = request.path_params["name"]
        await self.data.fresh(_wanted(request))
        view = self.data.connection(name)
        if view is None:
            return self.render(request, "missing.html", 404, what=f"connection {name!r}", version=0)
        return self.render(request, "connection.html", view=view, version=view["version"])

    async def unmanaged(self, request: Request) -> Response:
        cid = request.path_params["cid"]
        await self.data.fresh(_wanted(request))
        view = self.data.unmanaged(cid)
        if view is None:
            return self.render(
                request, "missing.html", 404, what=f"unmanaged connection {cid}", version=0
            )
        return self.render(request, "unmanaged.html", view=view, version=view["version"])

    async def plan(self, request: Request) -> Response:
        plan = await self.data.plan()
        return self.render(request, "plan.html", plan=plan, version=plan.version)

    async def live(self, request: Request) -> Response:
        feed = self.data.feed
        if feed.streams >= MAX_STREAMS:
            return PlainTextResponse(
                "Too many live pages open; reload to try again.\n", status_code=503
            )
        return StreamingResponse(
            feed.stream(),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},  # nginx: pass each message on at once
        )


def build_ui(
    *,
    status: Status,
    parts: Parts,
    load: Callable[[], LoadResult | None],
    options: UIOptions,
    host: str,
    resync_seconds: float,
) -> ASGIApp | None:
    """The status page as an ASGI app to mount at /ui; None when it is switched off.

    `host` is the address `--listen` binds: who may read the page depends on it.

    Subscribes its live feed to the daemon's event sink.
    """
    if not options.enabled:
        return None
    logging = parts.logging
    feed = LiveFeed(
        scrub=logging.redactor.scrub,
        revision=lambda: logging.revision.value,
        resync_seconds=resync_seconds,
    )
    parts.events.subscribe(feed)
    pages = Pages(UIData(status=status, parts=parts, load=load, feed=feed), environment())
    app = Starlette(
        routes=[
            Route("/", pages.overview, methods=GET),
            Route("/connections", pages.connections, methods=GET),
            Route("/connections/{name}", pages.connection, methods=GET),
            Route("/unmanaged/{cid:int}", pages.unmanaged, methods=GET),
            Route("/plan", pages.plan, methods=GET),
            Route("/live", pages.live, methods=GET),
            Mount("/static", StaticFiles(directory=HERE / "static")),
        ]
    )
    return UIGuard(app, options.auth(host))
