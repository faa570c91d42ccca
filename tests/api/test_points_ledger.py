"""Spending, holds and reading over real gRPC on PostgreSQL, including concurrent callers."""

from __future__ import annotations

import asyncio
import itertools

import grpc
import pytest
from grpc import aio

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc as grpc_api
from loyalty.points.v1 import resources_pb2 as pb
from loyalty.type.v1 import customer_pb2
from services.points.app import SPEC
from shared.db import create_engine
from tests.support.ledger_checks import assert_ledger_consistent
from tests.support.servers import running_service
from tests.support.status import rich_error

_ids = itertools.count()


def rid(prefix: str = "r") -> str:
    return f"{prefix}-{next(_ids)}"


@pytest.fixture(scope="module")
async def points(pg_url, keys):
    async with running_service(
        SPEC, pg_url, keys, db_pool_size=20, max_concurrent_rpcs=512
    ) as service:
        yield service


@pytest.fixture(scope="module")
def stub(points):
    return grpc_api.PointsServiceStub(points.channel)


@pytest.fixture(scope="module")
async def program_id(stub, points) -> str:
    program = pb.Program(
        display_name="Bean Club",
        currency_code="USD",
        refund_policy=pb.REFUND_POLICY_WITHIN_AVAILABLE,
        rounding_mode=pb.ROUNDING_MODE_DOWN,
    )
    reply = await stub.CreateProgram(
        api.CreateProgramRequest(request_id=rid(), program=program), metadata=points.md()
    )
    return reply.program.program_id


@pytest.fixture(scope="module")
async def engine(pg_url):
    engine = create_engine(pg_url)
    yield engine
    await engine.dispose()


_customers = itertools.count()


@pytest.fixture
def customer(program_id) -> customer_pb2.CustomerRef:
    return customer_pb2.CustomerRef(program_id=program_id, customer_id=f"c-{next(_customers)}")


async def give(stub, points, customer, amount: int) -> None:
    request = api.AdjustRequest(
        request_id=rid(), customer=customer, points=amount, reason="welcome gift"
    )
    await stub.Adjust(request, metadata=points.md())


async def failure(call) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    return raised.value


async def test_redeem_spends_and_a_retry_replays(stub, points, customer):
    await give(stub, points, customer, 100)
    request = api.RedeemRequest(request_id=rid(), customer=customer, points=30, reason="latte")
    first = await stub.Redeem(request, metadata=points.md("pos"))
    again = await stub.Redeem(request, metadata=points.md("pos"))
    assert first == again
    assert first.entry.type == pb.LEDGER_ENTRY_TYPE_REDEEM
    assert (first.entry.points, first.balance.available, first.balance.lifetime_spent) == (
        -30,
        70,
        30,
    )


async def test_insufficient_points_tells_the_cashier_what_is_available(stub, points, customer):
    await give(stub, points, customer, 25)
    request = api.RedeemRequest(request_id=rid(), customer=customer, points=26, reason="test")
    error = rich_error(await failure(stub.Redeem(request, metadata=points.md("pos"))))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.info.reason == "INSUFFICIENT_POINTS"
    assert error.info.metadata["available"] == "25"
    assert "25 available" in error.message


async def test_unknown_customer_and_unknown_program_are_told_apart(stub, points, customer):
    request = api.RedeemRequest(request_id=rid(), customer=customer, points=1, reason="test")
    assert (
        rich_error(await failure(stub.Redeem(request, metadata=points.md()))).info.reason
        == "CUSTOMER_NOT_FOUND"
    )
    stranger = customer_pb2.CustomerRef(program_id="prg_nope", customer_id="c")
    balance = api.GetBalanceRequest(customer=stranger)
    assert (
        rich_error(await failure(stub.GetBalance(balance, metadata=points.md()))).info.reason
        == "PROGRAM_NOT_FOUND"
    )


async def test_bad_amounts_are_invalid_with_field_violations(stub, points, customer):
    for amount in (0, -5, 10**12 + 1):
        request = api.RedeemRequest(
            request_id=rid(), customer=customer, points=amount, reason="test"
        )
        error = rich_error(await failure(stub.Redeem(request, metadata=points.md())))
        assert error.violations["points"].reason == "OUT_OF_RANGE"
    request = api.RedeemRequest(request_id=rid(), points=5, reason="test")
    error = rich_error(await failure(stub.Redeem(request, metadata=points.md())))
    assert {"customer.program_id", "customer.customer_id"} <= set(error.violations)


async def test_adjust_needs_admin_and_a_reason(stub, points, customer):
    request = api.AdjustRequest(request_id=rid(), customer=customer, points=5, reason="sorry")
    assert (
        rich_error(await failure(stub.Adjust(request, metadata=points.md("pos")))).info.reason
        == "MISSING_SCOPE"
    )
    request = api.AdjustRequest(request_id=rid(), customer=customer, points=5, reason="  ")
    error = rich_error(await failure(stub.Adjust(request, metadata=points.md())))
    assert error.violations["reason"].reason == "REQUIRED"


async def test_a_hot_account_is_never_overdrawn_by_concurrent_redeems(
    stub, points, customer, engine
):
    await give(stub, points, customer, 300)

    async def redeem() -> str:
        request = api.RedeemRequest(
            request_id=rid("hot"), customer=customer, points=10, reason="test"
        )
        try:
            await stub.Redeem(request, metadata=points.md("pos"))
        except aio.AioRpcError as error:
            return rich_error(error).info.reason
        return "OK"

    outcomes = await asyncio.gather(*(redeem() for _ in range(60)))
    assert sorted(set(outcomes)) == ["INSUFFICIENT_POINTS", "OK"]
    assert outcomes.count("OK") == 30
    balance = await stub.GetBalance(api.GetBalanceRequest(customer=customer), metadata=points.md())
    assert (balance.balance.available, balance.balance.lifetime_spent) == (0, 300)
    await assert_ledger_consistent(engine)


async def test_concurrent_retries_of_one_request_spend_once(stub, points, customer, engine):
    await give(stub, points, customer, 50)
    request = api.RedeemRequest(request_id=rid("dup"), customer=customer, points=20, reason="test")
    replies = await asyncio.gather(
        *(stub.Redeem(request, metadata=points.md("pos")) for _ in range(20))
    )
    assert len({r.entry.entry_id for r in replies}) == 1
    balance = await stub.GetBalance(api.GetBalanceRequest(customer=customer), metadata=points.md())
    assert balance.balance.available == 30
    await assert_ledger_consistent(engine)


async def test_holds_and_redeems_racing_never_overdraw(stub, points, customer, engine):
    await give(stub, points, customer, 200)

    async def hold() -> int:
        request = api.HoldPointsRequest(
            request_id=rid("h"), customer=customer, points=15, reason="till"
        )
        try:
            await stub.HoldPoints(request, metadata=points.md("pos"))
            return 15
        except aio.AioRpcError:
            return 0

    async def redeem() -> int:
        request = api.RedeemRequest(
            request_id=rid("r"), customer=customer, points=10, reason="test"
        )
        try:
            await stub.Redeem(request, metadata=points.md("pos"))
            return 10
        except aio.AioRpcError:
            return 0

    used = await asyncio.gather(*(hold() if i % 2 else redeem() for i in range(40)))
    balance = (
        await stub.GetBalance(api.GetBalanceRequest(customer=customer), metadata=points.md())
    ).balance
    assert balance.available >= 0
    assert balance.available + balance.held + balance.lifetime_spent == 200
    assert sum(used) == balance.held + balance.lifetime_spent
    await assert_ledger_consistent(engine)


async def test_pay_with_points_hold_capture_and_release(stub, points, customer, engine):
    await give(stub, points, customer, 100)
    held = await stub.HoldPoints(
        api.HoldPointsRequest(request_id=rid(), customer=customer, points=60, reason="till 3"),
        metadata=points.md("pos"),
    )
    assert held.hold.state == pb.HOLD_STATE_ACTIVE
    assert (held.balance.available, held.balance.held) == (40, 60)
    capture = api.CaptureHoldRequest(
        request_id=rid(), customer=customer, hold_id=held.hold.hold_id, points=45
    )
    captured = await stub.CaptureHold(capture, metadata=points.md("pos"))
    assert captured.hold.captured_points == 45
    assert [e.type for e in captured.entries] == [
        pb.LEDGER_ENTRY_TYPE_CAPTURE,
        pb.LEDGER_ENTRY_TYPE_RELEASE,
    ]
    assert (captured.balance.available, captured.balance.held) == (55, 0)
    # The hold is finished: releasing it now is refused because it was captured.
    release = api.ReleaseHoldRequest(request_id=rid(), customer=customer, hold_id=held.hold.hold_id)
    error = rich_error(await failure(stub.ReleaseHold(release, metadata=points.md("pos"))))
    assert error.info.reason == "HOLD_ALREADY_CAPTURED"
    # Another customer's hold id is simply not found.
    other = customer_pb2.CustomerRef(program_id=customer.program_id, customer_id="someone-else")
    capture = api.CaptureHoldRequest(request_id=rid(), customer=other, hold_id=held.hold.hold_id)
    error = rich_error(await failure(stub.CaptureHold(capture, metadata=points.md("pos"))))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.info.reason == "HOLD_NOT_FOUND"
    await assert_ledger_consistent(engine)


async def test_history_is_newest_first_and_pages_without_gaps(stub, points, customer):
    await give(stub, points, customer, 100)
    for _ in range(5):
        await stub.Redeem(
            api.RedeemRequest(request_id=rid(), customer=customer, points=1, reason="test"),
            metadata=points.md(),
        )
    seen, token = [], ""
    while True:
        page = await stub.ListTransactions(
            api.ListTransactionsRequest(customer=customer, page_size=2, page_token=token),
            metadata=points.md("reader"),
        )
        seen.extend(page.entries)
        token = page.next_page_token
        if not token:
            break
    assert [e.balance_after for e in seen] == [95, 96, 97, 98, 99, 100]
    redeems = await stub.ListTransactions(
        api.ListTransactionsRequest(customer=customer, types=[pb.LEDGER_ENTRY_TYPE_ADJUST]),
        metadata=points.md(),
    )
    assert [e.type for e in redeems.entries] == [pb.LEDGER_ENTRY_TYPE_ADJUST]
