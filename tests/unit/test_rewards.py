"""The rewards catalog as a merchant configures it: validation, prices, limits, errors."""

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from services.points.application.rewards import voucher_request_id
from services.points.clients.promotions import voucher_error
from services.points.domain.rewards import (
    LIFETIME_PERIOD,
    CharityDonationReward,
    PaymentOption,
    PhysicalItemReward,
    PointsPlusCash,
    Reward,
    RewardItem,
    RewardKind,
    VoucherReward,
    check_reward_currency,
    limit_period_key,
    redemption_limit_reached,
    validate_reward,
)
from services.points.domain.rules import Limit, LimitPeriod, Money
from shared.errors import ErrorKind, FailedPrecondition, InvalidArgument
from shared.grpc.status import STATUS_DETAILS_KEY
from shared.validation import Violations

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
CREATED = dt.datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

MUG = PhysicalItemReward(sku="MUG-LOGO-350", stock=5)
FIVE_OFF = VoucherReward(campaign_id="cmp_5off")
RED_CROSS = CharityDonationReward(
    charity_id="red-cross-de", charity_name="German Red Cross", donation=Money("EUR", 500)
)


def reward(item: RewardItem = MUG, **changes: object) -> Reward:
    fields: dict[str, object] = {
        "reward_id": "rwd_1",
        "program_id": "prg_1",
        "display_name": "Logo mug",
        "points_cost": 1_000,
        "item": item,
        "created_at": CREATED,
    }
    fields.update(changes)
    return Reward(**fields)  # type: ignore[arg-type]


def violations_of(candidate: Reward) -> dict[str, str]:
    violations = Violations()
    validate_reward(candidate, violations)
    return {v.field: v.reason for v in violations.items}


# ------------------------------------------------------------------------------ the model


def test_each_kind_names_its_proto_oneof_field():
    assert reward(FIVE_OFF).kind is RewardKind.VOUCHER
    assert reward(MUG).kind.value == "physical_item"
    assert reward(RED_CROSS).kind.value == "charity_donation"


def test_only_a_physical_item_without_units_is_out_of_stock():
    assert reward(MUG).in_stock
    assert not reward(dataclasses.replace(MUG, stock=0)).in_stock
    assert reward(FIVE_OFF).in_stock
    assert reward(RED_CROSS).in_stock


def test_points_only_costs_the_points_and_no_cash_in_the_programs_currency():
    price = reward().price(PaymentOption.POINTS_ONLY, "EUR")
    assert (price.points, price.cash) == (1_000, Money("EUR", 0))


def test_points_plus_cash_costs_fewer_points_and_the_cash():
    offer = reward(points_plus_cash=PointsPlusCash(400, Money("EUR", 299)))
    price = offer.price(PaymentOption.POINTS_PLUS_CASH, "EUR")
    assert (price.points, price.cash) == (400, Money("EUR", 299))


def test_points_plus_cash_must_be_offered():
    with pytest.raises(FailedPrecondition) as refused:
        reward().price(PaymentOption.POINTS_PLUS_CASH, "EUR")
    assert refused.value.reason == "POINTS_PLUS_CASH_NOT_OFFERED"
    assert refused.value.metadata == {"reward_id": "rwd_1"}


# -------------------------------------------------------------------------------- limits


def test_a_lifetime_limit_counts_every_redemption_in_one_bucket():
    once = Limit(1, LimitPeriod.LIFETIME)
    assert limit_period_key(once, CREATED, BERLIN) == LIFETIME_PERIOD
    assert limit_period_key(once, CREATED + dt.timedelta(days=900), BERLIN) == LIFETIME_PERIOD


def test_a_monthly_limit_counts_per_local_calendar_month():
    monthly = Limit(2, LimitPeriod.MONTH)
    # Berlin is on summer time (UTC+2) by 31 March: 21:30 UTC is 23:30 on 31 March there,
    # 22:30 UTC is already 00:30 on 1 April.
    last_evening = dt.datetime(2025, 3, 31, 21, 30, tzinfo=UTC)
    after_midnight = dt.datetime(2025, 3, 31, 22, 30, tzinfo=UTC)
    march = limit_period_key(monthly, last_evening, BERLIN)
    april = limit_period_key(monthly, after_midnight, BERLIN)
    assert march == "2025-02-28T23:00:00+00:00"
    assert april == "2025-03-31T22:00:00+00:00"


def test_the_limit_error_says_how_often_and_per_what():
    error = redemption_limit_reached(reward(), Limit(2, LimitPeriod.MONTH))
    assert error.reason == "REDEMPTION_LIMIT_REACHED"
    assert error.metadata == {"reward_id": "rwd_1", "max_count": "2", "period": "MONTH"}
    assert "2 times per month" in error.message
    once = redemption_limit_reached(reward(), Limit(1, LimitPeriod.LIFETIME))
    assert "once in total" in once.message


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize("item", [MUG, FIVE_OFF, RED_CROSS])
def test_a_well_formed_reward_of_each_kind_is_valid(item):
    offer = reward(
        item,
        points_plus_cash=PointsPlusCash(999, Money("EUR", 1)),
        per_customer_limit=Limit(1, LimitPeriod.DAY),
    )
    assert violations_of(offer) == {}


def test_every_bad_field_is_reported_at_once_with_the_proto_path():
    bad = reward(
        PhysicalItemReward(sku="x" * 129, stock=-1),
        program_id="",
        display_name="  ",
        description="d" * 2_001,
        points_cost=0,
        per_customer_limit=Limit(0, LimitPeriod.WEEK),
    )
    assert violations_of(bad) == {
        "reward.program_id": "REQUIRED",
        "reward.display_name": "REQUIRED",
        "reward.description": "TOO_LONG",
        "reward.points_cost": "OUT_OF_RANGE",
        "reward.per_customer_limit.max_count": "OUT_OF_RANGE",
        "reward.physical_item.sku": "TOO_LONG",
        "reward.physical_item.stock": "OUT_OF_RANGE",
    }


def test_points_above_the_api_limit_are_out_of_range():
    assert violations_of(reward(points_cost=10**12 + 1)) == {"reward.points_cost": "OUT_OF_RANGE"}


def test_a_stock_of_zero_is_a_valid_starting_point():
    assert violations_of(reward(PhysicalItemReward(stock=0))) == {}


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        (
            PointsPlusCash(1_000, Money("EUR", 100)),
            {"reward.points_plus_cash.points": "OUT_OF_RANGE"},
        ),
        (PointsPlusCash(0, Money("EUR", 100)), {"reward.points_plus_cash.points": "OUT_OF_RANGE"}),
        (PointsPlusCash(10, Money("", 0)), {"reward.points_plus_cash.cash": "REQUIRED"}),
        (
            PointsPlusCash(10, Money("eur", 0)),
            {
                "reward.points_plus_cash.cash.currency_code": "INVALID_CURRENCY",
                "reward.points_plus_cash.cash.amount_minor": "OUT_OF_RANGE",
            },
        ),
    ],
)
def test_points_plus_cash_is_cheaper_in_points_and_costs_some_cash(price, expected):
    assert violations_of(reward(points_plus_cash=price)) == expected


def test_a_voucher_needs_its_campaign_and_a_donation_its_charity_and_amount():
    assert violations_of(reward(VoucherReward(campaign_id=""))) == {
        "reward.voucher.campaign_id": "REQUIRED"
    }
    donation = CharityDonationReward(charity_id="", charity_name=" ", donation=Money("EUR", -5))
    assert violations_of(reward(donation)) == {
        "reward.charity_donation.charity_id": "REQUIRED",
        "reward.charity_donation.charity_name": "REQUIRED",
        "reward.charity_donation.donation.amount_minor": "OUT_OF_RANGE",
    }


def test_the_cash_price_must_be_in_the_programs_currency_but_a_donation_need_not():
    usd_cash = reward(points_plus_cash=PointsPlusCash(500, Money("USD", 300)))
    with pytest.raises(InvalidArgument) as mismatch:
        check_reward_currency(usd_cash, "EUR")
    assert mismatch.value.reason == "CURRENCY_MISMATCH"
    assert mismatch.value.metadata == {"program_currency": "EUR"}
    assert [v.field for v in mismatch.value.violations] == [
        "reward.points_plus_cash.cash.currency_code"
    ]
    check_reward_currency(reward(RED_CROSS), "USD")


# ----------------------------------------------------------------------------- vouchers


def test_the_voucher_request_id_is_the_same_for_every_retry_and_fits_the_contract():
    first = voucher_request_id("prg_1", "r-1")
    assert first == voucher_request_id("prg_1", "r-1")
    assert first != voucher_request_id("prg_1", "r-2")
    assert first != voucher_request_id("prg_2", "r-1")
    longest = voucher_request_id("prg_1", "x" * 128)
    assert len(longest) <= 128
    assert longest.isprintable()


def promotions_failure(code: grpc.StatusCode, reason: str = "") -> aio.AioRpcError:
    trailing = aio.Metadata()
    if reason:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="promotions.loyalty"))
        status = status_pb2.Status(code=code.value[0], message="refused", details=[info])
        trailing.add(STATUS_DETAILS_KEY, status.SerializeToString())
    return aio.AioRpcError(code, aio.Metadata(), trailing, details="refused")


def test_a_refusal_by_promotions_is_voucher_not_issued_with_its_reason():
    error = voucher_error(
        promotions_failure(grpc.StatusCode.FAILED_PRECONDITION, "CAMPAIGN_NOT_ACTIVE")
    )
    assert (error.kind, error.reason) == (ErrorKind.FAILED_PRECONDITION, "VOUCHER_NOT_ISSUED")
    assert error.metadata == {"promotions_reason": "CAMPAIGN_NOT_ACTIVE"}
    bare = voucher_error(promotions_failure(grpc.StatusCode.NOT_FOUND))
    assert bare.metadata == {"promotions_reason": "NOT_FOUND"}


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.PERMISSION_DENIED,
    ],
)
def test_anything_else_is_promotions_unavailable_and_worth_a_retry(code):
    error = voucher_error(promotions_failure(code))
    assert (error.kind, error.reason) == (ErrorKind.UNAVAILABLE, "PROMOTIONS_UNAVAILABLE")
    assert error.metadata == {"promotions_status": code.name}
