"""The outbox on both databases: writing, relaying, streaming, pruning; commit-order races."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time

import pytest
import sqlalchemy as sa

from shared.clock import ManualClock
from shared.db import create_engine, new_metadata
from shared.errors import FailedPrecondition
from shared.ids import SequentialIds
from shared.metrics import REGISTRY
from shared.outbox import (
    Backoff,
    NewEvent,
    OutboxRecord,
    OutboxRelay,
    OutboxWriter,
    feed,
    outbox_table,
    prune,
)
from shared.uow import session_factory

metadata = new_metadata()
outbox = outbox_table(metadata)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SERVICE = "outbox_test"
POLL = 0.02


async def create_schema(url):
    engine = create_engine(url, pool_size=10)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    return engine


@pytest.fixture(scope="module")
async def module_engine(db_url):
    engine = await create_schema(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def engine(module_engine):
    async with module_engine.begin() as connection:
        await connection.execute(sa.delete(outbox))
    return module_engine


@pytest.fixture
def clock():
    return ManualClock(T0)


@pytest.fixture
def writer(clock):
    return OutboxWriter(outbox, clock, SequentialIds())


def event(event_type="points.earned", program_id="prg_1"):
    return NewEvent(event_type, program_id, "cus_1", event_type.encode(), T0)


async def write(engine, writer, *events):
    async with session_factory(engine)() as session:
        ids = await writer.add_many(session, events)
        await session.commit()
    return ids


async def stored(engine):
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.select(outbox.c.sequence, outbox.c.event_id, outbox.c.delivered_at).order_by(
                outbox.c.sequence
            )
        )
        return rows.all()


def make_relay(engine, clock, deliver, **options):
    options.setdefault("poll_interval", POLL)
    options.setdefault("backoff", Backoff(initial=0.02, maximum=0.1))
    return OutboxRelay(engine, outbox, service=SERVICE, deliver=deliver, clock=clock, **options)


async def eventually(condition, within=2.0):
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Consumer:
    """Reads a feed in a task until stopped, keeping what it got."""

    def __init__(self, engine, **options):
        self.records: list[OutboxRecord] = []
        self.stop = asyncio.Event()
        options.setdefault("after_sequence", 0)
        options["stop"] = self.stop
        self._task = asyncio.create_task(self._consume(feed(engine, outbox, **options)))

    async def _consume(self, records):
        async for record in records:
            self.records.append(record)

    @property
    def event_ids(self):
        return [record.event_id for record in self.records]

    async def close(self):
        self.stop.set()
        await asyncio.wait_for(self._task, 2)


def lag_gauge():
    return REGISTRY.get_sample_value("loyalty_outbox_lag_seconds", {"service": SERVICE})


# ------------------------------------------------------------------------------- writer


async def test_events_get_ids_and_increasing_sequences_in_one_insert(engine, writer):
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with session_factory(engine)() as session:
            ids = await writer.add_many(session, [event("a"), event("b"), event("c")])
            one = await writer.add(
                session,
                event_type="d",
                program_id="prg_2",
                customer_id=None,
                payload=b"\x00\xff",
                occurred_at=T0,
            )
            await session.commit()
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", count)

    assert sum("INSERT" in statement for statement in statements) == 2
    rows = await stored(engine)
    assert [row.event_id for row in rows] == [*ids, one]
    assert [row.sequence for row in rows] == sorted({row.sequence for row in rows})
    assert all(row.delivered_at is None for row in rows)
    async with engine.connect() as connection:
        last = (await connection.execute(sa.select(outbox).where(outbox.c.event_id == one))).one()
    assert (last.program_id, last.customer_id, last.payload) == ("prg_2", None, b"\x00\xff")


async def test_a_rolled_back_transaction_leaves_no_event(engine, writer):
    async with session_factory(engine)() as session:
        await writer.add_many(session, [event(), event()])
        await session.rollback()
    assert await stored(engine) == []


# -------------------------------------------------------------------------------- relay


async def test_the_relay_delivers_every_event_in_order_and_marks_it(engine, writer, clock):
    ids = await write(engine, writer, *(event(f"t{i}") for i in range(5)))
    batches: list[list[str]] = []

    async def deliver(records):
        batches.append([record.event_id for record in records])

    relay = make_relay(engine, clock, deliver, batch_size=2)
    clock.advance(dt.timedelta(seconds=3))
    while await relay.run_once():
        pass

    assert batches == [ids[0:2], ids[2:4], ids[4:5]]
    assert all(row.delivered_at is not None for row in await stored(engine))


async def test_other_event_types_are_marked_without_a_call(engine, writer, clock):
    ids = await write(engine, writer, event("wanted"), event("other"), event("wanted"))
    delivered: list[str] = []

    async def deliver(records):
        delivered.extend(record.event_id for record in records)

    relay = make_relay(engine, clock, deliver, event_types={"wanted"})
    assert await relay.run_once() == 3
    assert delivered == [ids[0], ids[2]]
    assert all(row.delivered_at is not None for row in await stored(engine))


async def test_a_failing_delivery_is_retried_with_backoff_and_nothing_is_skipped(
    engine, writer, clock
):
    ids = await write(engine, writer, event(), event(), event())
    attempts: list[tuple[float, list[str]]] = []

    async def deliver(records):
        attempts.append((time.monotonic(), [record.event_id for record in records]))
        if len(attempts) <= 3:
            raise ConnectionError("receiver unavailable")

    relay = make_relay(engine, clock, deliver, backoff=Backoff(initial=0.04, maximum=1.0))
    task = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(2):
            while any(row.delivered_at is None for row in await stored(engine)):
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert [batch for _, batch in attempts] == [ids] * 4
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(attempts)]
    # Equal jitter: the n-th wait is between half and all of 0.04 * 2**(n-1).
    assert [gap >= 0.02 * 2**n for n, gap in enumerate(gaps)] == [True, True, True]


async def test_a_crash_between_delivery_and_marking_delivers_again(engine, writer, clock):
    ids = await write(engine, writer, event(), event())
    first: list[str] = []
    hang = asyncio.Event()

    async def deliver_then_die(records):
        first.extend(record.event_id for record in records)
        await hang.wait()  # the process dies here, after the receiver got the events

    crashed = asyncio.create_task(make_relay(engine, clock, deliver_then_die).run())
    await eventually(lambda: first == ids)
    crashed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crashed
    assert all(row.delivered_at is None for row in await stored(engine))

    again: list[str] = []

    async def deliver(records):
        again.extend(record.event_id for record in records)

    assert await make_relay(engine, clock, deliver).run_once() == 2
    assert again == ids


async def test_notify_wakes_the_relay_before_its_poll_interval(engine, writer, clock):
    delivered: list[str] = []

    async def deliver(records):
        delivered.extend(record.event_id for record in records)

    relay = make_relay(engine, clock, deliver, poll_interval=30)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.05)  # the relay found nothing and waits
        ids = await write(engine, writer, event())
        relay.notify()
        await eventually(lambda: delivered == ids, within=1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # A relay that stopped (e.g. stepped down) reports no lag any more.
    assert lag_gauge() is None


async def test_the_relay_reports_the_age_of_the_oldest_undelivered_event(engine, writer, clock):
    await write(engine, writer, event(), event())
    clock.advance(dt.timedelta(seconds=42))
    failing = True

    async def deliver(records):
        if failing:
            raise ConnectionError("receiver unavailable")

    relay = make_relay(engine, clock, deliver)
    with pytest.raises(ConnectionError):
        await relay.run_once()
    assert relay.lag_seconds == 42
    assert lag_gauge() == 42

    failing = False
    assert await relay.run_once() == 2
    assert await relay.run_once() == 0
    assert relay.lag_seconds == 0
    assert lag_gauge() == 0


def test_backoff_doubles_up_to_its_maximum_with_jitter():
    backoff = Backoff(initial=1.0, maximum=8.0)
    for failures, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (10_000, 8.0)]:
        delays = [backoff.delay(failures) for _ in range(200)]
        assert all(step / 2 <= delay <= step for delay in delays)
        assert len(set(delays)) > 1


# --------------------------------------------------------------------------------- feed


async def test_the_feed_streams_stored_events_then_new_ones_as_they_commit(engine, writer):
    first = await write(engine, writer, event(), event(), event())
    consumer = Consumer(engine, poll_interval=POLL, batch_size=2)
    try:
        await eventually(lambda: consumer.event_ids == first)
        later = await write(engine, writer, event(), event())
        await eventually(lambda: consumer.event_ids == first + later)
    finally:
        await consumer.close()
    sequences = [record.sequence for record in consumer.records]
    assert sequences == sorted(sequences)
    assert consumer.records[0].payload == b"points.earned"
    assert consumer.records[0].occurred_at == T0


async def test_the_feed_resumes_after_a_sequence(engine, writer):
    ids = await write(engine, writer, event(), event(), event())
    rows = await stored(engine)
    consumer = Consumer(engine, after_sequence=rows[1].sequence, poll_interval=POLL)
    try:
        await eventually(lambda: consumer.event_ids == ids[2:])
    finally:
        await consumer.close()


async def test_the_feed_filters_by_program_and_event_type(engine, writer):
    ids = await write(
        engine,
        writer,
        event("earned", "prg_1"),
        event("earned", "prg_2"),
        event("redeemed", "prg_1"),
        event("earned", "prg_1"),
    )
    consumer = Consumer(
        engine, event_types={"earned"}, program_ids={"prg_1"}, poll_interval=POLL, batch_size=1
    )
    nothing = Consumer(engine, program_ids=set(), poll_interval=POLL)
    try:
        await eventually(lambda: consumer.event_ids == [ids[0], ids[3]])
    finally:
        await consumer.close()
        await nothing.close()
    assert nothing.records == []


async def test_pruning_keeps_undelivered_and_recent_events_and_the_newest(engine, writer, clock):
    await write(engine, writer, event(), event())  # old, delivered below
    await write(engine, writer, event("not.relayed"))  # old but undelivered
    await write(engine, writer, event())  # old, delivered

    async def deliver(records):
        pass

    relay = make_relay(engine, clock, deliver)
    while await relay.run_once():
        pass
    third = (await stored(engine))[2].sequence
    async with engine.begin() as connection:
        await connection.execute(
            sa.update(outbox).where(outbox.c.sequence == third).values(delivered_at=None)
        )

    cutoff = T0 + dt.timedelta(hours=1)
    # Only the prefix before the undelivered event goes.
    assert await prune(engine, outbox, before=cutoff) == 2
    assert (await stored(engine))[0].sequence == third
    assert await relay.run_once() == 1
    # Everything is delivered and old now, but the newest event always stays.
    assert await prune(engine, outbox, before=cutoff, batch_size=1) == 1
    assert len(await stored(engine)) == 1


async def test_a_pruned_position_is_refused_with_the_oldest_kept_sequence(engine, writer, clock):
    old = await write(engine, writer, *(event() for _ in range(5)))

    async def deliver(records):
        pass

    relay = make_relay(engine, clock, deliver)
    while await relay.run_once():
        pass
    clock.advance(dt.timedelta(days=8))
    recent = await write(engine, writer, event())
    sequences = [row.sequence for row in await stored(engine)]
    assert await prune(engine, outbox, before=T0 + dt.timedelta(days=1)) == len(old)

    with pytest.raises(FailedPrecondition) as refused:
        await anext(feed(engine, outbox, after_sequence=sequences[1], poll_interval=POLL))
    assert refused.value.reason == "SEQUENCE_PRUNED"
    assert refused.value.metadata == {"oldest_sequence": str(sequences[-1])}
    # The last pruned event was processed: nothing is missing. 0 means "the oldest kept".
    for after in (sequences[-2], 0):
        record = await anext(feed(engine, outbox, after_sequence=after, poll_interval=POLL))
        assert record.event_id == recent[0]


async def test_pruning_under_a_reader_catching_up_stops_it(engine, writer, clock):
    await write(engine, writer, *(event() for _ in range(6)))

    async def deliver(records):
        pass

    relay = make_relay(engine, clock, deliver)
    while await relay.run_once():
        pass
    records = feed(engine, outbox, after_sequence=0, poll_interval=POLL, batch_size=2)
    await anext(records)
    await anext(records)
    await prune(engine, outbox, before=T0 + dt.timedelta(days=1))
    with pytest.raises(FailedPrecondition, match="no longer kept"):
        await anext(records)


# --------------------------------------------------- PostgreSQL: commits out of sequence order


@pytest.fixture
async def pg_engine(pg_url):
    engine = await create_schema(pg_url)
    async with engine.begin() as connection:
        await connection.execute(sa.delete(outbox))
    yield engine
    await engine.dispose()


async def commit_out_of_order(engine, writer):
    """Two writer sessions: the first takes the lower number but commits second."""
    sessions = session_factory(engine)
    slow, fast = sessions(), sessions()
    (early,) = await writer.add_many(slow, [event()])
    (late,) = await writer.add_many(fast, [event()])
    await fast.commit()
    await fast.close()
    return slow, early, late


async def test_the_feed_waits_for_a_lower_sequence_still_in_flight(pg_engine, writer):
    slow, early, late = await commit_out_of_order(pg_engine, writer)
    consumer = Consumer(pg_engine, poll_interval=POLL)
    try:
        await asyncio.sleep(10 * POLL)
        assert consumer.records == []  # 'late' is visible, but passing it would skip 'early'
        await slow.commit()
        await eventually(lambda: consumer.event_ids == [early, late])
    finally:
        await slow.close()
        await consumer.close()


async def test_the_relay_waits_for_a_lower_sequence_still_in_flight(pg_engine, writer, clock):
    slow, early, late = await commit_out_of_order(pg_engine, writer)
    delivered: list[str] = []

    async def deliver(records):
        delivered.extend(record.event_id for record in records)

    relay = make_relay(pg_engine, clock, deliver)
    try:
        for _ in range(3):
            assert await relay.run_once() == 0
        await slow.commit()
        while await relay.run_once() or not delivered:
            await asyncio.sleep(POLL)
    finally:
        await slow.close()
    assert delivered == [early, late]
