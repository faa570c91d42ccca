"""The event feed and the background work of the points service, through real gRPC."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

import grpc
import pytest
from grpc import aio

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc as grpc_api
from loyalty.points.v1 import resources_pb2 as pb
from loyalty.type.v1 import customer_pb2
from services.points.app import SPEC
from shared.clock import ManualClock
from shared.db import create_engine
from tests.support.ledger_checks import assert_ledger_consistent
from tests.support.servers import running_service
from tests.support.status import rich_error

START = dt.datetime(2027, 1, 10, 9, 0, tzinfo=dt.UTC)
_ids = itertools.count()


def rid() -> str:
    return f"ev-{next(_ids)}"


@pytest.fixture(scope="module")
def clock():
    return ManualClock(START)


@pytest.fixture(scope="module")
async def points(pg_url, keys, clock):
    async with running_service(SPEC, pg_url, keys, clock=clock) as service:
        yield service


@pytest.fixture(scope="module")
def stub(points):
    return grpc_api.PointsServiceStub(points.channel)


@pytest.fixture(scope="module")
async def program_id(stub, points):
    program = pb.Program(
        display_name="Expiring Club",
        currency_code="EUR",
        refund_policy=pb.REFUND_POLICY_WITHIN_AVAILABLE,
        rounding_mode=pb.ROUNDING_MODE_DOWN,
    )
    program.expiry_policy.after_days.days = 30
    reply = await stub.CreateProgram(
        api.CreateProgramRequest(request_id=rid(), program=program), metadata=points.md()
    )
    return reply.program.program_id


async def collect(stub, points, count: int, key: str = "reader", **request) -> list[Any]:
    events: list[Any] = []
    call = stub.WatchEvents(api.WatchEventsRequest(**request), metadata=points.md(key))
    async for reply in call:
        events.append(reply.event)
        if len(events) == count:
            call.cancel()
            break
    return events


async def test_every_change_is_streamed_in_order_and_resumable(stub, points, program_id):
    customer = customer_pb2.CustomerRef(program_id=program_id, customer_id="watcher")
    await stub.Adjust(
        api.AdjustRequest(request_id=rid(), customer=customer, points=50, reason="gift"),
        metadata=points.md(),
    )
    await stub.Redeem(
        api.RedeemRequest(request_id=rid(), customer=customer, points=20, reason="test"),
        metadata=points.md(),
    )
    events = await asyncio.wait_for(collect(stub, points, 3, program_id=program_id), 10)
    assert [e.WhichOneof("payload") for e in events] == [
        "program_changed",
        "ledger_entry_appended",
        "ledger_entry_appended",
    ]
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)
    assert len({e.event_id for e in events}) == 3
    assert events[2].ledger_entry_appended.entry.points == -20
    # Resuming after the second event yields exactly the third.
    resumed = await asyncio.wait_for(
        collect(stub, points, 1, program_id=program_id, after_sequence=events[1].sequence), 10
    )
    assert resumed[0].event_id == events[2].event_id


async def test_a_new_event_arrives_on_an_open_stream(stub, points, program_id):
    [created] = await asyncio.wait_for(collect(stub, points, 1, program_id=program_id), 10)
    program = pb.Program(
        display_name="Live",
        currency_code="EUR",
        refund_policy=pb.REFUND_POLICY_WITHIN_AVAILABLE,
        rounding_mode=pb.ROUNDING_MODE_DOWN,
    )
    reply = await stub.CreateProgram(
        api.CreateProgramRequest(request_id=rid(), program=program), metadata=points.md()
    )
    live = reply.program.program_id
    [opened] = await asyncio.wait_for(collect(stub, points, 1, program_id=live), 10)
    tail = asyncio.ensure_future(
        collect(stub, points, 1, program_id=live, after_sequence=opened.sequence)
    )
    await asyncio.sleep(0.3)
    assert not tail.done()  # nothing new yet: the stream waits
    customer = customer_pb2.CustomerRef(program_id=live, customer_id="c")
    await stub.Adjust(
        api.AdjustRequest(request_id=rid(), customer=customer, points=5, reason="x"),
        metadata=points.md(),
    )
    [event] = await asyncio.wait_for(tail, 10)
    assert event.ledger_entry_appended.entry.points == 5
    assert created.sequence < opened.sequence < event.sequence


async def test_a_key_limited_to_other_programs_cannot_watch_this_one(stub, points, program_id):
    call = stub.WatchEvents(
        api.WatchEventsRequest(program_id=program_id), metadata=points.md("limited")
    )
    with pytest.raises(aio.AioRpcError) as denied:
        await call.read()
    assert rich_error(denied.value).info.reason == "PROGRAM_NOT_ALLOWED"
    call = stub.WatchEvents(api.WatchEventsRequest(after_sequence=-1), metadata=points.md("reader"))
    with pytest.raises(aio.AioRpcError) as invalid:
        await call.read()
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def balance_of(stub, points, customer) -> pb.Balance:
    reply = await stub.GetBalance(api.GetBalanceRequest(customer=customer), metadata=points.md())
    return reply.balance


async def eventually(check, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "background work did not happen"
        await asyncio.sleep(0.1)


# The tests below move the shared clock forward, so they come last in this module.


async def test_expired_holds_release_themselves(stub, points, program_id, clock):
    customer = customer_pb2.CustomerRef(program_id=program_id, customer_id="hold-forgotten")
    await stub.Adjust(
        api.AdjustRequest(request_id=rid(), customer=customer, points=30, reason="x"),
        metadata=points.md(),
    )
    request = api.HoldPointsRequest(request_id=rid(), customer=customer, points=25)
    request.ttl.seconds = 60
    await stub.HoldPoints(request, metadata=points.md("pos"))
    assert (await balance_of(stub, points, customer)).held == 25
    clock.advance(dt.timedelta(seconds=61))

    async def released() -> bool:
        balance = await balance_of(stub, points, customer)
        return balance.held == 0 and balance.available == 30

    await eventually(released)


async def test_points_expire_on_time_with_a_ledger_entry(stub, points, program_id, clock, pg_url):
    customer = customer_pb2.CustomerRef(program_id=program_id, customer_id="expiring")
    await stub.Adjust(
        api.AdjustRequest(request_id=rid(), customer=customer, points=40, reason="x"),
        metadata=points.md(),
    )
    balance = await balance_of(stub, points, customer)
    assert balance.next_expiry.points == 40
    clock.advance(dt.timedelta(days=30, seconds=1))

    async def expired() -> bool:
        return (await balance_of(stub, points, customer)).available == 0

    await eventually(expired)
    history = await stub.ListTransactions(
        api.ListTransactionsRequest(customer=customer, types=[pb.LEDGER_ENTRY_TYPE_EXPIRE]),
        metadata=points.md(),
    )
    assert [e.points for e in history.entries] == [-40]
    engine = create_engine(pg_url)
    try:
        await assert_ledger_consistent(engine)
    finally:
        await engine.dispose()


async def test_old_delivered_events_are_pruned_and_old_cursors_told_so(
    stub, points, program_id, clock
):
    customer = customer_pb2.CustomerRef(program_id=program_id, customer_id="pruned")
    for _ in range(3):
        request = api.AdjustRequest(request_id=rid(), customer=customer, points=1, reason="x")
        await stub.Adjust(request, metadata=points.md())
    [first] = await asyncio.wait_for(collect(stub, points, 1, program_id=program_id), 10)
    clock.advance(dt.timedelta(days=8))  # past the 7-day default retention

    async def pruned() -> bool:
        # A consumer that saved its position at the first event and comes back later.
        stale = api.WatchEventsRequest(after_sequence=first.sequence)
        call = stub.WatchEvents(stale, metadata=points.md("reader"))
        try:
            await asyncio.wait_for(call.read(), 2)
        except aio.AioRpcError as error:
            return rich_error(error).info.reason == "SEQUENCE_PRUNED"
        finally:
            call.cancel()
        return False

    await eventually(pruned)
