"""Exactly-once mutations on both databases: replay, reuse, races, failures."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2, wrappers_pb2

from shared.clock import ManualClock
from shared.db import create_engine, new_metadata
from shared.errors import FailedPrecondition, InvalidArgument
from shared.idempotency import Idempotency, NaturalKey, fingerprint, idempotency_table
from shared.uow import UnitOfWork, session_factory

metadata = new_metadata()
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(20), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)
keys_table = idempotency_table(metadata)


@pytest.fixture(scope="module")
async def database(db_url):
    engine = create_engine(db_url, pool_size=20)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(sa.insert(counters).values(name="c", value=0))
    yield engine
    await engine.dispose()


@pytest.fixture
def idempotency():
    return Idempotency(keys_table, ManualClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))


def request(value: str) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update({"value": value})
    return message


async def increment(uow: UnitOfWork, limit: int = 10**9) -> wrappers_pb2.Int64Value:
    """The effect under test: bump a counter, refusing past ``limit`` like a business rule."""
    row = await uow.session.execute(
        sa.update(counters)
        .where(counters.c.name == "c", counters.c.value < limit)
        .values(value=counters.c.value + 1)
        .returning(counters.c.value)
    )
    value = row.scalar()
    if value is None:
        raise FailedPrecondition("limit reached", reason="LIMIT_REACHED")
    return wrappers_pb2.Int64Value(value=value)


async def counter(engine) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(sa.select(counters.c.value))).scalar_one()


async def run(engine, idempotency, request_id, payload="a", operation=increment):
    return await idempotency.run(
        UnitOfWork(session_factory(engine)),
        scope="prg_1",
        request_id=request_id,
        method="Increment",
        request=request(payload),
        response_type=wrappers_pb2.Int64Value,
        operation=operation,
    )


async def test_a_retry_replays_the_stored_response_without_a_second_effect(database, idempotency):
    before = await counter(database)
    first = await run(database, idempotency, "once")
    second = await run(database, idempotency, "once")
    assert first == second
    assert await counter(database) == before + 1


async def test_same_id_other_payload_is_request_id_reused(database, idempotency):
    await run(database, idempotency, "reuse", payload="a")
    before = await counter(database)
    with pytest.raises(InvalidArgument) as refused:
        await run(database, idempotency, "reuse", payload="b")
    assert refused.value.reason == "REQUEST_ID_REUSED"
    assert await counter(database) == before


async def test_concurrent_duplicates_have_one_effect_and_one_answer(database, idempotency):
    before = await counter(database)
    answers = await asyncio.gather(*(run(database, idempotency, "storm") for _ in range(15)))
    assert {a.value for a in answers} == {before + 1}
    assert await counter(database) == before + 1


async def test_failed_calls_are_not_remembered(database, idempotency):
    before = await counter(database)
    with pytest.raises(FailedPrecondition):
        await run(
            database, idempotency, "later", operation=lambda uow: increment(uow, limit=before)
        )
    assert await counter(database) == before
    # The same id may be retried once the rule allows it.
    assert (await run(database, idempotency, "later")).value == before + 1


async def test_a_twin_that_fails_because_the_first_succeeded_gets_the_first_answer(
    database, idempotency
):
    before = await counter(database)
    first = await run(
        database, idempotency, "twin", operation=lambda uow: increment(uow, before + 1)
    )
    # A retry would now break the limit; it must replay the original success instead.
    again = await run(
        database, idempotency, "twin", operation=lambda uow: increment(uow, before + 1)
    )
    assert again == first


def test_fingerprint_ignores_request_id_and_map_order():
    a, b = wrappers_pb2.StringValue(value="x"), wrappers_pb2.StringValue(value="x")
    assert fingerprint(a) == fingerprint(b)
    one, two = struct_pb2.Struct(), struct_pb2.Struct()
    one.update({"a": 1, "b": 2})
    two.update({"b": 2, "a": 1})
    assert fingerprint(one) == fingerprint(two)
    assert fingerprint(one) != fingerprint(request("other"))


async def test_a_natural_key_gives_one_effect_whatever_the_request_id(database, idempotency):
    order = NaturalKey("prg_1/orders", "order-7", "order_id")

    async def earn(request_id: str, payload: str = "a"):
        return await idempotency.run(
            UnitOfWork(session_factory(database)),
            scope="prg_1",
            request_id=request_id,
            method="Increment",
            request=request(payload),
            response_type=wrappers_pb2.Int64Value,
            operation=increment,
            natural_keys=[order],
        )

    before = await counter(database)
    answers = await asyncio.gather(*(earn(f"till-retry-{i}") for i in range(8)))
    assert {a.value for a in answers} == {before + 1}
    assert await counter(database) == before + 1
    with pytest.raises(InvalidArgument) as refused:
        await earn("till-retry-99", payload="other amount")
    assert refused.value.reason == "REQUEST_ID_REUSED"
    assert [v.field for v in refused.value.violations] == ["order_id"]
