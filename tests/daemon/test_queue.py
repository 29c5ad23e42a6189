"""The work queue's laws, in process with a fake clock (daemon/_queue.py)."""

from __future__ import annotations

import asyncio

import pytest

from chanops.daemon._queue import Batch, Cause, Failure, Lane, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def queue(clock: Clock | None = None, **kw: int) -> WorkQueue:
    return WorkQueue(clock=clock or Clock(), **kw)


def take(q: WorkQueue) -> Batch:
    batch = q.take()
    assert batch is not None
    return batch


def test_add_is_idempotent() -> None:
    q = queue()
    q.add(["a", "b"], Cause.EDIT)
    q.add(["a"], Cause.EDIT)
    q.add(["b"], Cause.RETRY)
    batch = take(q)
    assert batch.names == ("a", "b") and batch.lane is Lane.URGENT
    assert batch.reason == "files changed"
    assert q.take() is None


def test_a_name_is_never_handed_to_two_workers_and_an_add_meanwhile_is_not_lost() -> None:
    q = queue()
    q.add(["a"], Cause.EDIT)
    first = take(q)
    q.add(["a"], Cause.EDIT)  # edited again while a worker has it
    q.add(["a", "b"], Cause.EDIT)
    second = take(q)
    assert second.names == ("b",)  # a is busy: not in a second batch
    assert q.take() is None
    q.done(first, settled=["a"])
    again = take(q)  # dirty: queued again once its worker is done
    assert again.names == ("a",) and again.causes["a"] is Cause.EDIT
    q.done(second, settled=["b"])
    q.done(again, settled=["a"])
    assert q.take() is None  # once, not once per add


def test_edits_and_due_retries_go_before_resync_names() -> None:
    q = queue(resync_batch=200)
    q.add([f"r{i:04}" for i in range(10_000)], Cause.RESYNC)
    q.add(["r0500", "edited"], Cause.EDIT)  # r0500 leaves the resync lane: one reconcile
    batch = take(q)
    assert batch.lane is Lane.URGENT and batch.names == ("r0500", "edited")
    resync = take(q)  # one resync batch may run beside urgent work
    assert resync.lane is Lane.RESYNC and len(resync.names) == 200
    assert "r0500" not in resync.names
    seen = set(resync.names)
    q.done(resync, settled=resync.names)
    q.done(batch, settled=batch.names)
    while (b := q.take()) is not None:
        seen |= set(b.names)
        q.done(b, settled=b.names)
    assert len(seen) == 9_999 and "r0500" not in seen
    assert not q.resync_pending()


def test_one_resync_batch_runs_beside_urgent_work() -> None:
    q = queue(resync_batch=2, resync_slots=3)
    q.add(["a", "b", "c", "d", "e", "f", "g", "h"], Cause.RESYNC)
    r1, r2 = take(q), take(q)
    assert (r1.lane, r2.lane) == (Lane.RESYNC, Lane.RESYNC)  # slots allow more at once
    q.add(["x"], Cause.EDIT)
    urgent = take(q)
    assert urgent.names == ("x",)
    assert q.take() is None  # urgent work runs: no more resync batches start
    q.done(r1, settled=r1.names)
    q.done(r2, settled=r2.names)
    r3 = take(q)
    assert r3.lane is Lane.RESYNC
    assert q.take() is None  # one beside urgent work, not more: a stream of edits
    q.done(urgent, settled=urgent.names)  # cannot stall the resync, nor compete with it
    assert take(q).lane is Lane.RESYNC


def test_failures_come_back_with_their_own_backoff() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(["a", "b"], Cause.EDIT)
    batch = take(q)
    retries = q.done(batch, settled=["b"], failed={"a": Failure("server_error: boom")})
    assert [(n, r.delay, r.failures) for n, r in retries] == [("a", 1.0, 1)]
    assert q.take() is None and q.next_due() == clock.now + 1.0
    clock.now += 1.0
    retry = take(q)
    assert retry.names == ("a",) and retry.reason == "retry" and retry.retries == ["a"]
    (_, again), *_ = q.done(retry, failed={"a": Failure("server_error: boom")})
    assert again.delay == 2.0 and again.failures == 2
    clock.now += 1.9
    assert q.take() is None
    clock.now += 0.1
    ok = take(q)
    q.done(ok, settled=["a"])
    assert q.backoff.get("a") is None  # a success resets the backoff


def test_an_edit_does_not_wait_for_the_backoff() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(["a"], Cause.EDIT)
    q.done(take(q), failed={"a": Failure("server_error: boom")})
    q.forget(["a"])  # its manifest changed
    q.add(["a"], Cause.EDIT)
    assert take(q).names == ("a",)
    assert q.backoff.get("a") is None


def test_a_refusal_parks_the_name_until_its_manifest_changes() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(["a"], Cause.EDIT)
    (_, parked), *_ = q.done(take(q), failed={"a": Failure("invalid_credentials: no", True)})
    assert parked.terminal and q.parked("a") and q.next_due() is None
    clock.now += 10_000
    assert q.take() is None  # never retried by itself
    q.add(["a"], Cause.RESYNC, include_parked=False)  # a periodic resync skips it
    assert q.take() is None
    q.add(["a"], Cause.RESYNC)  # SIGHUP, startup, a new root: planned again
    assert take(q).names == ("a",)


def test_a_parked_name_comes_back_when_its_manifest_changes() -> None:
    q = queue()
    q.add(["a"], Cause.EDIT)
    q.done(take(q), failed={"a": Failure("driver_not_installed: no", True)})
    q.forget(["a"])
    assert not q.parked("a")
    q.add(["a"], Cause.EDIT)
    assert take(q).names == ("a",)


def test_an_outage_releases_names_without_backoff_and_pauses() -> None:
    q = queue(resync_batch=1)
    q.add(["a", "b", "c"], Cause.RESYNC)
    batch = take(q)
    q.pause()
    q.clear_resync()
    q.done(batch)  # cut short: neither settled nor failed
    assert q.backoff.get("a") is None
    assert not q.resync_pending() and q.take() is None
    q.add(["x"], Cause.EDIT)
    assert q.take() is None  # paused: waits for the platform
    q.resume()
    assert take(q).names == ("x",)


def test_resync_pending_covers_names_due_back_after_an_urgent_batch() -> None:
    q = queue()
    q.add(["a"], Cause.EDIT)
    urgent = take(q)
    q.add(["a", "b"], Cause.RESYNC)  # a resync starts while a is being edited
    resync = take(q)
    assert resync.names == ("b",)
    q.done(resync, settled=["b"])
    assert q.resync_pending()  # a comes back to the resync
    q.done(urgent, settled=["a"])
    again = take(q)
    assert again.lane is Lane.RESYNC and again.names == ("a",)
    q.done(again, settled=["a"])
    assert not q.resync_pending()


async def test_stopping_abandons_urgent_work_and_finishes_the_resync() -> None:
    q = queue(resync_batch=1)
    q.add(["a", "b"], Cause.RESYNC)
    q.add(["x"], Cause.EDIT)
    q.close()
    first = await q.get()
    assert first is not None and first.lane is Lane.RESYNC
    q.done(first, settled=first.names)
    q.finish()
    second = await q.get()
    assert second is not None and second.names == ("b",)
    q.done(second, settled=second.names)
    assert await asyncio.wait_for(q.get(), 1) is None


async def test_get_wakes_for_an_add_and_for_a_due_retry() -> None:
    q = WorkQueue()  # the real clock: a retry 1 s away
    waiter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.add(["a"], Cause.EDIT)
    batch = await asyncio.wait_for(waiter, 1)
    assert batch is not None
    q.done(batch, failed={"a": Failure("boom")})
    retry = await asyncio.wait_for(q.get(), 3)
    assert retry is not None and retry.reason == "retry"


@pytest.mark.parametrize("cause", [Cause.EDIT, Cause.RETRY])
def test_urgent_batches_are_capped(cause: Cause) -> None:
    q = queue(urgent_batch=3)
    q.add(["a", "b", "c", "d"], cause)
    assert take(q).names == ("a", "b", "c")
    assert take(q).names == ("d",)


def test_an_outage_ends_the_resync_once_its_batches_in_flight_end() -> None:
    """Names due back to the resync (edited meanwhile) would never run while the queue
    is paused: the resync must not wait for them."""
    q = queue(resync_batch=1)
    q.add(["a", "b"], Cause.RESYNC)
    resync = take(q)
    q.add(["x"], Cause.EDIT)
    urgent = take(q)
    q.add(list(resync.names), Cause.EDIT)  # edited while its resync batch runs: owed
    q.add(["x"], Cause.RESYNC)  # and x is due back to the resync
    q.pause()
    q.clear_resync()
    q.done(urgent)
    assert q.resync_pending()  # the resync batch still runs
    q.done(resync)
    assert not q.resync_pending()
