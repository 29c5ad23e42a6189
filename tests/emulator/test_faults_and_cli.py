"""Fault specs (pure) and the `chanops emulator` command line as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from chanops.emulator.faults import FaultInjector, FaultSpec, parse_faults
from chanops.emulator.rules import merge_patch
from support.emulator import EmulatorProcess, free_port

CHANOPS = str(Path(sys.executable).parent / "chanops")


def test_parse_faults_reads_every_kind() -> None:
    spec = parse_faults(
        "latency=50ms,jitter=0.02s,error_rate=0.1,rate_limit=20/s,reset_rate=0.01,seed=7"
    )
    assert spec == FaultSpec(0.05, 0.02, 0.1, 20.0, 0.01, 7)
    assert parse_faults(None) == FaultSpec() and not FaultSpec().any


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("error_rate=2", "between 0 and 1"),
        ("rate_limit=fast", "like 20/s"),
        ("latency=soon", "duration"),
        ("gremlins=1", "unknown fault"),
        ("seed", "key=value"),
    ],
)
def test_parse_faults_explains_mistakes(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_faults(text)


def test_same_seed_same_faults() -> None:
    def outcomes(seed: int) -> list[str]:
        inj = FaultInjector(parse_faults(f"error_rate=0.5,reset_rate=0.1,seed={seed}"))
        return [f"{d.outcome}/{d.when}" for d in (inj.decide() for _ in range(50))]

    assert outcomes(1) == outcomes(1) != outcomes(2)
    assert {"error/before", "error/after", "ok/before"} <= set(outcomes(1))


def test_token_bucket_limits_to_the_rate() -> None:
    now = [0.0]
    inj = FaultInjector(parse_faults("rate_limit=10/s"), clock=lambda: now[0])
    first_second = [inj.decide().outcome for _ in range(15)]
    assert first_second.count("ok") == 10 and first_second[-1] == "rate_limited"
    now[0] += 0.1  # one token refilled
    assert inj.decide().outcome == "ok" and inj.decide().outcome == "rate_limited"


def test_merge_patch_is_rfc7396() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(target, {"a": {"b": None, "c": [3]}, "e": {"f": None}}) == {
        "a": {"c": [3]},
        "d": 1,
        "e": {},
    }


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    full_env.update(env or {})
    return subprocess.run(
        [CHANOPS, "emulator", *args], capture_output=True, text=True, env=full_env, timeout=30
    )


def test_cli_rejects_bad_faults_and_missing_token(tmp_path: Path) -> None:
    out = run_cli("--db", str(tmp_path / "e.db"), "--token", "t", "--faults", "error_rate=3")
    assert out.returncode == 2 and "between 0 and 1" in out.stderr
    out = run_cli("--db", str(tmp_path / "e.db"))
    assert out.returncode == 2 and "CHANOPS_EMULATOR_TOKEN" in out.stderr
    out = run_cli("--db", str(tmp_path / "e.db"), "--token", "t", "--drivers", "ebay")
    assert out.returncode == 2 and "unknown driver" in out.stderr


def test_cli_token_from_env_and_request_log_on_stderr(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    env["CHANOPS_EMULATOR_TOKEN"] = "from-env"
    proc = subprocess.Popen(
        [
            CHANOPS,
            "emulator",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "x" / "e.db"),
            "--log-format",
            "json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        emu = EmulatorProcess(tmp_path, port=port, token="from-env")
        for _ in range(200):
            try:
                if emu.admin.request("GET", "/api/v1/drivers").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            subprocess.run(["sleep", "0.05"], check=True)
        assert emu.admin.request("GET", "/api/v1/drivers").status_code == 200
    finally:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Application shutdown complete" in stderr
    assert '"event": "emulator.request"' in stderr and "/api/v1/drivers" in stderr
    assert "from-env" not in stderr + stdout
    assert (tmp_path / "x" / "e.db").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_is_a_clean_stop(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop the emulator cleanly: exit 0, no click
    "Aborted!", no traceback (uvicorn re-raised the signal after its shutdown)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
    command = [CHANOPS, "emulator", "--port", str(port), "--db", ":memory:", "--token", "t"]
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as in a terminal: SIGINT raises KeyboardInterrupt (a shell's `&` ignores it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )
    try:
        emu = EmulatorProcess(tmp_path, port=port, token="t")
        for _ in range(200):
            try:
                if emu.admin.request("GET", "/api/v1/drivers").status_code == 200:
                    break
            except httpx.HTTPError:
                subprocess.run(["sleep", "0.05"], check=True)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "Aborted" not in stdout + stderr and "Traceback" not in stderr
    assert "Application shutdown complete" in stderr
    assert f"emulator stopped ({sig.name})" in stderr
