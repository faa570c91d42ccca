"""Earning rules and earning over real gRPC on PostgreSQL, from a merchant's point of view.

Bean Club (USD, New York time) gives 1 point per $1 on orders of $10 or more with coffee
counting double, and 50 points for a review once a day. Each test sets up its own
program, so rules never leak from one test into another.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc import aio

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc as grpc_api
from loyalty.points.v1 import resources_pb2 as pb
from loyalty.tiers.v1 import resources_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_api
from loyalty.tiers.v1 import tiers_service_pb2_grpc as tiers_grpc
from loyalty.type.v1 import cart_pb2, customer_pb2, money_pb2
from services.points.app import SPEC
from services.tiers.app import SCOPES as TIER_SCOPES
from services.tiers.app import SPEC as TIERS_SPEC
from shared.clock import ManualClock
from shared.proto_types import to_timestamp
from shared.service import Mounted, Runtime, ServiceSpec
from tests.support.servers import RunningService, running_service
from tests.support.status import rich_error

NOW = dt.datetime(2026, 3, 14, 16, 0, tzinfo=dt.UTC)  # noon in New York
_serial = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_serial)}"


# ------------------------------------------------------------------------------ servers


class GoldTiers(tiers_grpc.TierServiceServicer):
    """Stands in for the tiers service, which is not built yet, answering GetCustomerTier
    as its contract says: customers whose id starts with "gold-" are Gold (1.5x,
    referrals 2x), everyone else is in the base tier, which has no multiplier."""

    async def GetCustomerTier(
        self, request: tiers_api.GetCustomerTierRequest, context: Any
    ) -> tiers_api.GetCustomerTierResponse:
        tier = tiers_pb.Tier(tier_id="base", display_name="Member")
        if request.customer.customer_id.startswith("gold-"):
            benefits = tiers_pb.TierBenefits(
                earning_multiplier_bps=15_000,
                event_multiplier_bps={"referral_completed": 20_000},
            )
            tier = tiers_pb.Tier(tier_id="gold", display_name="Gold", level=1, benefits=benefits)
        return tiers_api.GetCustomerTierResponse(
            customer_tier=tiers_pb.CustomerTier(customer=request.customer, tier=tier)
        )


def gold_tiers_spec() -> ServiceSpec:
    async def mount(runtime: Runtime) -> Mounted:
        servicer = GoldTiers()  # type: ignore[abstract]  # other RPCs: UNIMPLEMENTED
        return Mounted(servicer, tiers_grpc.add_TierServiceServicer_to_server, TIER_SCOPES)

    return ServiceSpec(
        name="tiers",
        full_name=TIERS_SPEC.full_name,
        settings_cls=TIERS_SPEC.settings_cls,
        metadata=TIERS_SPEC.metadata,
        migrations_dir=TIERS_SPEC.migrations_dir,
        mount=mount,
    )


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture(scope="module")
async def gold_tiers(keys, tmp_path_factory):
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('tiers') / 'gold.db'}"
    async with running_service(gold_tiers_spec(), url, keys) as service:
        yield service


@pytest.fixture(scope="module")
async def points(pg_url, keys, clock, gold_tiers):
    target = f"dns:///127.0.0.1:{gold_tiers.port}"
    async with running_service(SPEC, pg_url, keys, clock=clock, tiers_target=target) as service:
        yield service


@pytest.fixture(scope="module")
def stub(points) -> grpc_api.PointsServiceStub:
    return grpc_api.PointsServiceStub(points.channel)


# ------------------------------------------------------------------------------ helpers


def usd(cents: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=cents)


def per_dollar(minimum_cents: int = 1_000, **fields: Any) -> pb.EarningRule:
    rule = pb.OrderRule(points_per_unit=1, spend_unit=usd(100), **fields)
    if minimum_cents:
        rule.minimum_order_amount.CopyFrom(usd(minimum_cents))
    return pb.EarningRule(display_name="1 point per $1", order_rule=rule)


COFFEE_DOUBLE = pb.LineMultiplier(category="coffee", multiplier_bps=20_000)


def review_bonus(**fields: Any) -> pb.EarningRule:
    terms = pb.CustomEventRule(
        event_type="review_submitted",
        points=50,
        frequency_cap=pb.Limit(max_count=1, period=pb.LIMIT_PERIOD_DAY),
        **fields,
    )
    return pb.EarningRule(display_name="Review bonus", custom_event_rule=terms)


def tier_multiplier(scope: int = pb.MULTIPLIER_SCOPE_ORDERS_AND_EVENTS) -> pb.EarningRule:
    terms = pb.TierMultiplierRule(scope=scope)  # type: ignore[arg-type]
    return pb.EarningRule(display_name="Tier bonus", tier_multiplier_rule=terms)


async def new_program(stub, points: RunningService, pending_days: int = 0) -> str:
    program = pb.Program(
        display_name="Bean Club",
        currency_code="USD",
        time_zone="America/New_York",
        refund_policy=pb.REFUND_POLICY_WITHIN_AVAILABLE,
        rounding_mode=pb.ROUNDING_MODE_DOWN,
    )
    program.pending_period.seconds = pending_days * 86_400
    request = api.CreateProgramRequest(request_id=unique("r-program"), program=program)
    return (await stub.CreateProgram(request, metadata=points.md())).program.program_id


async def add_rule(stub, points: RunningService, program_id: str, rule: pb.EarningRule):
    copy = pb.EarningRule()
    copy.CopyFrom(rule)
    copy.program_id = program_id
    request = api.CreateEarningRuleRequest(request_id=unique("r-rule"), rule=copy)
    return (await stub.CreateEarningRule(request, metadata=points.md())).rule


def order_request(
    program_id: str,
    customer_id: str,
    order_id: str,
    cents: int,
    *,
    lines: tuple[cart_pb2.CartLine, ...] = (),
    occurred_at: dt.datetime = NOW,
    request_id: str | None = None,
) -> api.EarnForOrderRequest:
    request = api.EarnForOrderRequest(
        request_id=unique("r-order") if request_id is None else request_id,
        customer=customer_pb2.CustomerRef(program_id=program_id, customer_id=customer_id),
        order_id=order_id,
        amount=usd(cents),
        occurred_at=to_timestamp(occurred_at),
    )
    if lines:
        request.cart.CopyFrom(cart_pb2.Cart(currency_code="USD", lines=lines, channel="pos"))
    return request


def event_request(
    program_id: str, customer_id: str, event_type: str, occurred_at: dt.datetime = NOW
) -> api.RecordEventRequest:
    return api.RecordEventRequest(
        request_id=unique("r-event"),
        customer=customer_pb2.CustomerRef(program_id=program_id, customer_id=customer_id),
        event_type=event_type,
        occurred_at=to_timestamp(occurred_at),
    )


BEANS = cart_pb2.CartLine(
    line_id="1", sku="BEANS-1KG", categories=["coffee"], quantity=1, unit_price=usd(3_000)
)
MUG = cart_pb2.CartLine(
    line_id="2", sku="MUG-350", categories=["merch"], quantity=1, unit_price=usd(1_250)
)


async def total(stub, points: RunningService, program_id: str, customer_id: str) -> int:
    ref = customer_pb2.CustomerRef(program_id=program_id, customer_id=customer_id)
    reply = await stub.GetBalance(api.GetBalanceRequest(customer=ref), metadata=points.md())
    return reply.balance.total


async def failure(call) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    return raised.value


# ------------------------------------------------------------------------------- orders


async def test_an_order_earns_per_dollar_with_coffee_double_and_explains_it(stub, points):
    program_id = await new_program(stub, points)
    rule = await add_rule(stub, points, program_id, per_dollar(line_multipliers=[COFFEE_DOUBLE]))
    await stub.EarnForOrder(
        order_request(program_id, "ann", "10041", 1_500), metadata=points.md("pos")
    )
    before = await total(stub, points, program_id, "ann")

    request = order_request(program_id, "ann", "10042", 4_250, lines=(BEANS, MUG))
    reply = await stub.EarnForOrder(request, metadata=points.md("pos"))

    # $30 of coffee at 2x and $12.50 at 1x: 72.5 points, rounded down.
    assert reply.points == 72
    [contribution] = reply.contributions
    assert (contribution.rule_id, contribution.rule_revision) == (rule.rule_id, 1)
    assert contribution.kind == pb.EARNING_RULE_KIND_ORDER
    assert contribution.explanation == (
        "1 point per $1.00 on $42.50, coffee 2x = 72 points (rounded down)"
    )
    assert reply.explanation == "72 points earned"
    assert reply.no_points_reason == pb.SKIP_REASON_UNSPECIFIED
    assert not reply.HasField("available_at")
    [entry] = reply.entries
    assert entry.type == pb.LEDGER_ENTRY_TYPE_EARN
    assert (entry.order_id, entry.rule_id, entry.points) == ("10042", rule.rule_id, 72)
    assert entry.reason == contribution.explanation
    assert entry.request_id == request.request_id
    after = await total(stub, points, program_id, "ann")
    assert after - before == sum(e.points for e in reply.entries) == reply.points
    assert reply.balance.total == after


async def test_a_below_one_multiplier_writes_a_negative_entry_and_the_sum_still_holds(stub, points):
    program_id = await new_program(stub, points)
    await add_rule(stub, points, program_id, per_dollar())
    slow_week = pb.TimeWindowMultiplierRule(
        starts_at=to_timestamp(NOW - dt.timedelta(days=1)),
        ends_at=to_timestamp(NOW + dt.timedelta(days=1)),
        multiplier_bps=5_000,
        scope=pb.MULTIPLIER_SCOPE_ORDERS,
    )
    halved = await add_rule(
        stub,
        points,
        program_id,
        pb.EarningRule(display_name="Half points", time_window_multiplier_rule=slow_week),
    )
    reply = await stub.EarnForOrder(
        order_request(program_id, "bo", "o-1", 4_250), metadata=points.md("pos")
    )
    assert [e.points for e in reply.entries] == [42, -21]
    assert reply.entries[1].rule_id == halved.rule_id
    assert reply.points == reply.balance.total == 21


async def test_a_small_order_earns_nothing_and_says_why(stub, points):
    program_id = await new_program(stub, points)
    await add_rule(stub, points, program_id, per_dollar())
    reply = await stub.EarnForOrder(
        order_request(program_id, "cy", "o-small", 999), metadata=points.md("pos")
    )
    assert reply.points == 0
    assert reply.no_points_reason == pb.SKIP_REASON_BELOW_MINIMUM_ORDER
    assert reply.explanation == "No points: Order total $9.99 is below the $10.00 minimum"
    assert not reply.entries
    # The customer exists from now on, with an empty balance.
    assert await total(stub, points, program_id, "cy") == 0


async def test_a_retry_with_another_request_id_returns_the_original_response(stub, points):
    program_id = await new_program(stub, points)
    await add_rule(stub, points, program_id, per_dollar())
    first = order_request(program_id, "di", "o-retry", 2_000, request_id="till-1")
    original = await stub.EarnForOrder(first, metadata=points.md("pos"))
    again = await stub.EarnForOrder(first, metadata=points.md("pos"))
    retry = order_request(program_id, "di", "o-retry", 2_000, request_id="till-2")
    replayed = await stub.EarnForOrder(retry, metadata=points.md("pos"))
    assert again == original
    assert replayed == original
    assert await total(stub, points, program_id, "di") == 20


async def test_concurrent_retries_of_one_order_earn_once(stub, points):
    program_id = await new_program(stub, points)
    await add_rule(stub, points, program_id, per_dollar())
    requests = [
        order_request(program_id, "ed", "o-storm", 5_000, request_id=f"storm-{index}")
        for index in range(8)
    ]
    replies = await asyncio.gather(
        *(stub.EarnForOrder(r, metadata=points.md("pos")) for r in requests)
    )
    assert len({reply.SerializeToString() for reply in replies}) == 1
    assert await total(stub, points, program_id, "ed") == 50


async def test_the_same_order_with_another_amount_is_refused_on_order_id(stub, points):
    program_id = await new_program(stub, points)
    await add_rule(stub, points, program_id, per_dollar())
    await stub.EarnForOrder(
        order_request(program_id, "flo", "o-twice", 2_000), metadata=points.md("pos")
    )
    changed = order_request(program_id, "flo", "o-twice", 9_000)
    error = rich_error(await failure(stub.EarnForOrder(changed, metadata=points.md("pos"))))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.info.reason == "REQUEST_ID_REUSED"
    assert error.info.metadata["original_method"] == "EarnForOrder"
    assert set(error.violations) == {"order_id"}
    assert await total(stub, points, program_id, "flo") == 20


async def test_a_request_id_reused_for_another_order_is_refused(stub, points):
    program_id = await new_program(stub, points)
    await add_rule(stub, points, program_id, per_dollar())
    first = order_request(program_id, "gus", "o-a", 2_000, request_id="till-7")
    await stub.EarnForOrder(first, metadata=points.md("pos"))
    other = order_request(program_id, "gus", "o-b", 2_000, request_id="till-7")
    error = rich_error(await failure(stub.EarnForOrder(other, metadata=points.md("pos"))))
    assert error.info.reason == "REQUEST_ID_REUSED"
    assert set(error.violations) == {"request_id"}


async def test_points_stay_pending_through_the_return_window(stub, points):
    program_id = await new_program(stub, points, pending_days=14)
    await add_rule(stub, points, program_id, per_dollar())
    reply = await stub.EarnForOrder(
        order_request(program_id, "hal", "o-pending", 3_000), metadata=points.md("pos")
    )
    spendable = NOW + dt.timedelta(days=14)
    assert reply.available_at.ToDatetime(tzinfo=dt.UTC) == spendable
    assert reply.explanation == "30 points earned, spendable from 28 Mar 2026"
    [entry] = reply.entries
    assert (entry.pending_delta, entry.available_delta) == (30, 0)
    assert entry.available_at.ToDatetime(tzinfo=dt.UTC) == spendable
    balance = reply.balance
    assert (balance.available, balance.pending, balance.total) == (0, 30, 30)
    assert balance.next_activation.at.ToDatetime(tzinfo=dt.UTC) == spendable
    assert balance.next_activation.points == 30


async def test_an_archived_rule_no_longer_earns(stub, points):
    program_id = await new_program(stub, points)
    rule = await add_rule(stub, points, program_id, per_dollar())
    archive = api.ArchiveEarningRuleRequest(
        request_id=unique("r-archive"), program_id=program_id, rule_id=rule.rule_id
    )
    await stub.ArchiveEarningRule(archive, metadata=points.md())
    reply = await stub.EarnForOrder(
        order_request(program_id, "ivy", "o-late", 5_000), metadata=points.md("pos")
    )
    assert reply.points == 0
    assert reply.no_points_reason == pb.SKIP_REASON_NO_MATCHING_RULE


# ------------------------------------------------------------------------------- events


async def test_a_review_earns_once_a_day_and_then_says_why_not(stub, points):
    program_id = await new_program(stub, points)
    rule = await add_rule(stub, points, program_id, review_bonus())
    morning, noon = NOW - dt.timedelta(hours=3), NOW
    first = await stub.RecordEvent(
        event_request(program_id, "jo", "review_submitted", morning), metadata=points.md("pos")
    )
    assert first.points == 50
    assert first.explanation == "50 points earned: Review bonus"
    [entry] = first.entries
    assert (entry.rule_id, entry.event_type, entry.available_delta) == (
        rule.rule_id,
        "review_submitted",
        50,
    )
    second = await stub.RecordEvent(
        event_request(program_id, "jo", "review_submitted", noon), metadata=points.md("pos")
    )
    assert second.points == 0
    assert second.no_points_reason == pb.SKIP_REASON_FREQUENCY_CAP_REACHED
    [skip] = second.skipped_rules
    assert skip.rule_id == rule.rule_id
    assert skip.explanation.startswith("Review bonus already given today (limit 1 per day)")
    assert second.balance.total == 50
    tomorrow = await stub.RecordEvent(
        event_request(program_id, "jo", "review_submitted", morning - dt.timedelta(days=1)),
        metadata=points.md("pos"),
    )
    assert tomorrow.points == 50  # another day (a late upload from yesterday)


async def test_a_cooldown_spaces_awards_apart(stub, points):
    program_id = await new_program(stub, points)
    goal = pb.CustomEventRule(event_type="activity_goal_reached", points=20)
    goal.cooldown.FromTimedelta(dt.timedelta(hours=6))
    await add_rule(
        stub, points, program_id, pb.EarningRule(display_name="Daily goal", custom_event_rule=goal)
    )

    async def record(hours_ago: int) -> api.RecordEventResponse:
        request = event_request(
            program_id, "kai", "activity_goal_reached", NOW - dt.timedelta(hours=hours_ago)
        )
        return await stub.RecordEvent(request, metadata=points.md("pos"))

    assert (await record(10)).points == 20
    cooling = await record(9)
    assert cooling.no_points_reason == pb.SKIP_REASON_COOLDOWN_ACTIVE
    assert "in its 6 hours cooldown until" in cooling.skipped_rules[0].explanation
    assert (await record(3)).points == 20


async def test_an_event_without_a_rule_earns_nothing(stub, points):
    program_id = await new_program(stub, points)
    await add_rule(stub, points, program_id, review_bonus())
    reply = await stub.RecordEvent(
        event_request(program_id, "lu", "newsletter_signup"), metadata=points.md("pos")
    )
    assert reply.points == 0
    assert reply.no_points_reason == pb.SKIP_REASON_NO_MATCHING_RULE
    assert reply.explanation == "No points: no active rule for event type 'newsletter_signup'"


async def test_concurrent_reviews_of_one_customer_respect_the_daily_cap(stub, points):
    program_id = await new_program(stub, points)
    await add_rule(stub, points, program_id, review_bonus())
    # Open the connection pool first, so the events really run side by side instead of
    # the first one finishing while the others wait for connections.
    listing = api.ListEarningRulesRequest(program_id=program_id)
    await asyncio.gather(*(stub.ListEarningRules(listing, metadata=points.md()) for _ in range(10)))
    for _ in range(3):
        customer = unique("storm")
        replies = await asyncio.gather(
            *(
                stub.RecordEvent(
                    event_request(program_id, customer, "review_submitted"),
                    metadata=points.md("pos"),
                )
                for _ in range(10)
            )
        )
        assert sorted(reply.points for reply in replies) == [0] * 9 + [50]
        capped = [r for r in replies if not r.points]
        assert {r.no_points_reason for r in capped} == {pb.SKIP_REASON_FREQUENCY_CAP_REACHED}
        assert await total(stub, points, program_id, customer) == 50


# -------------------------------------------------------------------------------- tiers


async def test_gold_members_earn_their_tier_multiplier(stub, points):
    program_id = await new_program(stub, points)
    await add_rule(stub, points, program_id, per_dollar())
    tier_rule = await add_rule(stub, points, program_id, tier_multiplier())
    gold = await stub.EarnForOrder(
        order_request(program_id, "gold-mia", "o-gold", 2_000), metadata=points.md("pos")
    )
    assert [(c.points, c.multiplier_bps) for c in gold.contributions] == [(20, 0), (10, 15_000)]
    assert gold.contributions[1].explanation == "Gold tier 1.5x: +10 points"
    assert gold.entries[1].rule_id == tier_rule.rule_id
    member = await stub.EarnForOrder(
        order_request(program_id, "ned", "o-member", 2_000), metadata=points.md("pos")
    )
    assert member.points == 20
    assert member.skipped_rules[0].reason == pb.SKIP_REASON_NO_TIER_MULTIPLIER


@pytest.fixture(scope="module", params=["unreachable", "unimplemented"])
async def tiers_down(request, pg_url, keys, clock, tmp_path_factory):
    """The points service with the tiers service unreachable (nothing listens on port 1),
    or calling the real tiers service, which answers UNIMPLEMENTED for now."""
    if request.param == "unreachable":
        async with running_service(SPEC, pg_url, keys, clock=clock) as service:
            yield service
        return
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('tiers') / 'placeholder.db'}"
    async with running_service(TIERS_SPEC, url, keys) as tiers:
        target = f"dns:///127.0.0.1:{tiers.port}"
        async with running_service(SPEC, pg_url, keys, clock=clock, tiers_target=target) as service:
            yield service


async def test_a_tier_rule_without_the_tiers_service_is_unavailable(tiers_down):
    points = tiers_down
    stub = grpc_api.PointsServiceStub(points.channel)
    program_id = await new_program(stub, points)
    await add_rule(stub, points, program_id, per_dollar())
    await add_rule(stub, points, program_id, tier_multiplier(pb.MULTIPLIER_SCOPE_EVENTS))
    # The tier rule covers events only: orders never ask the tiers service.
    reply = await stub.EarnForOrder(
        order_request(program_id, "olga", "o-1", 2_000), metadata=points.md("pos")
    )
    assert reply.points == 20

    await add_rule(stub, points, program_id, review_bonus())
    call = stub.RecordEvent(
        event_request(program_id, "olga", "review_submitted"), metadata=points.md("pos")
    )
    error = rich_error(await failure(call))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.info.reason == "TIERS_UNAVAILABLE"
    assert await total(stub, points, program_id, "olga") == 20  # nothing was written


# ---------------------------------------------------------------------------- bad input


async def test_a_malformed_order_names_every_bad_field(stub, points):
    request = api.EarnForOrderRequest(
        request_id="r-bad",
        customer=customer_pb2.CustomerRef(program_id="prg_x"),
        cart=cart_pb2.Cart(currency_code="USD", lines=[cart_pb2.CartLine(line_id="1")]),
    )
    error = rich_error(await failure(stub.EarnForOrder(request, metadata=points.md("pos"))))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(error.violations) == {
        "customer.customer_id",
        "order_id",
        "amount",
        "occurred_at",
        "cart.lines[0].unit_price",
    }
    assert error.violations["occurred_at"].reason == "REQUIRED"


async def test_orders_in_another_currency_or_from_the_future_are_refused(stub, points):
    program_id = await new_program(stub, points)
    euros = order_request(program_id, "pia", "o-eur", 2_000)
    euros.amount.currency_code = "EUR"
    error = rich_error(await failure(stub.EarnForOrder(euros, metadata=points.md("pos"))))
    assert error.info.reason == "CURRENCY_MISMATCH"
    assert error.info.metadata["program_currency"] == "USD"
    assert "amount.currency_code" in error.violations

    future = order_request(
        program_id, "pia", "o-future", 2_000, occurred_at=NOW + dt.timedelta(minutes=6)
    )
    error = rich_error(await failure(stub.EarnForOrder(future, metadata=points.md("pos"))))
    assert error.violations["occurred_at"].reason == "OUT_OF_RANGE"
    bad_line = order_request(
        program_id,
        "pia",
        "o-line",
        2_000,
        lines=(cart_pb2.CartLine(line_id="1", unit_price=usd(5)),),
    )
    error = rich_error(await failure(stub.EarnForOrder(bad_line, metadata=points.md("pos"))))
    assert error.violations["cart.lines[0].quantity"].reason == "OUT_OF_RANGE"


async def test_earning_needs_a_request_id_and_a_known_program(stub, points):
    request = order_request("prg_missing", "quinn", "o-1", 2_000, request_id="")
    error = rich_error(await failure(stub.EarnForOrder(request, metadata=points.md("pos"))))
    assert error.violations["request_id"].reason == "REQUIRED"
    request.request_id = "r-missing"
    error = rich_error(await failure(stub.EarnForOrder(request, metadata=points.md("pos"))))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.info.reason == "PROGRAM_NOT_FOUND"


async def test_a_malformed_event_names_every_bad_field(stub, points):
    request = api.RecordEventRequest(
        request_id="r-bad-event", customer=customer_pb2.CustomerRef(program_id="prg_x")
    )
    error = rich_error(await failure(stub.RecordEvent(request, metadata=points.md("pos"))))
    assert set(error.violations) == {"customer.customer_id", "occurred_at"}


# -------------------------------------------------------------------------------- rules


async def test_a_malformed_rule_names_every_bad_field(stub, points):
    program_id = await new_program(stub, points)
    rule = pb.EarningRule(
        program_id=program_id,
        order_rule=pb.OrderRule(
            line_multipliers=[pb.LineMultiplier(multiplier_bps=-1)],
        ),
    )
    request = api.CreateEarningRuleRequest(request_id=unique("r-rule"), rule=rule)
    error = rich_error(await failure(stub.CreateEarningRule(request, metadata=points.md())))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(error.violations) == {
        "rule.display_name",
        "rule.order_rule.points_per_unit",
        "rule.order_rule.spend_unit",
        "rule.order_rule.line_multipliers[0]",
        "rule.order_rule.line_multipliers[0].multiplier_bps",
    }
    kindless = api.CreateEarningRuleRequest(
        request_id=unique("r-rule"), rule=pb.EarningRule(program_id=program_id, display_name="?")
    )
    error = rich_error(await failure(stub.CreateEarningRule(kindless, metadata=points.md())))
    assert error.violations["rule.kind"].reason == "REQUIRED"
    window = pb.EarningRule(
        program_id=program_id,
        display_name="Weekend",
        time_window_multiplier_rule=pb.TimeWindowMultiplierRule(multiplier_bps=20_000),
    )
    request = api.CreateEarningRuleRequest(request_id=unique("r-rule"), rule=window)
    error = rich_error(await failure(stub.CreateEarningRule(request, metadata=points.md())))
    assert {
        "rule.time_window_multiplier_rule.starts_at",
        "rule.time_window_multiplier_rule.ends_at",
        "rule.time_window_multiplier_rule.scope",
    } <= set(error.violations)


async def test_rule_money_must_be_in_the_program_currency(stub, points):
    program_id = await new_program(stub, points)
    rule = per_dollar()
    rule.order_rule.spend_unit.currency_code = "EUR"
    rule.program_id = program_id
    request = api.CreateEarningRuleRequest(request_id=unique("r-rule"), rule=rule)
    error = rich_error(await failure(stub.CreateEarningRule(request, metadata=points.md())))
    assert error.info.reason == "CURRENCY_MISMATCH"
    assert error.info.metadata["program_currency"] == "USD"
    assert "rule.order_rule.spend_unit.currency_code" in error.violations


async def test_a_program_has_at_most_one_active_tier_rule(stub, points):
    program_id = await new_program(stub, points)
    existing = await add_rule(stub, points, program_id, tier_multiplier())
    error = rich_error(await failure(add_rule(stub, points, program_id, tier_multiplier())))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.info.reason == "TIER_MULTIPLIER_RULE_EXISTS"
    assert error.info.metadata["rule_id"] == existing.rule_id


async def test_a_created_rule_is_replayed_for_its_request_id(stub, points):
    program_id = await new_program(stub, points)
    rule = review_bonus()
    rule.program_id = program_id
    request = api.CreateEarningRuleRequest(request_id=unique("r-rule"), rule=rule)
    first = await stub.CreateEarningRule(request, metadata=points.md())
    assert await stub.CreateEarningRule(request, metadata=points.md()) == first
    assert (first.rule.state, first.rule.revision) == (pb.EARNING_RULE_STATE_ACTIVE, 1)


async def test_updates_replace_masked_fields_and_make_a_revision(stub, points):
    program_id = await new_program(stub, points)
    rule = await add_rule(stub, points, program_id, per_dollar())
    change = pb.EarningRule(program_id=program_id, rule_id=rule.rule_id, display_name="2 per $1")
    change.order_rule.CopyFrom(pb.OrderRule(points_per_unit=2, spend_unit=usd(100)))
    mask = field_mask_pb2.FieldMask(paths=["display_name", "order_rule"])
    request = api.UpdateEarningRuleRequest(
        request_id=unique("r-update"), rule=change, update_mask=mask
    )
    updated = (await stub.UpdateEarningRule(request, metadata=points.md())).rule
    assert (updated.display_name, updated.revision) == ("2 per $1", 2)
    assert updated.order_rule.points_per_unit == 2
    assert not updated.order_rule.HasField("minimum_order_amount")  # replaced as a whole
    assert updated.description == rule.description  # not in the mask
    reply = await stub.EarnForOrder(
        order_request(program_id, "rex", "o-1", 500), metadata=points.md("pos")
    )
    assert reply.points == 10
    assert reply.contributions[0].rule_revision == 2


async def test_updates_cannot_change_the_kind_or_fixed_fields(stub, points):
    program_id = await new_program(stub, points)
    rule = await add_rule(stub, points, program_id, per_dollar())
    change = pb.EarningRule(program_id=program_id, rule_id=rule.rule_id)
    change.custom_event_rule.CopyFrom(review_bonus().custom_event_rule)

    async def update(*paths: str):
        request = api.UpdateEarningRuleRequest(
            request_id=unique("r-update"),
            rule=change,
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        )
        return rich_error(await failure(stub.UpdateEarningRule(request, metadata=points.md())))

    error = await update("custom_event_rule")
    assert error.info.reason == "FIELD_IMMUTABLE"
    assert "rule.custom_event_rule" in error.violations
    error = await update("program_id", "colour")
    assert error.violations["update_mask.paths[0]"].reason == "FIELD_IMMUTABLE"
    assert error.violations["update_mask.paths[1]"].reason == "INVALID_UPDATE_MASK"
    error = await update()
    assert error.info.reason == "INVALID_UPDATE_MASK"


async def test_archiving_is_idempotent_and_final(stub, points):
    program_id = await new_program(stub, points)
    rule = await add_rule(stub, points, program_id, per_dollar())

    async def archive() -> pb.EarningRule:
        request = api.ArchiveEarningRuleRequest(
            request_id=unique("r-archive"), program_id=program_id, rule_id=rule.rule_id
        )
        return (await stub.ArchiveEarningRule(request, metadata=points.md())).rule

    archived = await archive()
    assert archived.state == pb.EARNING_RULE_STATE_ARCHIVED
    assert archived.HasField("archived_at")
    assert await archive() == archived
    change = pb.EarningRule(program_id=program_id, rule_id=rule.rule_id, display_name="Again")
    request = api.UpdateEarningRuleRequest(
        request_id=unique("r-update"),
        rule=change,
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
    )
    error = rich_error(await failure(stub.UpdateEarningRule(request, metadata=points.md())))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.info.reason == "RULE_ARCHIVED"


async def test_an_unknown_rule_is_not_found(stub, points):
    program_id = await new_program(stub, points)
    request = api.ArchiveEarningRuleRequest(
        request_id=unique("r-archive"), program_id=program_id, rule_id="rul_missing"
    )
    error = rich_error(await failure(stub.ArchiveEarningRule(request, metadata=points.md())))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.info.reason == "RULE_NOT_FOUND"
    assert error.info.metadata["rule_id"] == "rul_missing"


async def test_listing_pages_through_rules_with_filters(stub, points):
    program_id = await new_program(stub, points)
    created = [await add_rule(stub, points, program_id, per_dollar()) for _ in range(3)]
    created.append(await add_rule(stub, points, program_id, review_bonus()))
    weekend = pb.TimeWindowMultiplierRule(
        starts_at=to_timestamp(NOW),
        ends_at=to_timestamp(NOW + dt.timedelta(days=2)),
        multiplier_bps=20_000,
        scope=pb.MULTIPLIER_SCOPE_EVENTS,
        event_types=["referral_completed"],
    )
    created.append(
        await add_rule(
            stub,
            points,
            program_id,
            pb.EarningRule(display_name="Referral weekend", time_window_multiplier_rule=weekend),
        )
    )
    archive = api.ArchiveEarningRuleRequest(
        request_id=unique("r-archive"), program_id=program_id, rule_id=created[0].rule_id
    )
    await stub.ArchiveEarningRule(archive, metadata=points.md())

    async def listing(**filters: Any) -> list[str]:
        seen: list[str] = []
        token = ""
        while True:
            request = api.ListEarningRulesRequest(
                program_id=program_id, page_size=2, page_token=token, **filters
            )
            page = await stub.ListEarningRules(request, metadata=points.md("reader"))
            assert len(page.rules) <= 2
            seen.extend(rule.rule_id for rule in page.rules)
            token = page.next_page_token
            if not token:
                return seen

    ids = [rule.rule_id for rule in created]
    assert await listing() == ids[1:]
    assert await listing(include_archived=True) == ids
    assert await listing(kinds=[pb.EARNING_RULE_KIND_ORDER], include_archived=True) == ids[:3]
    assert await listing(event_type="review_submitted") == [ids[3]]
    assert await listing(event_type="referral_completed") == [ids[4]]

    first = await stub.ListEarningRules(
        api.ListEarningRulesRequest(program_id=program_id, page_size=2), metadata=points.md()
    )
    other_filters = api.ListEarningRulesRequest(
        program_id=program_id, page_token=first.next_page_token, include_archived=True
    )
    error = rich_error(await failure(stub.ListEarningRules(other_filters, metadata=points.md())))
    assert error.violations["page_token"].reason == "INVALID_PAGE_TOKEN"


async def test_rules_of_other_programs_are_out_of_a_limited_key_s_reach(stub, points):
    program_id = await new_program(stub, points)
    request = api.ListEarningRulesRequest(program_id=program_id)
    error = rich_error(await failure(stub.ListEarningRules(request, metadata=points.md("limited"))))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.info.reason == "PROGRAM_NOT_ALLOWED"
    earn = order_request(program_id, "sam", "o-1", 2_000)
    error = rich_error(await failure(stub.EarnForOrder(earn, metadata=points.md("reader"))))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED


async def test_listing_an_unknown_program_is_not_found(stub, points):
    request = api.ListEarningRulesRequest(program_id="prg_missing")
    error = rich_error(await failure(stub.ListEarningRules(request, metadata=points.md())))
    assert error.info.reason == "PROGRAM_NOT_FOUND"
