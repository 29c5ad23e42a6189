"""Git source figures: first clone, no-change fetch, and push-webhook-to-checkout latency.

    .venv/bin/python benchmarks/git_source.py [--files 1000] [--commits 20] [--runs 3]

A local bare repository with N manifest files; chanops's GitSource and the /hooks/git
route served by uvicorn on a loopback port (real HTTP, real git subprocesses). For each
commit: `git push` finishes, a signed GitHub-style delivery is POSTed, and the clock stops
when `updates()` yields the new checkout. Medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import structlog
import uvicorn
from starlette.applications import Starlette

from chanops.sources.git import GitSource
from chanops.sources.webhook import git_webhook_route

SECRET = b"bench-secret"
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@example.com",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@example.com",
}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def manifest(i: int, rev: int) -> str:
    return (
        "apiVersion: chanops/v1\nkind: Connection\n"
        f"metadata: {{name: shop-{i:05d}}}\n"
        "spec:\n  driver: shopware6\n  credentials:\n"
        f"    url: https://shop{i}.example.com\n    accessKeyId: K{i}\n"
        f"  sync: {{interval: {30 + rev}m}}\n"
    )


async def one_run(root: Path, files: int, commits: int) -> dict[str, float | list[float]]:
    bare, work = root / "remote.git", root / "work"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    git(root, "init", "-q", "-b", "main", str(work))
    (work / "connections.d").mkdir()
    for i in range(files):
        (work / "connections.d" / f"shop-{i:05d}.yaml").write_text(manifest(i, 0))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "initial")
    git(work, "push", "-q", str(bare), "HEAD:main")

    source = GitSource(str(bare), workdir=root / "state" / "git", interval=3600)
    t = time.perf_counter()
    await source.refresh()
    first_clone = time.perf_counter() - t

    t = time.perf_counter()
    for _ in range(5):
        await source.refresh()
    no_change = (time.perf_counter() - t) / 5

    secret_file = root / "hook-secret"
    secret_file.write_bytes(SECRET)
    app = Starlette(routes=[git_webhook_route(source.trigger, secret_file)])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serve = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for this)
        await asyncio.sleep(0.01)

    updates = source.updates()
    await anext(updates)  # the current checkout
    latencies = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for n in range(1, commits + 1):
            edit = n % files
            (work / "connections.d" / f"shop-{edit:05d}.yaml").write_text(manifest(edit, n))
            git(work, "commit", "-q", "-am", f"edit {n}")
            git(work, "push", "-q", str(bare), "HEAD:main")
            body = b'{"ref": "refs/heads/main"}'
            sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
            t = time.perf_counter()
            resp = await client.post(
                "/hooks/git", content=body, headers={"X-Hub-Signature-256": sig}
            )
            assert resp.status_code == 202, resp.text
            revision = await anext(updates)
            latencies.append(time.perf_counter() - t)
            assert (revision.path / f"shop-{edit:05d}.yaml").read_text() == manifest(edit, n)
    await updates.aclose()
    server.should_exit = True
    await serve
    return {"first_clone": first_clone, "no_change": no_change, "latencies": latencies}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

    clones, no_changes, lat_p50, lat_max = [], [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            r = await one_run(Path(tmp), args.files, args.commits)
        lat = sorted(r["latencies"])  # type: ignore[arg-type]
        clones.append(r["first_clone"])
        no_changes.append(r["no_change"])
        lat_p50.append(statistics.median(lat))
        lat_max.append(lat[-1])
    ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms"  # noqa: E731
    print(f"files={args.files} commits={args.commits} runs={args.runs} (medians over runs)")
    print(f"first clone + checkout:                {ms(clones)}")
    print(f"fetch with nothing new:                {ms(no_changes)}")
    print(f"push webhook -> new checkout, p50:     {ms(lat_p50)}")
    print(f"push webhook -> new checkout, max:     {ms(lat_max)}")


if __name__ == "__main__":
    asyncio.run(main())
