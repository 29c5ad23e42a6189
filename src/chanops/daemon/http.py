"""The daemon's HTTP endpoints: Starlette served by uvicorn inside the daemon's event loop.

- `/healthz`  200 while the process runs.
- `/readyz`   200 once the first reconcile finished and the platform answered in the
              last full resync; 503 with the reasons otherwise.
- `/metrics`  Prometheus text format from the daemon's own registry.
- `/status`   JSON: every connection's desired and observed state, conditions, next
              scheduled sync, backoff and last events. Never a secret: desired state is
              summarised without credentials, and events were redacted when logged.
- extra `routes` (the git source's `POST /hooks/git`) are served beside them.
- `/ui/`      the read-only status page (daemon/ui, docs/ui.md), when given.

The socket is bound by chanops itself (a clear error when the address is taken, port 0
for tests) and uvicorn's own signal handling is disabled: the daemon owns the signals.

Anyone who can reach `--listen` is untrusted, and the listener shares the process's
file descriptors with the manifests root, the state store and git. So:

- `bind` raises the soft RLIMIT_NOFILE to the hard limit (nothing is lost by it, and a
  systemd unit's `LimitNOFILE=` then applies in full).
- At most `MAX_CONNECTIONS` (256, and never more than a quarter of RLIMIT_NOFILE) are
  open at once. A connection past the cap closes one that is waiting for a request head
  (never a request being served): the longest-waiting one of the client address holding
  the most such connections. Only when every open connection is being served is the
  new one closed instead. So a fresh `/healthz` probe still gets in, and stays in, while
  thousands of idle connections are thrown at the port.
- A connection must deliver a complete request head within `HEADER_TIMEOUT` (10 s) of
  connecting or of its previous response, or it is closed (uvicorn has a keep-alive
  timeout, 5 s here, but nothing for a head that never completes). h11 refuses a head
  over 16 KB, so a waiting connection holds little memory.
- At most `MAX_REQUESTS` (64) requests are handled at once; past that, 503.
- The event loop accepts at most `ACCEPT_BACKLOG` (128) connections per wakeup (uvicorn's
  default is 2,048), so a burst adds at most that many descriptors above the cap before
  the excess is closed.
- Dropped connections are logged, one `http.connections_dropped` summary per minute at
  most (counts by reason and the busiest client addresses), so a flood shows in the log
  without flooding it; asyncio's "socket.accept() out of system resource" (the listener
  hit the descriptor limit anyway) is rate-limited the same way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import resource
import socket
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, ClassVar

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from chanops.errors import ConfigError
from chanops.observability.metrics import CONTENT_TYPE_LATEST, Metrics

log = structlog.get_logger(__name__)

# Module constants rather than flags: the defaults suit every deployment; tests lower
# them by setting these before the daemon starts.
HEADER_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5
MAX_CONNECTIONS = 256
# Open connections may use at most this share of RLIMIT_NOFILE: the rest is headroom
# for the manifests root, the watcher, the state store, platform calls and git.
FD_SHARE = 4
MAX_REQUESTS = 64
# Long-lived streams (the status page's server-sent events) are not requests in flight:
# each page holds one open, and the UI caps them itself (daemon/ui/_live.py).
STREAM_PATHS = frozenset({"/ui/live"})
# Both the listen(2) backlog and how many connections asyncio accepts per wakeup.
ACCEPT_BACKLOG = 128
# At most one summary line per this many seconds for dropped connections and accept
# errors; the first one of a burst waits REPORT_GATHER seconds to count the burst.
REPORT_INTERVAL = 60.0
REPORT_GATHER = 1.0
MAX_PORT = 65535
# Dropped connections are counted per client address for the report; an attacker with
# many source addresses must not grow that map without bound.
MAX_CLIENTS_REPORTED = 256


def parse_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:9464`, `[::1]:9464`, `:9464` (loopback) or `0.0.0.0:9464`."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= MAX_PORT:
        raise ConfigError(f"invalid --listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force.

    The soft limit is often 1,024 while the hard one is far higher: a process may raise
    its own soft limit, and the daemon's connections, files and git all draw on it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot be the soft one on Linux (it is capped by
    # fs.nr_open): aim for a large finite number then.
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        log.debug("process.fd_limit_raised", previous=soft, limit=target)
        return target
    return soft


def bind(host: str, port: int) -> socket.socket:
    raise_fd_limit()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it a response written in two parts waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(ACCEPT_BACKLOG)
    sock.setblocking(False)
    return sock


def create_app(
    *,
    metrics: Metrics,
    ready: Callable[[], tuple[bool, list[str]]],
    status: Callable[[], dict[str, Any]],
    routes: Sequence[BaseRoute] = (),
    ui: ASGIApp | None = None,
) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, reasons = ready()
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "reasons": reasons},
            status_code=200 if ok else 503,
        )

    async def metrics_endpoint(request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def status_endpoint(request: Request) -> Response:
        return JSONResponse(status())

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/status", status_endpoint),
            *routes,
            # The read-only status page (daemon/ui, docs/ui.md); /ui redirects to /ui/.
            *([Mount("/ui", app=ui)] if ui is not None else []),
        ]
    )


def connection_cap(fd_limit: int) -> int:
    """How many connections may be open at once under `fd_limit` descriptors."""
    return max(1, min(MAX_CONNECTIONS, fd_limit // FD_SHARE))


class ConnectionGuard:
    """What every connection of one server shares: the cap, the head deadline, the tally.

    `waiting` holds the connections waiting for a request head, by client address and
    oldest first (dicts keep insertion order): the candidates to close when the cap is
    reached. The victim is the oldest of the address holding the most of them, so one
    flooding address cannot push out a probe or a webhook sender from another.
    """

    def __init__(self, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.waiting: dict[str, dict[GuardedH11Protocol, None]] = {}
        self.drops: collections.Counter[str] = collections.Counter()
        self.clients: collections.Counter[str] = collections.Counter()
        self._since = time.monotonic()
        self._last_report: float | None = None
        self._report: asyncio.TimerHandle | None = None

    def wait(self, conn: GuardedH11Protocol) -> None:
        self.waiting.setdefault(conn.peer, {})[conn] = None

    def unwait(self, conn: GuardedH11Protocol) -> None:
        same = self.waiting.get(conn.peer)
        if same is None:
            return
        same.pop(conn, None)
        if not same:
            del self.waiting[conn.peer]

    def evict_oldest_waiting(self) -> bool:
        """Close the longest-waiting connection of the busiest address; False if none waits."""
        if not self.waiting:
            return False
        busiest = max(self.waiting.values(), key=len)
        next(iter(busiest)).drop("evicted")
        return True

    def dropped(self, reason: str, client: str) -> None:
        self.drops[reason] += 1
        # Bounded: an attacker with many source addresses must not grow this map.
        if client in self.clients or len(self.clients) < MAX_CLIENTS_REPORTED:
            self.clients[client] += 1
        if self._report is None:
            loop = asyncio.get_running_loop()
            delay = REPORT_GATHER
            if self._last_report is not None:
                delay = max(delay, self._last_report + REPORT_INTERVAL - time.monotonic())
            self._report = loop.call_later(delay, self.report)

    def report(self) -> None:
        """Log the drops counted since the last report (if any) as one line."""
        if self._report is not None:
            self._report.cancel()
            self._report = None
        if not self.drops:
            return
        now = time.monotonic()
        log.warning(
            "http.connections_dropped",
            header_timeout=self.drops["header_timeout"],
            evicted=self.drops["evicted"],
            refused=self.drops["refused"],
            clients=[f"{addr} ({n})" for addr, n in self.clients.most_common(5)],
            window_s=round(now - self._since, 1),
            max_connections=self.max_connections,
        )
        self.drops.clear()
        self.clients.clear()
        self._since = self._last_report = now


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a request-head deadline.

    The deadline runs from the moment the connection waits for a request: when it is
    made, and after each response (keep-alive). It is cancelled when h11 has parsed a
    complete head, i.e. when uvicorn starts a new request cycle. uvicorn calls
    `handle_events` after every read and after every response (pipelining), so checking
    for a new cycle there sees every head.
    """

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_cycle: object | None = None
        self.peer = ""  # the client address, the key of `guard.waiting`

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        guard = self.guard
        if len(self.connections) >= guard.max_connections and not guard.evict_oldest_waiting():
            # Every open connection is being served: this one cannot be.
            self._refused = True
            peer = transport.get_extra_info("peername")
            guard.dropped("refused", str(peer[0]) if peer else "")
            transport.abort()
            return
        super().connection_made(transport)
        self.peer = self.client[0] if self.client else ""
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return  # uvicorn never saw this connection
        self._head_arrived()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self._head_timer is not None and self.cycle is not self._head_cycle:
            self._head_arrived()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._await_head()
        super().on_response_complete()

    def drop(self, reason: str) -> None:
        """Close now: abort, not close, so an unread response is not kept to be flushed."""
        self._head_arrived()
        # Free the slot at once; uvicorn's connection_lost (next loop pass) discards again.
        self.connections.discard(self)
        self.guard.dropped(reason, self.peer)
        self.transport.abort()

    def _await_head(self) -> None:
        self._head_arrived()
        self._head_cycle = self.cycle
        self._head_timer = self.loop.call_later(self.guard.header_timeout, self._head_timeout)
        self.guard.wait(self)

    def _head_arrived(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.guard.unwait(self)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() or self.transport.get_write_buffer_size():
            self.drop("header_timeout")
        else:
            self.guard.unwait(self)


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """A protocol class bound to `guard` (uvicorn instantiates it with its own arguments)."""

    class Protocol(GuardedH11Protocol):
        pass

    Protocol.guard = guard
    return Protocol


class InFlightLimit:
    """ASGI middleware: at most `limit` requests handled at once, 503 past that."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in STREAM_PATHS:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            busy = PlainTextResponse(
                "Service Unavailable",
                status_code=503,
                headers={"Connection": "close", "Retry-After": "1"},
            )
            await busy(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


ACCEPT_ERROR = "socket.accept() out of system resource"


class AcceptErrorThrottle(logging.Filter):
    """Let asyncio's accept-error line through once per `interval`, with a count.

    When accept(2) fails with EMFILE, asyncio logs the error with a traceback and (in
    the same wakeup) tries again, once per pending connection: a descriptor shortage
    turned into megabytes of log a second. One line per interval says the same.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._last: float | None = None
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith(ACCEPT_ERROR)):
            return True
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            self._suppressed += 1
            return False
        exc = record.exc_info[1] if record.exc_info else None
        message = f"{ACCEPT_ERROR}: {exc}" if exc is not None else ACCEPT_ERROR
        if self._suppressed:
            message += f" ({self._suppressed} more since the last report)"
        record.msg, record.args = message, None
        record.exc_info = record.exc_text = None
        self._last, self._suppressed = now, 0
        return True


def install_accept_error_throttle() -> None:
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, AcceptErrorThrottle) for f in logger.filters):
        logger.addFilter(AcceptErrorThrottle(REPORT_INTERVAL))


class _StartStopInfo(logging.Filter):
    """uvicorn's INFO lines ("Started server process", "Shutting down") are not the
    daemon's events: http.listening and daemon.stopped say it. Warnings and errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def quiet_uvicorn_info() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _StartStopInfo) for f in logger.filters):
        logger.addFilter(_StartStopInfo())


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_event = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The daemon handles SIGTERM/SIGINT/SIGHUP itself (graceful shutdown, resync).
        yield

    async def main_loop(self) -> None:
        # uvicorn polls should_exit 10 times a second (and refreshes the Date header);
        # an idle daemon should not wake at all, so wait for the stop instead.
        await self.exit_event.wait()


class HttpServer:
    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        self._sock = sock
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        fd_limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
        self.guard = ConnectionGuard(connection_cap(fd_limit), HEADER_TIMEOUT)
        install_accept_error_throttle()
        quiet_uvicorn_info()
        config = uvicorn.Config(
            InFlightLimit(app, MAX_REQUESTS),
            http=guarded_protocol(self.guard),
            ws="none",  # no websocket routes: an Upgrade must not leave the guarded protocol
            backlog=ACCEPT_BACKLOG,
            timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))

    async def stop(self) -> None:
        self._server.should_exit = True
        self._server.exit_event.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout=5)
        self._sock.close()
        self.guard.report()  # drops not yet reported are still part of the audit trail
