"""A setting refused because the first sync had not ended, just as it ends.

The platform refuses a value its data model does not know yet (`unknown_value`) until
the connection's first sync has succeeded; chanops then waits (AwaitingInitialSync).
When that sync ends between the refusal and chanops's look at the jobs, the value is
asked for once more instead of being reported as refused (Stalled). In memory: the
timing cannot be arranged over HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from chanops import errors
from chanops.engine.reconciler import EngineOptions, Reconciler
from chanops.manifests.model import Manifest, SecretRef, SourceLocation
from chanops.platform.models import Connection, Job
from chanops.state.store import StateStore
from engine.fake_platform import FakePlatform
from engine.helpers import load_result


class SyncEndsAfterTheRefusal(FakePlatform):
    """The first settings write is refused; by the time anyone looks, the sync is over."""

    def __init__(self, *, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.refused = 0

    async def update_connection(
        self, connection_id: int, patch: Mapping[str, Any], *, if_match: int | None = None
    ) -> Connection:
        if "settings" in patch and self.refused < self.refusals:
            self.refused += 1
            raise errors.UnknownValue("settings.defaultLanguage: not known yet")
        return await super().update_connection(connection_id, patch, if_match=if_match)

    async def list_jobs(
        self, *, connection_id: int | None = None, state: str | None = None
    ) -> list[Job]:
        assert connection_id is not None
        return [Job(id=1, kind="initial_sync", connection_id=connection_id, state="succeeded")]


def shop(**kw: Any) -> Manifest:
    creds = {
        "url": "https://s.example.com",
        "accessKeyId": "K",
        "secretAccessKey": SecretRef(env="S"),
    }
    return Manifest(
        name="sw",
        driver="shopware6",
        display_name="SW",
        credentials=creds,
        source=SourceLocation("sw.yaml", 1, 1),
        **kw,
    )


async def reconcile_twice(platform: FakePlatform, tmp_path: Path) -> tuple[Any, StateStore]:
    store = StateStore.open(tmp_path / "state.db")
    rec = Reconciler(
        client=platform, store=store, options=EngineOptions(environ={"S": "sw-secret-value"})
    )
    m = shop()
    assert (await rec.reconcile(load_result([m]))).converged
    result = await rec.reconcile(load_result([replace(m, settings={"defaultLanguage": "de-DE"})]))
    return result, store


async def test_a_refusal_just_before_the_first_sync_ended_is_asked_again(tmp_path: Path) -> None:
    platform = SyncEndsAfterTheRefusal(refusals=1)
    result, store = await reconcile_twice(platform, tmp_path)
    assert result.converged, result.outcomes
    (row,) = platform.rows.values()
    assert row.settings == {"defaultLanguage": "de-DE"}
    record = store.get("sw")
    assert record is not None and "Stalled" not in {c.type.value for c in record.conditions}
    store.close()


async def test_a_refusal_after_the_first_sync_stands(tmp_path: Path) -> None:
    platform = SyncEndsAfterTheRefusal(refusals=2)
    result, store = await reconcile_twice(platform, tmp_path)
    (outcome,) = result.outcomes
    assert not outcome.ok and outcome.info is not None
    assert (outcome.info.code, outcome.info.refusal) == ("unknown_value", True)
    assert platform.refused == 2  # asked once more, not in a loop
    store.close()
