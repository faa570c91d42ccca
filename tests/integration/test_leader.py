"""Leader leases on both databases: races, expiry, release, and jobs that run only on the leader."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time

import pytest
import sqlalchemy as sa

from shared.clock import ManualClock, SystemClock
from shared.db import create_engine, new_metadata
from shared.leader import LeaderLease, leases_table, run_while_leader

metadata = new_metadata()
leases = leases_table(metadata)
TTL = dt.timedelta(seconds=30)
_names = itertools.count()


@pytest.fixture(scope="module")
async def engine(db_url):
    engine = create_engine(db_url, pool_size=20)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock():
    return ManualClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


@pytest.fixture
def name():
    """A lease of its own for each test."""
    return f"job-{next(_names)}"


async def holder(engine, name):
    async with engine.connect() as connection:
        return (
            await connection.execute(sa.select(leases.c.holder).where(leases.c.name == name))
        ).scalar()


async def eventually(condition, within=2.0):
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def stop(task):
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_of_many_concurrent_contenders_exactly_one_wins(engine, clock, name):
    for round_ in range(3):
        contenders = [
            LeaderLease(engine, leases, f"{name}-{round_}", f"replica-{i}", TTL, clock)
            for i in range(12)
        ]
        won = await asyncio.gather(*(lease.try_acquire() for lease in contenders))
        assert won.count(True) == 1
        winner = contenders[won.index(True)].holder_id
        assert await holder(engine, f"{name}-{round_}") == winner


async def test_the_holder_renews_and_others_wait_for_expiry(engine, clock, name):
    a = LeaderLease(engine, leases, name, "a", TTL, clock)
    b = LeaderLease(engine, leases, name, "b", TTL, clock)
    assert await a.try_acquire()
    assert not await b.try_acquire()

    clock.advance(TTL / 2)
    assert await a.try_acquire()  # renewed: valid for a full ttl from now
    clock.advance(TTL / 2 + dt.timedelta(seconds=1))
    assert not await b.try_acquire()

    clock.advance(TTL / 2)  # a died and did not renew
    assert await b.try_acquire()
    assert not await a.try_acquire()
    assert await holder(engine, name) == "b"


async def test_release_hands_the_lease_over_at_once(engine, clock, name):
    a = LeaderLease(engine, leases, name, "a", TTL, clock)
    b = LeaderLease(engine, leases, name, "b", TTL, clock)
    assert await a.try_acquire()
    await b.release()  # not b's to release
    assert not await b.try_acquire()
    await a.release()
    assert await b.try_acquire()


async def test_the_job_runs_only_on_the_leader_and_moves_on_release(engine, name):
    runs: list[str] = []

    def replica(holder_id):
        lease = LeaderLease(
            engine, leases, name, holder_id, dt.timedelta(seconds=0.6), SystemClock()
        )

        async def job():
            runs.append(holder_id)

        return asyncio.create_task(run_while_leader(lease, job, interval=0.02))

    tasks = {holder_id: replica(holder_id) for holder_id in ("a", "b", "c")}
    await eventually(lambda: len(runs) >= 10)
    (leader,) = set(runs)
    assert await holder(engine, name) == leader

    await stop(tasks.pop(leader))  # graceful shutdown releases the lease
    count = len(runs)
    # A follower retries every ttl/3 = 0.2 s, well before the 0.6 s ttl would run out.
    await eventually(lambda: len(runs) > count + 5, within=0.5)
    (successor,) = set(runs[count:])
    assert successor != leader
    for task in tasks.values():
        await stop(task)


async def test_a_leader_that_cannot_renew_steps_down(engine, name):
    running = asyncio.Event()
    stopped = asyncio.Event()

    async def job():  # runs until cancelled, like a relay
        running.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    lease = LeaderLease(engine, leases, name, "a", dt.timedelta(seconds=0.6), SystemClock())
    task = asyncio.create_task(run_while_leader(lease, job, interval=0.02))
    try:
        await asyncio.wait_for(running.wait(), 1)
        # Another replica took over (say "a" was paused past its ttl).
        async with engine.begin() as connection:
            await connection.execute(
                sa.update(leases)
                .where(leases.c.name == name)
                .values(
                    holder="intruder",
                    expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
                )
            )
        await asyncio.wait_for(stopped.wait(), 0.5)
        assert not task.done()  # back to following
    finally:
        await stop(task)
    assert await holder(engine, name) == "intruder"
