"""`--profile core1`: the platform client over Core1's RPC methods, `chanops doctor`, and
the daemon on OAuth speaking RPC, all against the emulator process (issue 13)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from chanops import errors
from chanops.cli import main
from chanops.platform._rpc import RpcPlatformClient
from chanops.platform.client import open_client
from chanops.rpcprofile import load_profile
from daemon.helpers import chanops_launcher
from reliability import test_oauth_daemon as daemon_proof
from reliability.oauth_support import CLIENT_ID, login, oauth_emulator, secret_file
from support.emulator import EmulatorProcess

CREDENTIALS = {"url": "https://shop.example.com", "accessKeyId": "SWIA1", "secretAccessKey": "s"}


def test_every_operation_over_rpc(emulator: EmulatorProcess) -> None:
    async def main() -> None:
        client = open_client(emulator.url, emulator.token, profile=load_profile())
        assert isinstance(client, RpcPlatformClient)
        async with client:
            client.page_size = 2  # several pages of a listing
            drivers = await client.list_drivers()
            assert "shopware6" in {d.name for d in drivers}
            made = [
                await client.create_connection(
                    name=f"rpc-{i}", driver="shopware6", credentials=CREDENTIALS
                )
                for i in range(5)
            ]
            ids = [m.connection.id for m in made]
            listed = await client.list_connections()
            assert [c.id for c in listed] == sorted(ids)
            one = await client.get_connection(ids[0])
            assert (one.name, one.driver) == ("rpc-0", "shopware6")
            renamed = await client.update_connection(
                ids[0], {"name": "rpc-zero"}, if_match=one.version
            )
            assert renamed.name == "rpc-zero" and renamed.version > one.version
            with pytest.raises(errors.PreconditionFailed):
                await client.update_connection(ids[0], {"name": "lost"}, if_match=one.version)
            assert {c.status for c in await client.disable(ids[:2])} == {"inactive"}
            assert {c.status for c in await client.enable(ids[:2])} == {"active"}
            job = await client.trigger_sync(ids[1])
            assert (await client.get_job(job.id)).connection_id == ids[1]
            mine = await client.list_jobs(connection_id=ids[1])
            assert job.id in {j.id for j in mine} and {j.connection_id for j in mine} == {ids[1]}
            await client.disable([ids[4]])
            deleting = await client.delete_connection(ids[4])
            assert deleting.connection_id == ids[4]  # a job: the platform deletes it later
            with pytest.raises(errors.NotFound):
                await client.get_connection(10_000)

    asyncio.run(main())


def _doctor_args(emu: EmulatorProcess, tmp: Path) -> list[str]:
    return [
        "doctor",
        "--manifests",
        str(tmp / "connections.d"),
        "--platform",
        emu.url,
        "--client-id",
        CLIENT_ID,
        "--client-secret-file",
        str(secret_file(tmp)),
        "--state",
        str(tmp / "state" / "state.db"),
        "--profile",
        "core1",
    ]


def _doctor(emu: EmulatorProcess, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*chanops_launcher(), *_doctor_args(emu, tmp)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp,
    )


def test_doctor_confirms_the_profile_and_names_what_does_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with oauth_emulator(tmp_path, ttl="1h") as emu:
        cid = emu.admin.marketplace_install("shopware6", "ui-made", CREDENTIALS)
        emu.admin.post(f"/api/v1/connections/{cid}/sync")
        missing = _doctor(emu, tmp_path)
        assert missing.returncode == 1
        assert "FAIL  token" in missing.stdout and "run chanops login" in missing.stdout

        login(emu, tmp_path / "state" / "state.db", secret_file(tmp_path))
        good = _doctor(emu, tmp_path)
        assert good.returncode == 0, good.stdout + good.stderr
        for op in (
            "token",
            "list_drivers",
            "list_connections",
            "get_connection",
            "list_jobs",
            "get_job",
        ):
            assert f"ok    {op}" in good.stdout, good.stdout
        assert "Actindo.Modules.Actindo.Channels.Connections.getList" in good.stdout

        (tmp_path / "chanops.yaml").write_text(
            "core1Profile:\n  operations:\n    get_connection:\n"
            "      method: Actindo.Modules.Actindo.Channels.Connections.read\n"
        )
        wrong = _doctor(emu, tmp_path)
        assert wrong.returncode == 1
        assert "FAIL  get_connection" in wrong.stdout
        assert "ok    list_connections" in wrong.stdout
        assert "override them under core1Profile" in wrong.stdout
        assert "Traceback" not in wrong.stderr

        (tmp_path / "chanops.yaml").write_text("core1Profile:\n  operations:\n    get_job: 3\n")
        # A refusal of the settings, before any call: in process (a process start less).
        monkeypatch.chdir(tmp_path)
        broken = CliRunner().invoke(main, _doctor_args(emu, tmp_path))
        assert broken.exit_code == 1 and broken.stdout == ""
        lines = [line for line in broken.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "core1Profile" in lines[0] and "get_job" in lines[0], lines


def test_edits_reach_the_platform_over_rpc_while_tokens_rotate(tmp_path: Path) -> None:
    """The quick form of the rotation proof (the two-minute forms, REST and RPC, are slow)."""
    with oauth_emulator(tmp_path, ttl="2s", rotate=True) as emu:
        daemon_proof.run_edits(
            tmp_path, emu, seconds=6, min_refreshes=3, extra=["--profile", "core1"]
        )


@pytest.mark.slow
def test_two_minutes_of_edits_over_rpc_while_tokens_rotate(tmp_path: Path) -> None:
    with oauth_emulator(tmp_path, ttl="2s", rotate=True) as emu:
        daemon_proof.run_edits(
            tmp_path, emu, seconds=120, min_refreshes=30, extra=["--profile", "core1"]
        )
