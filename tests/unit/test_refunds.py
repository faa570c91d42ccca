"""Refund arithmetic as a merchant sees it: shares of an order, points taken back and given
back, cumulatively exact however an order is refunded in pieces."""

from __future__ import annotations

import dataclasses
import datetime as dt
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.points.domain.program import ExpiryPolicy, Program, RefundPolicy, Rounding
from services.points.domain.refunds import (
    AmountRefund,
    Clawback,
    FullRefund,
    LineRefund,
    LinesRefund,
    OrderedLine,
    OrderRecord,
    RefundScope,
    check_refund_currency,
    plan_refund,
    refundable_amount_minor,
    split_clawback,
)
from services.points.domain.rules import Money
from shared.errors import FailedPrecondition, InvalidArgument

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BEANS = OrderedLine("1", quantity=1, unit_price_minor=3_000)
MUGS = OrderedLine("2", quantity=2, unit_price_minor=1_000)


def program(rounding: Rounding = Rounding.DOWN) -> Program:
    return Program(
        program_id="prg_1",
        name="Bean Club",
        currency_code="EUR",
        time_zone="UTC",
        expiry=ExpiryPolicy(),
        pending_seconds=0,
        refund_policy=RefundPolicy.WITHIN_AVAILABLE,
        rounding=rounding,
        created_at=T0,
        updated_at=T0,
    )


def order(
    earned: int = 100,
    spent: int = 0,
    amount: int | None = 10_000,
    lines: tuple[OrderedLine, ...] | None = None,
) -> OrderRecord:
    return OrderRecord(
        program_id="prg_1",
        customer_id="ann",
        order_id="10042",
        amount=None if amount is None else Money("EUR", amount),
        lines=lines,
        points_earned=earned,
        points_spent=spent,
    )


def eur(minor: int) -> AmountRefund:
    return AmountRefund(Money("EUR", minor))


def lines(*pairs: tuple[str, int]) -> LinesRefund:
    return LinesRefund(tuple(LineRefund(line_id, quantity) for line_id, quantity in pairs))


def refund_in_turn(
    record: OrderRecord, scopes: list[RefundScope], rounding: Rounding = Rounding.DOWN
) -> tuple[OrderRecord, list[tuple[int, int]]]:
    """Apply each refund, taking back everything asked; (clawback, restore) of each."""
    moved = []
    for scope in scopes:
        plan = plan_refund(record, scope, program(rounding))
        moved.append((plan.clawback, plan.restore))
        settled = plan.settle(Clawback(plan.clawback, 0, 0))
        record = dataclasses.replace(record, refunded=settled)
    return record, moved


# ---------------------------------------------------------------------------- the share


def test_a_full_refund_takes_back_all_earned_and_restores_all_spent():
    plan = plan_refund(order(earned=42, spent=300), FullRefund(), program())
    assert (plan.share, plan.clawback, plan.restore, plan.covered.full) == (
        Fraction(1),
        42,
        300,
        True,
    )


def test_three_partial_refunds_by_amount_sum_exactly_to_what_was_earned():
    # €100 order earning 101 points: 33.33 -> 33, 66.66 -> 66 (so 33 more), then the rest.
    done, moved = refund_in_turn(order(earned=101), [eur(3_300), eur(3_300), eur(3_400)])
    assert moved == [(33, 0), (33, 0), (35, 0)]
    assert done.refunded.full
    assert done.refunded.clawed_back == 101


def test_cumulative_targets_use_the_programs_rounding_mode():
    # Half up: 33.33 -> 33, 66.66 -> 67 (34 more), the rest 34.
    _, moved = refund_in_turn(
        order(earned=101), [eur(3_300), eur(3_300), FullRefund()], Rounding.HALF_UP
    )
    assert [claw for claw, _ in moved] == [33, 34, 34]


def test_a_rounding_mode_changed_between_refunds_never_gives_points_back():
    first, _ = refund_in_turn(order(earned=101), [eur(3_301)], Rounding.UP)  # 33.34 -> 34
    plan = plan_refund(first, eur(1), program(Rounding.DOWN))  # 33.35 -> 33, below 34
    assert plan.clawback == 0


@given(
    earned=st.integers(0, 10**12),
    spent=st.integers(0, 10**12),
    amount=st.integers(1, 10**15),
    cuts=st.lists(st.integers(1, 10**15), max_size=6),
    rounding=st.sampled_from(list(Rounding)),
)
def test_partial_refunds_never_exceed_and_always_complete_exactly(
    earned, spent, amount, cuts, rounding
):
    record = order(earned=earned, spent=spent, amount=amount)
    clawed = restored = 0
    for cut in cuts:
        left = refundable_amount_minor(record)
        if left == 0:
            break
        plan = plan_refund(record, eur(min(cut, left)), program(rounding))
        assert plan.clawback >= 0
        assert plan.restore >= 0
        clawed += plan.clawback
        restored += plan.restore
        assert clawed <= earned
        assert restored <= spent
        record = dataclasses.replace(record, refunded=plan.settle(Clawback(plan.clawback, 0, 0)))
    if not record.refunded.full:
        plan = plan_refund(record, FullRefund(), program(rounding))
        clawed += plan.clawback
        restored += plan.restore
    assert (clawed, restored) == (earned, spent)


def test_lines_share_the_order_in_proportion_to_their_list_value():
    # Beans €30 and two mugs at €10 each: one mug is €10 of €50 list value, a fifth.
    record = order(earned=50, lines=(BEANS, MUGS))
    plan = plan_refund(record, lines(("2", 1)), program())
    assert (plan.share, plan.clawback) == (Fraction(1, 5), 10)
    assert plan.covered.units == {"2": 1}
    done, moved = refund_in_turn(record, [lines(("2", 1)), lines(("1", 1), ("2", 1))])
    assert moved == [(10, 0), (40, 0)]
    assert done.refunded.full


def test_free_lines_share_the_order_by_units():
    free = (OrderedLine("a", 1, 0), OrderedLine("b", 3, 0))
    plan = plan_refund(order(earned=40, amount=0, lines=free), lines(("b", 1)), program())
    assert (plan.share, plan.clawback) == (Fraction(1, 4), 10)


def test_a_line_refund_leaving_a_fraction_of_a_cent_is_completed_by_the_amount_rounded_up():
    thirds = (OrderedLine("a", 3, 1_000),)
    record, _ = refund_in_turn(order(earned=30, amount=1_000, lines=thirds), [lines(("a", 1))])
    assert refundable_amount_minor(record) == 667  # 666.67 left
    plan = plan_refund(record, eur(667), program())
    assert (plan.share, plan.clawback, plan.covered.full) == (Fraction(1), 20, True)


# ------------------------------------------------------------------------------- refusals


def refused(record: OrderRecord, scope: RefundScope) -> FailedPrecondition:
    with pytest.raises(FailedPrecondition) as error:
        plan_refund(record, scope, program())
    return error.value


def test_refunding_more_than_is_left_says_how_much_is_left():
    record, _ = refund_in_turn(order(), [eur(6_000)])
    error = refused(record, eur(4_001))
    assert error.reason == "REFUND_EXCEEDS_ORDER"
    assert error.metadata == {"refundable_amount_minor": "4000"}
    assert refused(order(amount=0), eur(1)).metadata == {"refundable_amount_minor": "0"}


def test_refunding_more_units_than_are_left_names_the_line():
    record, _ = refund_in_turn(order(lines=(BEANS, MUGS)), [lines(("2", 1))])
    error = refused(record, lines(("1", 1), ("2", 2)))
    assert error.reason == "REFUND_EXCEEDS_ORDER"
    assert error.metadata == {
        "refundable_amount_minor": "8000",
        "line_id": "2",
        "refundable_quantity": "1",
    }


def test_lines_on_top_of_an_amount_refund_may_not_exceed_the_order():
    record, _ = refund_in_turn(order(lines=(BEANS, MUGS)), [eur(5_000)])
    assert refused(record, lines(("1", 1))).reason == "REFUND_EXCEEDS_ORDER"  # 50% + 60%


def test_a_fully_refunded_order_cannot_be_refunded_again():
    record, _ = refund_in_turn(order(), [eur(10_000)])
    assert record.refunded.full
    error = refused(record, FullRefund())
    assert (error.reason, error.metadata) == ("ORDER_FULLY_REFUNDED", {"order_id": "10042"})


def test_an_order_that_only_spent_points_can_only_be_refunded_in_full():
    spent_only = order(earned=0, spent=80, amount=None)
    assert refused(spent_only, eur(100)).reason == "ORDER_AMOUNT_UNKNOWN"
    assert refused(spent_only, lines(("1", 1))).reason == "ORDER_AMOUNT_UNKNOWN"
    assert plan_refund(spent_only, FullRefund(), program()).restore == 80


def test_refunds_by_line_need_the_orders_lines():
    assert refused(order(lines=None), lines(("1", 1))).reason == "ORDER_LINES_UNKNOWN"


def test_unknown_lines_are_each_named():
    with pytest.raises(InvalidArgument) as error:
        plan_refund(order(lines=(BEANS,)), lines(("9", 1), ("1", 1), ("7", 1)), program())
    assert error.value.reason == "UNKNOWN_LINE"
    assert error.value.metadata == {"line_id": "9"}
    assert [v.field for v in error.value.violations] == [
        "lines.lines[0].line_id",
        "lines.lines[2].line_id",
    ]


def test_an_amount_in_another_currency_is_refused():
    check_refund_currency(eur(1), "EUR")
    check_refund_currency(FullRefund(), "USD")
    with pytest.raises(InvalidArgument) as error:
        check_refund_currency(eur(1), "USD")
    assert error.value.reason == "CURRENCY_MISMATCH"
    assert error.value.metadata == {"program_currency": "USD"}
    assert [v.field for v in error.value.violations] == ["amount.currency_code"]


# ------------------------------------------------------------------------------ clawbacks


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (RefundPolicy.PENDING_ONLY, Clawback(30, 0, 70)),
        (RefundPolicy.WITHIN_AVAILABLE, Clawback(30, 50, 20)),
        (RefundPolicy.ALLOW_NEGATIVE, Clawback(30, 70, 0)),
    ],
)
def test_pending_points_go_first_then_the_policy_decides(policy, expected):
    assert split_clawback(100, pending=30, available=50, policy=policy) == expected


def test_within_available_never_takes_from_a_debt():
    clawback = split_clawback(10, pending=0, available=-5, policy=RefundPolicy.WITHIN_AVAILABLE)
    assert clawback == Clawback(0, 0, 10)


def test_pending_points_beyond_the_clawback_stay_pending():
    clawback = split_clawback(10, pending=40, available=0, policy=RefundPolicy.PENDING_ONLY)
    assert (clawback.from_pending, clawback.taken, clawback.not_recovered) == (10, 10, 0)
