"""Requests per second the emulator serves, for GET and PATCH of one connection.

Whole-process measurement: `chanops emulator` runs as its own process (as a user
starts it, SQLite on disk, request logging at the default level to a file) and the load
comes from a separate client process (httpx, keep-alive, N concurrent requests).
Several runs per method; the median is reported.

    .venv/bin/python benchmarks/emulator.py [--requests 2000] [--concurrency 8] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(url: str, method: str, cid: int, requests: int, concurrency: int) -> float:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    counter = iter(range(requests))
    errors = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                if method == "GET":
                    r = await client.get(f"/api/v1/connections/{cid}")
                else:
                    r = await client.patch(
                        f"/api/v1/connections/{cid}", json={"name": f"bench-{i}"}
                    )
                if r.status_code != 200:
                    errors += 1

        await client.get(f"/api/v1/connections/{cid}")  # warm the connection pool
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{errors} requests failed")
    return requests / elapsed


async def paced(url: str, rate: float, requests: int) -> dict[str, float]:
    """The client's own rate limiter against an emulator limiting at the same rate."""
    from chanops.platform.client import open_client

    statuses: list[int] = []
    async with open_client(
        url, TOKEN, rate_limit=rate, on_request=lambda m, s, t: statuses.append(s)
    ) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client.list_drivers() for _ in range(requests)))
        elapsed = time.perf_counter() - started
    return {"rps": requests / elapsed, "429s": float(statuses.count(429))}


def client_main(args: argparse.Namespace) -> None:
    if args.method == "PACED":
        print(json.dumps(asyncio.run(paced(args.url, args.rate, args.requests))))
        return
    rps = asyncio.run(load(args.url, args.method, args.cid, args.requests, args.concurrency))
    print(json.dumps({"rps": rps}))


def start(url: str, port: int, db: str, log: Any, faults: str | None = None) -> Any:
    chanops = Path(sys.executable).parent / "chanops"
    cmd = [str(chanops), "emulator", "--port", str(port), "--db", db, "--token", TOKEN]
    cmd += ["--log-format", "json"] + (["--faults", faults] if faults else [])
    emu = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=log,
        env={k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")},
    )
    for _ in range(200):
        try:
            httpx.get(f"{url}/openapi.json", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return emu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--cid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=50.0, help="client rate limit check")
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return

    print(
        f"{args.requests} requests x {args.runs} runs, concurrency {args.concurrency}, "
        f"cpus {os.cpu_count()}"
    )
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "emulator.log", "wb") as log:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        emu = start(url, port, f"{tmp}/bench.db", log)
        try:
            created = httpx.post(
                f"{url}/api/v1/connections",
                headers={"Authorization": f"Bearer {TOKEN}"},
                json={
                    "name": "bench",
                    "driver": "shopware6",
                    "credentials": {
                        "url": "https://b.example.com",
                        "accessKeyId": "k",
                        "secretAccessKey": "s",
                    },
                },
            ).json()
            cid = created["connection"]["id"]
            for method in ("GET", "PATCH"):
                results = [client_run(args, url, method, cid=cid)["rps"] for _ in range(args.runs)]
                runs = ", ".join(f"{r:.0f}" for r in results)
                print(f"{method:5} median {statistics.median(results):7.0f} req/s  (runs: {runs})")
        finally:
            emu.send_signal(signal.SIGTERM)
            emu.wait(timeout=10)

        # the client's limiter against a platform limiting at the same rate
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        emu = start(url, port, f"{tmp}/paced.db", log, faults=f"rate_limit={args.rate:g}/s")
        try:
            n = int(args.rate * 3)
            paced = [client_run(args, url, "PACED", requests=n) for _ in range(3)]
            rates = [p["rps"] for p in paced]
            print(
                f"paced client at rate_limit={args.rate:g}/s vs emulator rate_limit="
                f"{args.rate:g}/s, {n} requests: achieved median "
                f"{statistics.median(rates):.1f} req/s, 429s per run "
                f"{[int(p['429s']) for p in paced]}"
            )
        finally:
            emu.send_signal(signal.SIGTERM)
            emu.wait(timeout=10)


def client_run(
    args: argparse.Namespace, url: str, method: str, *, cid: int = 0, requests: int | None = None
) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            "--url",
            url,
            "--method",
            method,
            "--cid",
            str(cid),
            "--requests",
            str(requests or args.requests),
            "--concurrency",
            str(args.concurrency),
            "--rate",
            str(args.rate),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


if __name__ == "__main__":
    main()
