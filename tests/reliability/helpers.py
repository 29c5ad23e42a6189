"""Shared pieces of the reliability suite (issue 7) and of benchmarks/chaos.py, load.py.

Everything here drives whole processes: `chanops emulator` (support.emulator) and
`chanops run` (daemon.helpers.DaemonProcess). The invariants are checked against the
emulator through its HTTP API, never against chanops's own view of the world.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.helpers import DaemonProcess, chanops_launcher, manifest, write_atomic
from support.emulator import EmulatorProcess

# One secret per manifest family; every artefact is searched for each of them.
SECRET_ENV = "RELIABILITY_SECRET"
SECRET = "rel-s3cr3t-9d2f7a41c0"
PLATFORM_TOKEN = "rel-platform-token-5be1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def write_manifests(root: Path, count: int, *, prefix: str = "c", per_dir: int = 500) -> list[str]:
    """`count` shopware6 manifests, one per file, spread over sub-directories."""
    names = [f"{prefix}{i:05}" for i in range(count)]
    for i, name in enumerate(names):
        path = root / f"d{i // per_dir:03}" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(manifest(name, secret_env=SECRET_ENV), encoding="utf-8")
    return names


def add_manifest(root: Path, index: int, *, prefix: str = "c", per_dir: int = 500) -> str:
    """One more manifest (number `index`) where write_manifests would have put it."""
    name = f"{prefix}{index:05}"
    write_atomic(
        root / f"d{index // per_dir:03}" / f"{name}.yaml", manifest(name, secret_env=SECRET_ENV)
    )
    return name


def edit_manifest(root: Path, name: str, display: str, *, per_dir: int = 500) -> Path:
    index = int(name.lstrip("abcdefghijklmnopqrstuvwxyz"))
    path = root / f"d{index // per_dir:03}" / f"{name}.yaml"
    write_atomic(path, manifest(name, display=display, secret_env=SECRET_ENV))
    return path


def start_daemon(
    tmp: Path,
    emu: EmulatorProcess,
    root: Path,
    *,
    name: str = "daemon",
    resync: str = "1m",
    extra: Iterable[str] = (),
    state: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> DaemonProcess:
    """A `chanops run` subprocess; returns once its HTTP endpoint listens."""
    d = DaemonProcess(
        tmp,
        manifests=root,
        platform=emu.url,
        token=emu.token,
        state=state or tmp / "state" / "state.db",
        resync=resync,
        env={SECRET_ENV: SECRET, **(env or {})},
        extra=list(extra),
        name=name,
    )
    return d.start(wait_reconciled=False)


def run_once(
    emu: EmulatorProcess, root: Path, state: Path, *, timeout: float = 300
) -> tuple[int, list[dict[str, Any]], str]:
    """`chanops run --once`: exit code, its JSON events, its whole output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    env[SECRET_ENV] = SECRET
    proc = subprocess.run(
        [
            *chanops_launcher(),
            "run",
            "--once",
            "--manifests",
            str(root),
            "--platform",
            emu.url,
            "--token",
            emu.token,
            "--state",
            str(state),
            "--log-format",
            "json",
        ],
        env=env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout.decode("utf-8", "replace")
    events = [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]
    return proc.returncode, events, out + proc.stderr.decode("utf-8", "replace")


@dataclass
class PlatformCheck:
    """The platform as the emulator sees it, judged against the manifests."""

    by_name: dict[str, list[dict[str, Any]]]
    missing: list[str]
    doubled: dict[str, list[int]]
    unmanaged_changed: list[str]
    stray: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.doubled or self.unmanaged_changed or self.stray)

    def summary(self) -> str:
        doubled = dict(list(self.doubled.items())[:10])
        return (
            f"missing={self.missing[:10]} ({len(self.missing)}), doubled={doubled} "
            f"({len(self.doubled)}), unmanaged_changed={self.unmanaged_changed}, "
            f"stray={self.stray[:10]}"
        )


def check_platform(
    emu: EmulatorProcess, names: Iterable[str], unmanaged: Mapping[int, Mapping[str, Any]]
) -> PlatformCheck:
    """Every manifest has exactly one connection; unmanaged ones are exactly as they were."""
    conns = emu.admin.connections()
    by_name: dict[str, list[dict[str, Any]]] = {}
    for c in conns:
        by_name.setdefault(c["name"], []).append(c)
    wanted = set(names)
    missing = sorted(n for n in wanted if n not in by_name)
    doubled = {n: [c["id"] for c in cs] for n, cs in by_name.items() if n in wanted and len(cs) > 1}
    by_id = {c["id"]: c for c in conns}
    changed = [
        f"{cid}: {before!r} -> {by_id.get(cid)!r}"
        for cid, before in unmanaged.items()
        if by_id.get(cid) != before
    ]
    stray = sorted(c["name"] for c in conns if c["name"] not in wanted and c["id"] not in unmanaged)
    return PlatformCheck(by_name, missing, doubled, changed, stray)


def create_unmanaged(emu: EmulatorProcess, count: int) -> dict[int, dict[str, Any]]:
    """Connections someone made in the UI: chanops must never write to them."""
    made: dict[int, dict[str, Any]] = {}
    for i in range(count):
        cid = emu.admin.marketplace_install(
            "shopware6",
            f"ui-made-{i}",
            {"url": "https://ui.example.com", "accessKeyId": "UI", "secretAccessKey": "ui-secret"},
        )
        made[cid] = emu.admin.connection(cid)
    return made


def writes(stats: Mapping[str, int]) -> int:
    """Platform writes in an emulator stats snapshot (testing routes excluded)."""
    return sum(
        n for route, n in stats.items() if not route.startswith("GET") and "/testing/" not in route
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_share(pid: int, window: float) -> float:
    """Share of one core the process used over `window` seconds."""
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return (cpu_seconds(pid) - before) / (time.monotonic() - t0)


def find_leaks(secrets: Iterable[str], artefacts: Mapping[str, bytes]) -> list[str]:
    """Names of artefacts holding any secret byte-for-byte (also JSON-escaped forms)."""
    leaks: list[str] = []
    for secret in secrets:
        needles = {secret.encode(), json.dumps(secret)[1:-1].encode(), secret.encode("utf-16-le")}
        for name, blob in artefacts.items():
            if any(n in blob for n in needles):
                leaks.append(f"{name} holds {secret[:3]}...")
    return leaks


def files_under(path: Path) -> dict[str, bytes]:
    """Every regular file under `path` (state DB, WAL, logs ...) by relative name."""
    out: dict[str, bytes] = {}
    if path.is_file():
        return {path.name: path.read_bytes()}
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(path))] = p.read_bytes()
    return out


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric_name, _, rest = head.partition("{")
        if metric_name != name:
            continue
        got = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
        if got == want:
            return float(value)
    return 0.0


def loud(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """Events an operator sees at the default level (info and above), as `level event`."""
    return [
        f"{e['level']} {e['event']}"
        for e in events
        if e.get("level") in ("info", "warning", "error", "critical")
    ]


def converged_full(events: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for e in events:
        if e["event"] == "reconcile.completed" and e.get("kind") == "full" and e.get("converged"):
            return e
    return None
