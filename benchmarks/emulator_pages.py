"""Per-page cost of the emulator's connection list (GET /api/v1/connections?limit=500).

    .venv/bin/python benchmarks/emulator_pages.py [--n 10000] [--runs 7] [--limit 500]

1. Seeds N connections (shopware6 with settings, tradebyte) straight through the
   emulator's store (`Platform`) into a temp SQLite file: the same rows the API makes.
2. In-process: fetches every page through the ASGI app (httpx.ASGITransport): the
   emulator's own work per page (middleware, store, JSON), no server or socket.
3. Whole process: starts `chanops emulator` on that database (no faults, then
   `--faults latency=20ms`) and fetches every page with httpx over loopback
   (keep-alive, one page after the other).
Each fetches all pages --runs times (the first run on a fresh process: cold caches) and
reports the median milliseconds per page. Only the fetching is timed: the client reads
next_cursor off the end of each body and parses the bodies after the clock stops.
A figure, not a test: it only checks that every run saw all N connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

from chanops.emulator import app as emulator_app  # noqa: E402
from chanops.emulator._store import Platform  # noqa: E402
from chanops.observability.logging import configure_logging  # noqa: E402
from support.emulator import start_emulator  # noqa: E402

TOKEN = "bench-token"


def run(platform: Platform, op: Callable[[float], tuple[int, Any]]) -> Any:
    """One store operation in its own transaction, as the app runs it."""
    status, out, _ = platform.idempotent(None, "seed", op)
    if status >= 300:
        raise SystemExit(f"seeding failed: {status} {out}")
    return out


def seed(db: Path, n: int) -> None:
    platform = Platform(str(db), time_scale=0.001)
    try:
        for i in range(n):
            if i % 2:
                body: dict[str, Any] = {
                    "name": f"conn-{i:05d}",
                    "driver": "tradebyte",
                    "credentials": {
                        "merchantNumber": f"m{i}",
                        "shopName": f"shop{i}",
                        "restUsername": "rest",
                        "restPassword": "bench-secret",
                        "sftpUsername": "sftp",
                        "sftpPassword": "bench-secret",
                    },
                }
            else:
                body = {
                    "name": f"conn-{i:05d}",
                    "driver": "shopware6",
                    "credentials": {
                        "url": f"https://shop-{i}.example.com",
                        "accessKeyId": f"SWIA{i}",
                        "secretAccessKey": "bench-secret",
                    },
                }
            out = run(platform, partial(platform.create, body))
            if i % 2 == 0:
                patch = {"settings": {"klarna": True, "orders": {"importAboveNumber": "100"}}}
                run(platform, partial(platform.update, out["connection"]["id"], patch, None))
    finally:
        platform.close()


def next_cursor(body: bytes) -> str | None:
    """The page's next_cursor, read off the end of the body (no full parse while timing)."""
    tail = body[body.rindex(b'"next_cursor":') + len(b'"next_cursor":') : -1]
    return None if tail == b"null" else str(json.loads(tail))


async def fetch_all(client: httpx.AsyncClient, limit: int) -> tuple[float, list[bytes]]:
    """Seconds to fetch every page (keep-alive, one after the other), and the bodies."""
    bodies: list[bytes] = []
    cursor: str | None = None
    started = time.perf_counter()
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/api/v1/connections", params=params)
        if r.status_code != 200:
            raise SystemExit(f"GET /api/v1/connections answered {r.status_code}: {r.text}")
        bodies.append(r.content)
        cursor = next_cursor(r.content)
        if not cursor:
            break
    return time.perf_counter() - started, bodies


def per_page_ms(elapsed: float, bodies: list[bytes], n: int) -> float:
    seen = sum(len(json.loads(b)["items"]) for b in bodies)
    if seen != n:
        raise SystemExit(f"saw {seen} connections, expected {n}")
    return elapsed * 1000 / len(bodies)


async def pages(client: httpx.AsyncClient, limit: int, runs: int, n: int) -> list[float]:
    out = []
    for _ in range(runs):
        elapsed, bodies = await fetch_all(client, limit)
        out.append(per_page_ms(elapsed, bodies, n))
    return out


async def in_process(db: Path, limit: int, runs: int, n: int) -> list[float]:
    """Through the ASGI app (middleware, routing, store, JSON), no server, no socket."""
    # log each request as `chanops emulator` does (JSON at info), into a file
    log = (db.parent / "in-process.log").open("w", encoding="utf-8")
    configure_logging(fmt="json", level="info", stream=log)
    app = emulator_app.create_app(db=str(db), token=TOKEN)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://emulator", headers=headers
        ) as client:
            return await pages(client, limit, runs, n)
    finally:
        app.state.platform.close()
        log.close()


async def over_http(url: str, limit: int, runs: int, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        await client.get("/api/v1/connections", params={"limit": 1})  # open the connection
        return await pages(client, limit, runs, n)


def show(label: str, runs: list[float]) -> None:
    print(
        f"{label}: {statistics.median(runs):.2f} ms/page median "
        f"(runs, first = cold cache: {', '.join(f'{r:.1f}' for r in runs)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="chanops-bench-pages-") as tmp_dir:
        tmp = Path(tmp_dir)
        db = tmp / "platform.db"
        started = time.perf_counter()
        seed(db, opts.n)
        print(f"seeded {opts.n} connections in {time.perf_counter() - started:.1f}s")

        show("in-process ASGI app", asyncio.run(in_process(db, opts.limit, opts.runs, opts.n)))
        for faults in (None, "latency=20ms"):
            with start_emulator(tmp / "emu", db=db, faults=faults, token=TOKEN) as emu:
                runs = asyncio.run(over_http(emu.url, opts.limit, opts.runs, opts.n))
            show(f"HTTP, uvicorn, {f'--faults {faults}' if faults else 'no faults'}", runs)


if __name__ == "__main__":
    main()
