"""Regenerate benchmarks/RESULTS.md: the reliability figures of issue 7, with their commands.

    .venv/bin/python benchmarks/run_all.py                 # every long form (~20 minutes)
    .venv/bin/python benchmarks/run_all.py --quick         # a smoke run at small sizes
    .venv/bin/python benchmarks/run_all.py --steps outage  # re-run one step, keep the rest

Three steps, each a subprocess printing JSON lines: `load` (benchmarks/load.py, 10,000
connections), `crash` (benchmarks/chaos.py, 3 runs x 30 SIGKILLs) and `outage`
(benchmarks/chaos.py, the platform down 20 s, 120 s and 300 s). RESULTS.md gets the
machine, the date, every command, every figure against its target, and the raw lines;
steps not re-run keep their raw lines (and command, and date) from the current file,
and sections no step renders (figures of other benchmarks, edited by hand) stay as
they are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RAW_START, RAW_END = "<!-- raw results", "raw results -->"

STEPS: dict[str, list[str]] = {
    "load": ["load.py", "--connections", "10000", "--edits", "20", "--runs", "3"],
    "crash": ["chaos.py", "--kills", "30", "--runs", "3", "--no-outage"],
    "outage": ["chaos.py", "--runs", "0", "--outage", "20", "--outage", "120", "--outage", "300"],
    "latency": ["daemon_latency.py", "--edits", "100", "--runs", "3"],
}
QUICK: dict[str, list[str]] = {
    "load": ["load.py", "--connections", "1000", "--edits", "10", "--idle-window", "5"],
    "crash": ["chaos.py", "--kills", "5", "--runs", "1", "--no-outage"],
    "outage": ["chaos.py", "--runs", "0", "--outage", "10"],
    "latency": ["daemon_latency.py", "--edits", "20"],
}


def machine() -> str:
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB memory, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def run(step: str, args: list[str]) -> dict[str, Any]:
    shown = "python benchmarks/" + " ".join(args)
    print(f"$ {shown}", flush=True)
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    proc = subprocess.run(
        [sys.executable, str(HERE / args[0]), *args[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    for x in lines:
        print("  ", json.dumps(x), flush=True)
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        lines.append({"error": f"exit {proc.returncode}", "stderr_tail": proc.stderr[-1500:]})
    return {
        "step": step,
        "command": shown,
        "date": f"{started:%Y-%m-%d %H:%M} UTC",
        "minutes": round((datetime.now(UTC) - started).total_seconds() / 60, 1),
        "loadavg": [round(x, 2) for x in (*load_before, *os.getloadavg())],
        "lines": lines,
    }


def previous(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    text = path.read_text()
    if RAW_START not in text:
        return {}
    raw = text.split(RAW_START, 1)[1].split(RAW_END, 1)[0]
    out = {}
    for line in raw.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            out[record["step"]] = record
    return out


RENDERED = ("## Load:", "## Edit-to-write latency outside", "## Crash chaos", "## Platform outage")


def kept_sections(path: Path) -> list[str]:
    """The sections of RESULTS.md no step renders (written by hand beside other
    benchmarks: notifications, the status page), kept as they are."""
    if not path.exists():
        return []
    text = path.read_text().split(RAW_START, 1)[0]
    out: list[str] = []
    keep = False
    for line in text.splitlines():
        if line.startswith("## "):
            keep = not line.startswith((*RENDERED, "## Raw output"))
        if keep:
            out.append(line)
    return out


def verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def render_load(r: dict[str, Any]) -> list[str]:
    out = ["## Load: 10,000 connections", "", f"`{r['command']}` ({r['date']})", ""]
    if "loadavg" in r:
        before, after = r["loadavg"][:3], r["loadavg"][3:]
        out += [f"Load average (1, 5, 15 min) before: {before}, after: {after}.", ""]
    runs = [x for x in r["lines"] if "run" in x]
    load = next((x["median"] for x in r["lines"] if "median" in x), None)
    if load is None:
        return [*out, "The run failed; see the raw output.", ""]
    out += [f"Medians of {len(runs)} runs (each run's figures in the raw output).", ""]
    out += ["| figure | median | runs | target | |", "|---|---|---|---|---|"]
    for label, key, unit, target, ok in _load_rows(load):
        values = ", ".join(str(x[key]) for x in runs)
        mark = verdict(ok) if target else ""
        out.append(f"| {label} | {load[key]}{unit} | {values} | {target} | {mark} |")
    return [*out, ""]


def _load_rows(m: dict[str, Any]) -> list[tuple[str, str, str, str, bool]]:
    """(label, key, unit, target, met) of the load step's figures."""
    return [
        ("connections on the platform after", "platform_connections_after", "", "", True),
        (
            "daemon start to converged (every create through rate_limit=100/s)",
            "converge_s",
            " s",
            "",
            True,
        ),
        ("steady-state full resync", "resync_s", " s", "< 2 s", m["resync_s"] < 2),
        ("platform writes during that resync", "resync_writes", "", "0", m["resync_writes"] == 0),
        (
            "edit-to-write p50, edit made during a full resync",
            "edit_to_write_p50_ms",
            " ms",
            "",
            True,
        ),
        (
            "edit-to-write p99, edit made during a full resync",
            "edit_to_write_p99_ms",
            " ms",
            "< 250 ms",
            m["edit_to_write_p99_ms"] < 250,
        ),
        (
            "edits written before their resync ended (of `edits`)",
            "edits_written_before_the_resync_ended",
            "",
            "all",
            m["edits_written_before_the_resync_ended"] == m["edits"],
        ),
        ("edits written twice", "edits_written_twice", "", "0", m["edits_written_twice"] == 0),
        (
            "peak RSS of the daemon (VmHWM)",
            "peak_rss_mb",
            " MB",
            "< 200 MB",
            m["peak_rss_mb"] < 200,
        ),
        ("CPU at idle", "idle_cpu_pct", " % of one core", "", True),
    ]


def render_latency(r: dict[str, Any]) -> list[str]:
    out = [
        "## Edit-to-write latency outside a resync (20 connections, emulator latency=20ms)",
        "",
        f"`{r['command']}` ({r['date']})",
        "",
    ]
    runs = [x for x in r["lines"] if "run" in x]
    median = next((x for x in r["lines"] if "median_p50_ms" in x), None)
    if median is None:
        return [*out, "The run failed; see the raw output.", ""]
    p50s = ", ".join(str(x["p50_ms"]) for x in runs)
    p99s = ", ".join(str(x["p99_ms"]) for x in runs)
    ok = median["median_p50_ms"] < 150
    return [
        *out,
        "| figure | median | runs | target | |",
        "|---|---|---|---|---|",
        f"| p50 | {median['median_p50_ms']} ms | {p50s} | < 150 ms | {verdict(ok)} |",
        f"| p99 | {median['median_p99_ms']} ms | {p99s} | | |",
        "",
    ]


def render_crash(r: dict[str, Any]) -> list[str]:
    out = ["## Crash chaos: SIGKILL at random moments", "", f"`{r['command']}` ({r['date']})", ""]
    crash = [x["crash_chaos"] for x in r["lines"] if "crash_chaos" in x]
    if not crash:
        return [*out, "The run failed; see the raw output.", ""]
    out += [
        "| run | connections | kills | faults | converged after the last restart | lost "
        "| doubled or stray | UI-made changed | deletes | `--once` converged | |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in crash:
        out.append(
            f"| {c['run']} | {c['connections']} | {c['kills']} | `{c['faults']}` | "
            f"{c['converge_after_last_restart_s']} s | {c['missing']} | "
            f"{(c['doubled'] or 0) + (c['stray'] or 0)} | {c['unmanaged_changed']} | "
            f"{c['deletes']} | {c['once_converged']} | {verdict(c['ok'])} |"
        )
    lost = sum(c["missing"] or 0 for c in crash)
    doubled = sum((c["doubled"] or 0) + (c["stray"] or 0) for c in crash)
    kills = sum(c["kills"] for c in crash)
    out += [
        "",
        f"Zero lost or doubled connections: {verdict(lost == 0 and doubled == 0)} "
        f"({lost} lost, {doubled} doubled over {len(crash)} runs, {kills} kills).",
        "",
    ]
    return out


def render_outage(r: dict[str, Any]) -> list[str]:
    out = [
        "## Platform outage: emulator SIGKILLed, restarted on its database",
        "",
        f"`{r['command']}` ({r['date']})",
        "",
    ]
    outages = [x["outage"] for x in r["lines"] if "outage" in x]
    if not outages:
        return [*out, "The run failed; see the raw output.", ""]
    out += [
        "| outage | connections | daemon alive | CPU while down | events (info+) up to "
        "`platform.unreachable` | events after it (the retries) | converged after the return | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outages:
        ok = (
            o["daemon_alive_during_outage"]
            and o["cpu_pct_while_down"] < 5
            and o["platform_unreachable_events"] == 1
            and o["events_after_unreachable"] == 0
            and o["recovery_to_converged_s"] < 60
        )
        out.append(
            f"| {o['outage_s']:.0f} s | {o['connections']} | {o['daemon_alive_during_outage']} "
            f"| {o['cpu_pct_while_down']} % of a core | {o['events_to_first_unreachable']} "
            f"| {o['events_after_unreachable']} | {o['recovery_to_converged_s']} s "
            f"| {verdict(ok)} |"
        )
    out += [
        "",
        "Targets: CPU < 5% of one core while down; one event per failure streak (nothing",
        "at info or above after `platform.unreachable`, whatever the outage's length);",
        "converged within 60 s after the platform returns (a rename and a new manifest",
        "made during the outage are on the platform).",
        "",
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--steps", default="load,latency,crash,outage", help="comma-separated")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    out_path = Path(args.out)
    table = QUICK if args.quick else STEPS
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    fresh = {step: run(step, table[step]) for step in steps}
    # The file is read only now, after the steps (which take minutes): sections other
    # benchmarks wrote into it meanwhile are kept too.
    results = {**previous(out_path), **fresh}
    by_hand = kept_sections(out_path)

    lines: list[str] = [
        "# chanops reliability figures (issues 7 and 12)",
        "",
        "Regenerated by `python benchmarks/run_all.py` (one step:",
        "`--steps load|latency|crash|outage`; `--steps ''` renders the raw lines below again).",
        "",
        f"Machine: {machine()}.",
        "",
        "Whole processes throughout: `chanops emulator` (with `--faults`) and `chanops run`",
        "as subprocesses on loopback; figures come from their logs, the emulator's request",
        "counters, the daemon's /metrics and /proc/<pid>/stat and status. See",
        "docs/reliability.md for what each step does and what the suite found.",
        "",
    ]
    render = {
        "load": render_load,
        "latency": render_latency,
        "crash": render_crash,
        "outage": render_outage,
    }
    for step in render:
        if step in results:
            lines += render[step](results[step])
    lines += by_hand
    lines += ["## Raw output", "", RAW_START]
    lines += [json.dumps(results[s]) for s in render if s in results]
    lines += [RAW_END, ""]
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(out_path)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
