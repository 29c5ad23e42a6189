"""The daemon's HTTP endpoints: Starlette served by uvicorn inside the daemon's event loop.

- `/healthz`  200 while the process runs.
- `/readyz`   200 once the first reconcile finished and the platform answered in the
              last full resync; 503 with the reasons otherwise.
- `/metrics`  Prometheus text format from the daemon's own registry.
- `/status`   JSON: every connection's desired and observed state, conditions, next
              scheduled sync, backoff and last events. Never a secret: desired state is
              summarised without credentials, and events were redacted when logged.
- extra `routes` (the git source's `POST /hooks/git`) are served beside them.

The socket is bound by chanops itself (a clear error when the address is taken, port 0
for tests) and uvicorn's own signal handling is disabled: the daemon owns the signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator, Sequence
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from chanops.errors import ConfigError
from chanops.observability.metrics import CONTENT_TYPE_LATEST, Metrics

log = structlog.get_logger(__name__)


def parse_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:9464`, `[::1]:9464`, `:9464` (loopback) or `0.0.0.0:9464`."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"invalid --listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def create_app(
    *,
    metrics: Metrics,
    ready: Callable[[], tuple[bool, list[str]]],
    status: Callable[[], dict[str, Any]],
    routes: Sequence[BaseRoute] = (),
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
        ]
    )


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
        config = uvicorn.Config(
            app,
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
