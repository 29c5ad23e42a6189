"""Secret hygiene (issue 7): no resolved secret value in any artefact chanops produces.

One end-to-end story with env and file secrets (and a rotation of each): validate, plan
in every format, apply, a daemon at debug level with edits, /status, /metrics, status,
export, a refused write and a failing secret reference. Every output and every file
chanops wrote (logs, the state database with its WAL, the export) is searched
byte-for-byte for every secret value (raw, JSON-escaped and UTF-16). The emulator's own
database is the platform and is expected to hold them; it is not searched.

An autouse fixture in conftest.py also searches every file the other reliability tests
leave in tmp_path for the suite's shared secret.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from daemon.helpers import chanops_launcher, manifest, wait_until, write_atomic
from reliability.helpers import converged_full, files_under, find_leaks, start_daemon
from support.emulator import EmulatorProcess

ENV_SECRET = "env-S3CRET-7d1b9f"
ENV_ROTATED = "env-R0TATED-44e0aa"
FILE_SECRET = "file-S3CRET-c02e51"
FILE_ROTATED = "file-R0TATED-9a8b7c"
SFTP_SECRET = "sftp-S3CRET-0f3c2d"
# A value that looks like structure: it must be redacted as a whole, not split.
ODD_SECRET = 'odd "quoted" \\ S3CRET ünïcode'
SECRETS = [ENV_SECRET, ENV_ROTATED, FILE_SECRET, FILE_ROTATED, SFTP_SECRET, ODD_SECRET]


def tradebyte(name: str, display: str | None = None) -> str:
    return (
        "apiVersion: chanops/v1\n"
        "kind: Connection\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n"
        f"  displayName: {display or name}\n"
        "  driver: tradebyte\n"
        "  credentials:\n"
        '    merchantNumber: "4711"\n'
        "    shopName: example-fashion\n"
        "    restUsername: chanops\n"
        "    restPassword: {secretRef: {file: rest-password}}\n"
        "    sftpUsername: chanops-sftp\n"
        "    sftpPassword: {secretRef: {env: SFTP_SECRET}}\n"
    )


class Cli:
    def __init__(self, tmp: Path, emu: EmulatorProcess, root: Path, env: dict[str, str]) -> None:
        self.tmp, self.emu, self.root = tmp, emu, root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CHANOPS_")}
        self.env.update(env)
        self.outputs: dict[str, bytes] = {}

    def __call__(self, label: str, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        common = [
            "--manifests",
            str(self.root),
            "--platform",
            self.emu.url,
            "--token",
            self.emu.token,
            "--state",
            str(self.tmp / "state" / "state.db"),
        ]
        cmd = [*chanops_launcher(), args[0], *common, *args[1:]]
        if args[0] == "validate":
            cmd = [*chanops_launcher(), "validate", str(self.root), *args[1:]]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, timeout=120, check=False)
        out = proc.stdout + b"\n--- stderr ---\n" + proc.stderr
        self.outputs[label] = out
        assert proc.returncode in ok, f"{label}: exit {proc.returncode}\n{out.decode()[-3000:]}"
        return proc.stdout.decode()


def test_no_secret_in_any_artefact(tmp_path: Path, emulator: EmulatorProcess) -> None:
    root = tmp_path / "connections.d"
    secrets = tmp_path / "secrets"  # the default secrets dir beside the root
    secrets.mkdir()
    (secrets / "rest-password").write_text(FILE_SECRET + "\n")
    write_atomic(root / "sw.yaml", manifest("sw", secret_env="ENV_SECRET"))
    write_atomic(root / "odd.yaml", manifest("odd", secret_env="ODD_SECRET"))
    write_atomic(root / "tb.yaml", tradebyte("tb"))
    env = {"ENV_SECRET": ENV_SECRET, "SFTP_SECRET": SFTP_SECRET, "ODD_SECRET": ODD_SECRET}
    cli = Cli(tmp_path, emulator, root, env)

    cli("validate", "validate", "--format", "json")
    for fmt in ("text", "json", "markdown"):
        cli(f"plan-{fmt}", "plan", "--format", fmt, "--detailed-exitcode", ok=(2,))
    cli("apply", "apply", "--yes", "--log-level", "debug")
    # Rotations: a new env value and a new file content must show as (sensitive) changes.
    cli.env["ENV_SECRET"] = ENV_ROTATED
    (secrets / "rest-password").write_text(FILE_ROTATED + "\n")
    for fmt in ("text", "json", "markdown"):
        out = cli(f"plan-rotated-{fmt}", "plan", "--format", fmt, "--detailed-exitcode", ok=(2,))
        assert "sw" in out and "tb" in out
    cli("status", "status", "--format", "json")
    cli("export", "export", "--out", str(tmp_path / "export"), "--force")

    # The daemon, at debug level: every request and retry narrated, still no secret.
    d = start_daemon(
        tmp_path, emulator, root, resync="1s", extra=["--log-level", "debug"], env=cli.env
    )
    try:
        d.wait_event(lambda e: converged_full([e]) is not None, timeout=30)
        mark = d.mark()
        write_atomic(root / "sw.yaml", manifest("sw", display="sw two", secret_env="ENV_SECRET"))
        d.wait_event(lambda e: e["event"] == "connection.updated", after=mark)
        # A failing reference (missing env var) and a platform refusal (bad URL) both
        # produce error messages; neither may carry a value.
        write_atomic(root / "broken.yaml", manifest("broken", secret_env="NOT_SET_ANYWHERE"))
        write_atomic(
            root / "refused.yaml",
            manifest("refused", secret_env="ENV_SECRET").replace(
                "https://shop.example.com", "ftp://" + ENV_ROTATED
            ),
        )
        wait_until(
            lambda: (
                sum(
                    1
                    for e in d.events()[mark:]
                    if e.get("connection") in ("broken", "refused") and e["level"] == "error"
                )
                >= 2
            ),
            what="errors for broken and refused",
            timeout=20,
        )
        endpoints = {p: d.http(p).content for p in ("/status", "/metrics", "/healthz", "/readyz")}
        assert d.stop() == 0
    finally:
        d.kill()
    for label, body in endpoints.items():
        cli.outputs[f"http {label}"] = body
    cli.outputs["daemon log"] = d.output().encode()

    artefacts = dict(cli.outputs)
    for name, blob in files_under(tmp_path / "state").items():
        artefacts[f"state/{name}"] = blob
    for name, blob in files_under(tmp_path / "export").items():
        artefacts[f"export/{name}"] = blob
    assert any(name.startswith("state/state.db") for name in artefacts)
    leaks = find_leaks(SECRETS, artefacts)
    assert leaks == [], leaks
    # The daemon did its work (a clean log because nothing happened would prove nothing).
    assert b"connection.updated" in artefacts["daemon log"]
    assert b"(sensitive" in artefacts["plan-rotated-text"]
