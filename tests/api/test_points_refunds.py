"""ReverseOrder over real gRPC on PostgreSQL, from a merchant's point of view.

Bean Club (EUR) gives 1 point per €1; points expire 30 days after they were earned. A
till earns on an order, the customer may pay part of it with points, and then the order
comes back: in full, in parts, by line, concurrently from several tills. After every
refund the stored ledger must still satisfy its invariants.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

import grpc
import pytest
from grpc import aio

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc as grpc_api
from loyalty.points.v1 import resources_pb2 as pb
from loyalty.type.v1 import cart_pb2, customer_pb2, money_pb2
from services.points.app import SPEC
from shared.clock import ManualClock
from shared.db import create_engine
from shared.proto_types import to_timestamp
from tests.support.ledger_checks import assert_ledger_consistent
from tests.support.servers import RunningService, running_service
from tests.support.status import rich_error

NOW = dt.datetime(2026, 6, 1, 10, 0, tzinfo=dt.UTC)
EXPIRY = dt.timedelta(days=30)
_ids = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture(scope="module")
async def points(pg_url, keys, clock):
    async with running_service(
        SPEC, pg_url, keys, clock=clock, db_pool_size=20, max_concurrent_rpcs=512
    ) as service:
        yield service


@pytest.fixture(scope="module")
def stub(points) -> grpc_api.PointsServiceStub:
    return grpc_api.PointsServiceStub(points.channel)


@pytest.fixture(scope="module")
async def engine(pg_url):
    engine = create_engine(pg_url)
    yield engine
    await engine.dispose()


# ------------------------------------------------------------------------------ helpers


def eur(cents: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", amount_minor=cents)


async def bean_club(
    stub, points: RunningService, policy: int = pb.REFUND_POLICY_WITHIN_AVAILABLE, **fields
) -> str:
    program = pb.Program(
        display_name="Bean Club",
        currency_code="EUR",
        refund_policy=policy,  # type: ignore[arg-type]
        rounding_mode=pb.ROUNDING_MODE_DOWN,
        expiry_policy=pb.ExpiryPolicy(after_days=pb.ExpiryAfterDays(days=30)),
        **fields,
    )
    request = api.CreateProgramRequest(request_id=unique("r-program"), program=program)
    program_id = (await stub.CreateProgram(request, metadata=points.md())).program.program_id
    rule = pb.EarningRule(
        program_id=program_id,
        display_name="1 point per €1",
        order_rule=pb.OrderRule(points_per_unit=1, spend_unit=eur(100)),
    )
    await stub.CreateEarningRule(
        api.CreateEarningRuleRequest(request_id=unique("r-rule"), rule=rule), metadata=points.md()
    )
    return program_id


def member(program_id: str) -> customer_pb2.CustomerRef:
    return customer_pb2.CustomerRef(program_id=program_id, customer_id=unique("member"))


async def earn(
    stub,
    points: RunningService,
    customer: customer_pb2.CustomerRef,
    order_id: str,
    cents: int,
    *,
    lines: tuple[cart_pb2.CartLine, ...] = (),
    occurred_at: dt.datetime = NOW,
) -> api.EarnForOrderResponse:
    request = api.EarnForOrderRequest(
        request_id=unique("r-earn"),
        customer=customer,
        order_id=order_id,
        amount=eur(cents),
        occurred_at=to_timestamp(occurred_at),
    )
    if lines:
        request.cart.CopyFrom(cart_pb2.Cart(currency_code="EUR", lines=lines))
    return await stub.EarnForOrder(request, metadata=points.md("pos"))


def reverse(
    customer: customer_pb2.CustomerRef,
    order_id: str,
    *,
    refund_id: str | None = None,
    request_id: str | None = None,
    amount: int | None = None,
    lines: dict[str, int] | None = None,
    reason: str = "Returned at the till",
) -> api.ReverseOrderRequest:
    request = api.ReverseOrderRequest(
        request_id=unique("r-refund") if request_id is None else request_id,
        customer=customer,
        order_id=order_id,
        refund_id=unique("rf") if refund_id is None else refund_id,
        reason=reason,
    )
    if amount is not None:
        request.amount.CopyFrom(eur(amount))
    elif lines is not None:
        request.lines.SetInParent()
        request.lines.lines.extend(
            api.RefundLine(line_id=line_id, quantity=quantity)
            for line_id, quantity in lines.items()
        )
    else:
        request.full.SetInParent()
    return request


async def failure(call) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    return raised.value


async def balance_of(stub, points, customer) -> pb.Balance:
    reply = await stub.GetBalance(api.GetBalanceRequest(customer=customer), metadata=points.md())
    return reply.balance


# ------------------------------------------------------------------------ taking points back


async def test_a_full_refund_of_a_pending_order_takes_the_pending_points_back(stub, points, engine):
    program_id = await bean_club(
        stub, points, pb.REFUND_POLICY_PENDING_ONLY, pending_period={"seconds": 14 * 86_400}
    )
    ann = member(program_id)
    earned = await earn(stub, points, ann, "10042", 4_250)
    assert (earned.points, earned.balance.pending) == (42, 42)

    request = reverse(ann, "10042", refund_id="rf-1")
    reply = await stub.ReverseOrder(request, metadata=points.md("pos"))

    assert (reply.points_clawed_back, reply.points_not_recovered, reply.points_restored) == (
        42,
        0,
        0,
    )
    assert reply.order_fully_refunded
    [entry] = reply.entries
    assert entry.type == pb.LEDGER_ENTRY_TYPE_REVERSE
    assert (entry.points, entry.pending_delta, entry.available_delta) == (-42, -42, 0)
    assert (entry.order_id, entry.refund_id, entry.request_id) == (
        "10042",
        "rf-1",
        request.request_id,
    )
    assert entry.reason == "Returned at the till"
    assert (reply.balance.pending, reply.balance.total, reply.balance.lifetime_earned) == (0, 0, 0)
    assert not reply.balance.HasField("next_activation")
    history = await stub.ListTransactions(
        api.ListTransactionsRequest(customer=ann, order_id="10042"), metadata=points.md()
    )
    assert [e.type for e in history.entries] == [
        pb.LEDGER_ENTRY_TYPE_REVERSE,
        pb.LEDGER_ENTRY_TYPE_EARN,
    ]
    await assert_ledger_consistent(engine)


async def test_three_partial_refunds_by_amount_sum_exactly_to_what_was_earned(stub, points, engine):
    program_id = await bean_club(stub, points)
    bo = member(program_id)
    await earn(stub, points, bo, "o-101", 10_100)  # 101 points
    replies = [
        await stub.ReverseOrder(reverse(bo, "o-101", amount=cents), metadata=points.md("pos"))
        for cents in (3_333, 3_333, 3_434)  # a third, a third, the rest
    ]
    assert [r.points_clawed_back for r in replies] == [33, 33, 35]
    assert [r.order_fully_refunded for r in replies] == [False, False, True]
    assert replies[-1].balance.available == 0
    error = rich_error(
        await failure(stub.ReverseOrder(reverse(bo, "o-101"), metadata=points.md("pos")))
    )
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.info.reason == "ORDER_FULLY_REFUNDED"
    await assert_ledger_consistent(engine)


async def test_a_refund_by_lines_takes_back_the_share_of_their_list_value(stub, points, engine):
    program_id = await bean_club(stub, points)
    cy = member(program_id)
    beans = cart_pb2.CartLine(line_id="1", sku="BEANS", quantity=1, unit_price=eur(3_000))
    mugs = cart_pb2.CartLine(line_id="2", sku="MUG", quantity=2, unit_price=eur(1_000))
    # €45 paid after a €5 discount on €50 of list value: 45 points.
    await earn(stub, points, cy, "o-lines", 4_500, lines=(beans, mugs))

    one_mug = await stub.ReverseOrder(
        reverse(cy, "o-lines", lines={"2": 1}), metadata=points.md("pos")
    )
    assert one_mug.points_clawed_back == 9  # a fifth of the list value, a fifth of 45

    too_many = reverse(cy, "o-lines", lines={"2": 2})
    error = rich_error(await failure(stub.ReverseOrder(too_many, metadata=points.md("pos"))))
    assert error.info.reason == "REFUND_EXCEEDS_ORDER"
    assert (error.info.metadata["line_id"], error.info.metadata["refundable_quantity"]) == (
        "2",
        "1",
    )
    assert error.info.metadata["refundable_amount_minor"] == "3600"

    unknown = reverse(cy, "o-lines", lines={"1": 1, "9": 1})
    error = rich_error(await failure(stub.ReverseOrder(unknown, metadata=points.md("pos"))))
    assert (error.code, error.info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_LINE")
    assert error.info.metadata["line_id"] == "9"
    assert error.violations["lines.lines[1].line_id"].reason == "UNKNOWN_LINE"

    rest = await stub.ReverseOrder(
        reverse(cy, "o-lines", lines={"1": 1, "2": 1}), metadata=points.md("pos")
    )
    assert (rest.points_clawed_back, rest.order_fully_refunded) == (36, True)
    await assert_ledger_consistent(engine)


async def test_within_available_reports_what_the_customer_already_spent_as_not_recovered(
    stub, points, engine
):
    program_id = await bean_club(stub, points, pb.REFUND_POLICY_WITHIN_AVAILABLE)
    dee = member(program_id)
    await earn(stub, points, dee, "o-spent", 10_000)
    await stub.Redeem(
        api.RedeemRequest(request_id=unique("r"), customer=dee, points=70, reason="Free bag"),
        metadata=points.md("pos"),
    )
    reply = await stub.ReverseOrder(reverse(dee, "o-spent"), metadata=points.md("pos"))
    assert (reply.points_clawed_back, reply.points_not_recovered) == (30, 70)
    assert (reply.balance.available, reply.balance.lifetime_earned) == (0, 70)
    await assert_ledger_consistent(engine)


async def test_allow_negative_takes_everything_and_the_next_earning_pays_the_debt(
    stub, points, engine
):
    program_id = await bean_club(stub, points, pb.REFUND_POLICY_ALLOW_NEGATIVE)
    eve = member(program_id)
    await earn(stub, points, eve, "o-tv", 10_000)
    await stub.Redeem(
        api.RedeemRequest(request_id=unique("r"), customer=eve, points=80, reason="Blender"),
        metadata=points.md("pos"),
    )
    reply = await stub.ReverseOrder(reverse(eve, "o-tv"), metadata=points.md("pos"))
    assert (reply.points_clawed_back, reply.points_not_recovered) == (100, 0)
    assert (reply.balance.available, reply.balance.total) == (-80, -80)
    await assert_ledger_consistent(engine)

    # A negative balance cannot be spent, and the next order pays the debt off first.
    redeem = api.RedeemRequest(request_id=unique("r"), customer=eve, points=1, reason="test")
    error = rich_error(await failure(stub.Redeem(redeem, metadata=points.md("pos"))))
    assert error.info.reason == "INSUFFICIENT_POINTS"
    later = await earn(stub, points, eve, "o-next", 9_000)
    assert later.balance.available == 10
    assert later.balance.next_expiry.points == 10
    await assert_ledger_consistent(engine)


# ------------------------------------------------------------------- giving spent points back


async def test_points_spent_on_the_order_are_restored_with_a_fresh_expiry(stub, points, engine):
    program_id = await bean_club(stub, points)
    flo = member(program_id)
    # Earned 20 days ago, so these points expire in 10 days.
    await earn(stub, points, flo, "o-old", 50_000, occurred_at=NOW - dt.timedelta(days=20))
    mug = pb.Reward(
        program_id=program_id,
        display_name="Logo mug",
        points_cost=120,
        physical_item=pb.PhysicalItemReward(sku="MUG-LOGO-350", stock=5),
    )
    created = await stub.CreateReward(
        api.CreateRewardRequest(request_id=unique("r"), reward=mug), metadata=points.md()
    )
    # The new order is paid partly with points: a mug, and 80 points at the till.
    await stub.RedeemReward(
        api.RedeemRewardRequest(
            request_id=unique("r"),
            customer=flo,
            reward_id=created.reward.reward_id,
            order_id="o-paid",
        ),
        metadata=points.md("pos"),
    )
    await stub.Redeem(
        api.RedeemRequest(
            request_id=unique("r"), customer=flo, points=80, reason="Pay", order_id="o-paid"
        ),
        metadata=points.md("pos"),
    )

    done = await stub.ReverseOrder(reverse(flo, "o-paid", refund_id="rf-a"), metadata=points.md())

    assert (done.points_restored, done.points_clawed_back) == (200, 0)
    [entry] = done.entries
    assert (entry.type, entry.available_delta, entry.refund_id) == (
        pb.LEDGER_ENTRY_TYPE_REVERSE,
        200,
        "rf-a",
    )
    assert entry.expires_at.ToDatetime(tzinfo=dt.UTC) == NOW + EXPIRY
    assert (done.balance.available, done.balance.lifetime_spent) == (500, 0)
    # The old points still expire in 10 days; the restored ones a month from now.
    assert done.balance.next_expiry.at.ToDatetime(tzinfo=dt.UTC) == NOW + dt.timedelta(days=10)
    assert done.balance.next_expiry.points == 300
    await assert_ledger_consistent(engine)


# --------------------------------------------------------------------------- idempotency


async def test_a_repeated_refund_returns_the_original_response_whatever_its_request_id(
    stub, points, engine
):
    program_id = await bean_club(stub, points)
    gus = member(program_id)
    await earn(stub, points, gus, "o-retry", 5_000)
    first = reverse(gus, "o-retry", refund_id="rf-1", request_id="till-1", amount=1_000)
    original = await stub.ReverseOrder(first, metadata=points.md("pos"))
    again = await stub.ReverseOrder(first, metadata=points.md("pos"))
    other_till = reverse(gus, "o-retry", refund_id="rf-1", request_id="till-2", amount=1_000)
    replayed = await stub.ReverseOrder(other_till, metadata=points.md("pos"))
    assert again == original
    assert replayed == original
    assert (await balance_of(stub, points, gus)).available == 40

    changed = reverse(gus, "o-retry", refund_id="rf-1", request_id="till-3", amount=2_000)
    error = rich_error(await failure(stub.ReverseOrder(changed, metadata=points.md("pos"))))
    assert (error.code, error.info.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
    assert error.info.metadata["original_method"] == "ReverseOrder"
    assert set(error.violations) == {"refund_id"}

    reused = reverse(gus, "o-retry", refund_id="rf-2", request_id="till-1", amount=1_000)
    error = rich_error(await failure(stub.ReverseOrder(reused, metadata=points.md("pos"))))
    assert error.info.reason == "REQUEST_ID_REUSED"
    assert set(error.violations) == {"request_id"}
    assert (await balance_of(stub, points, gus)).available == 40
    await assert_ledger_consistent(engine)


# --------------------------------------------------------------------------- concurrency


async def warm_up(stub, points, program_id: str) -> None:
    # Open the connection pool first, so the calls really run side by side.
    listing = api.ListEarningRulesRequest(program_id=program_id)
    await asyncio.gather(*(stub.ListEarningRules(listing, metadata=points.md()) for _ in range(12)))


async def test_concurrent_partial_refunds_take_back_exactly_what_was_earned(stub, points, engine):
    program_id = await bean_club(stub, points)
    hal = member(program_id)
    await earn(stub, points, hal, "o-storm", 10_100)  # 101 points
    await warm_up(stub, points, program_id)

    tenths = [reverse(hal, "o-storm", refund_id=f"rf-{i}", amount=1_010) for i in range(10)]
    replies = await asyncio.gather(
        *(stub.ReverseOrder(r, metadata=points.md("pos")) for r in tenths)
    )

    assert sum(r.points_clawed_back for r in replies) == 101
    assert sorted(r.order_fully_refunded for r in replies) == [False] * 9 + [True]
    assert (await balance_of(stub, points, hal)).available == 0
    eleventh = reverse(hal, "o-storm", refund_id="rf-10", amount=1)
    error = rich_error(await failure(stub.ReverseOrder(eleventh, metadata=points.md("pos"))))
    assert error.info.reason == "ORDER_FULLY_REFUNDED"
    await assert_ledger_consistent(engine)


async def test_concurrent_retries_of_one_refund_from_several_tills_apply_it_once(
    stub, points, engine
):
    program_id = await bean_club(stub, points)
    ivy = member(program_id)
    await earn(stub, points, ivy, "o-dup", 6_000)
    await warm_up(stub, points, program_id)
    retries = [
        reverse(ivy, "o-dup", refund_id="rf-1", request_id=f"till-{i}", amount=1_500)
        for i in range(8)
    ]
    replies = await asyncio.gather(
        *(stub.ReverseOrder(r, metadata=points.md("pos")) for r in retries)
    )
    assert len({r.SerializeToString() for r in replies}) == 1
    assert replies[0].points_clawed_back == 15
    assert (await balance_of(stub, points, ivy)).available == 45
    await assert_ledger_consistent(engine)


# ------------------------------------------------------------------------------ bad input


async def test_a_malformed_refund_names_every_bad_field(stub, points):
    request = api.ReverseOrderRequest(
        request_id=unique("r"),
        customer=customer_pb2.CustomerRef(program_id="prg_x"),
        refund_id="r" * 129,
        reason="x" * 201,
    )
    error = rich_error(await failure(stub.ReverseOrder(request, metadata=points.md("pos"))))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {field: v.reason for field, v in error.violations.items()} == {
        "customer.customer_id": "REQUIRED",
        "order_id": "REQUIRED",
        "refund_id": "INVALID_FORMAT",
        "scope": "REQUIRED",
        "reason": "TOO_LONG",
    }

    customer = customer_pb2.CustomerRef(program_id="prg_x", customer_id="c")
    error = rich_error(
        await failure(stub.ReverseOrder(reverse(customer, "o", amount=0), metadata=points.md()))
    )
    assert error.violations["amount.amount_minor"].reason == "OUT_OF_RANGE"
    bad_lines = reverse(customer, "o", lines={"": 0})
    bad_lines.lines.lines.append(api.RefundLine(line_id="1", quantity=1))
    bad_lines.lines.lines.append(api.RefundLine(line_id="1", quantity=1))
    error = rich_error(await failure(stub.ReverseOrder(bad_lines, metadata=points.md())))
    assert {field: v.reason for field, v in error.violations.items()} == {
        "lines.lines[0].line_id": "REQUIRED",
        "lines.lines[0].quantity": "OUT_OF_RANGE",
        "lines.lines[2].line_id": "DUPLICATE",
    }
    empty = reverse(customer, "o", lines={})
    error = rich_error(await failure(stub.ReverseOrder(empty, metadata=points.md())))
    assert error.violations["lines.lines"].reason == "REQUIRED"
    error = rich_error(
        await failure(
            stub.ReverseOrder(reverse(customer, "o", request_id=""), metadata=points.md())
        )
    )
    assert error.violations["request_id"].reason == "REQUIRED"


async def test_refusals_say_what_is_wrong_with_the_order(stub, points):
    program_id = await bean_club(stub, points)
    jo = member(program_id)
    await earn(stub, points, jo, "o-plain", 2_000)  # earned without lines

    async def reason_of(
        request: api.ReverseOrderRequest, key: str = "pos"
    ) -> tuple[str, dict[str, str]]:
        error = rich_error(await failure(stub.ReverseOrder(request, metadata=points.md(key))))
        return error.info.reason, dict(error.info.metadata)

    dollars = reverse(jo, "o-plain", amount=100)
    dollars.amount.currency_code = "USD"
    assert await reason_of(dollars) == ("CURRENCY_MISMATCH", {"program_currency": "EUR"})
    assert (await reason_of(reverse(jo, "o-plain", amount=2_001)))[1] == {
        "refundable_amount_minor": "2000"
    }
    assert (await reason_of(reverse(jo, "o-plain", lines={"1": 1})))[0] == "ORDER_LINES_UNKNOWN"
    assert (await reason_of(reverse(jo, "o-other")))[0] == "ORDER_NOT_FOUND"
    stranger = customer_pb2.CustomerRef(program_id=program_id, customer_id="stranger")
    assert (await reason_of(reverse(stranger, "o-plain")))[0] == "CUSTOMER_NOT_FOUND"
    nowhere = customer_pb2.CustomerRef(program_id="prg_missing", customer_id="c")
    assert (await reason_of(reverse(nowhere, "o-plain")))[0] == "PROGRAM_NOT_FOUND"
    assert (await reason_of(reverse(jo, "o-plain"), key="reader"))[0] == "MISSING_SCOPE"

    # An order only paid with points has no known amount: it can only be refunded in full.
    await stub.Adjust(
        api.AdjustRequest(request_id=unique("r"), customer=jo, points=10, reason="gift"),
        metadata=points.md(),
    )
    await stub.Redeem(
        api.RedeemRequest(
            request_id=unique("r"), customer=jo, points=10, order_id="o-points", reason="test"
        ),
        metadata=points.md("pos"),
    )
    assert (await reason_of(reverse(jo, "o-points", amount=1)))[0] == "ORDER_AMOUNT_UNKNOWN"
    full = await stub.ReverseOrder(reverse(jo, "o-points"), metadata=points.md("pos"))
    assert (full.points_restored, full.order_fully_refunded) == (10, True)
