"""The platform a command talks to: a remote URL, or `local:PATH` served in this process.

`local:PATH` is the bundled emulator over SQLite at PATH, reached through httpx's ASGI
transport, with a warning that nothing reaches a real platform. It is built here, at
the edge, so the platform layer never imports the emulator.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from chanops import errors
from chanops.events import EventSink
from chanops.platform.client import OnRequest, PlatformClient, open_client

# The logger of the platform client: `platform.local` is the client's own warning.
log = structlog.get_logger("chanops.platform")

LOCAL_TOKEN = "local-emulator"  # noqa: S105 (in-process emulator, not a secret)


def open_platform(
    url: str,
    token: str | None,
    *,
    concurrency: int = 16,
    rate_limit: float | None = None,
    timeout: float = 30.0,
    max_retries: int = 6,
    on_request: OnRequest | None = None,
    events: EventSink | None = None,
) -> PlatformClient:
    """`open_client(url, token, ...)`, with `local:PATH` served by the bundled emulator."""
    if not url.startswith("local:"):
        return open_client(
            url,
            token,
            concurrency=concurrency,
            rate_limit=rate_limit,
            timeout=timeout,
            max_retries=max_retries,
            on_request=on_request,
            events=events,
        )
    path = url[len("local:") :]
    if not path:
        raise errors.ConfigError(
            "platform URL local: needs a path, e.g. local:.chanops/platform.db"
        )
    # Imported here: a remote platform never loads the emulator (Starlette, SQLite).
    import httpx

    from chanops.emulator.app import create_app
    from chanops.platform.client import InProcess, open_in_process

    if path != ":memory:":
        # 0700 like the state directory it usually shares (.chanops/): a `plan` run
        # before the first `apply` must not create it readable by everyone.
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    local_token = token or LOCAL_TOKEN
    app = create_app(db=path, token=local_token, request_log_level="debug")
    log.warning(
        "platform.local",
        message="no remote platform is configured: using the embedded emulator "
        "(nothing reaches a real platform)",
        db=path,
    )
    server = InProcess(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        token=local_token,
        close=app.state.platform.close,
    )
    return open_in_process(
        server,
        concurrency=concurrency,
        rate_limit=rate_limit,
        timeout=timeout,
        max_retries=max_retries,
        on_request=on_request,
        events=events,
    )
