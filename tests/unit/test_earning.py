"""Earning on orders and custom events, from a merchant's point of view.

The scenarios follow what a merchant sets up (1 point per $1 with a $10 minimum, coffee
counts double, gift cards earn nothing, a double-points weekend, a Gold tier) and what a
cashier must be able to read off the result. The properties pin the contract's arithmetic:
exact fractions, one rounding per base contribution, a breakdown that sums to the total.
"""

import ast
import dataclasses
import datetime as dt
import inspect
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.points.domain import earning, rules
from services.points.domain.earning import (
    AwardHistory,
    Cart,
    CustomEvent,
    Earning,
    Order,
    OrderLine,
    SkipReason,
    TierBenefits,
    apply_event,
    earn_for_order,
    format_duration,
    format_money,
    format_multiplier,
    needs_tier_benefits,
)
from services.points.domain.program import (
    ExpiryPolicy,
    Program,
    RefundPolicy,
    Rounding,
    round_points,
)
from services.points.domain.rules import (
    CustomEventRule,
    EarningRule,
    Limit,
    LimitPeriod,
    LineMultiplier,
    Money,
    MultiplierScope,
    OrderRule,
    RuleDefinition,
    RuleKind,
    TierMultiplierRule,
    TimeWindowMultiplierRule,
    archive,
    revise,
)
from shared.errors import InvalidArgument

UTC = dt.UTC
SECOND = dt.timedelta(seconds=1)
NOW = dt.datetime(2025, 4, 12, 12, 0, tzinfo=UTC)  # a Saturday
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)


def program(**changes: object) -> Program:
    fields: dict[str, object] = {
        "program_id": "prg_1",
        "name": "Bean Club",
        "currency_code": "USD",
        "time_zone": "America/New_York",
        "expiry": ExpiryPolicy(),
        "pending_seconds": 0,
        "refund_policy": RefundPolicy.WITHIN_AVAILABLE,
        "rounding": Rounding.DOWN,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(changes)
    return Program(**fields)  # type: ignore[arg-type]


BERLIN_PROGRAM = program(currency_code="EUR", time_zone="Europe/Berlin")


class Rules:
    """Builds a program's rules in creation order, one minute apart."""

    def __init__(self) -> None:
        self.rules: list[EarningRule] = []

    def add(self, name: str, definition: RuleDefinition) -> EarningRule:
        created = T0 + dt.timedelta(minutes=len(self.rules))
        rule = EarningRule(
            rule_id=f"rul_{len(self.rules) + 1}",
            program_id="prg_1",
            display_name=name,
            definition=definition,
            created_at=created,
            updated_at=created,
        )
        self.rules.append(rule)
        return rule


def usd(cents: int) -> Money:
    return Money("USD", cents)


def per_dollar(points: int = 1, **changes: object) -> OrderRule:
    fields: dict[str, object] = {"points_per_unit": points, "spend_unit": usd(100)}
    fields.update(changes)
    return OrderRule(**fields)  # type: ignore[arg-type]


def window(
    bps: int,
    starts_at: dt.datetime = NOW - dt.timedelta(days=1),
    ends_at: dt.datetime = NOW + dt.timedelta(days=1),
    scope: MultiplierScope = MultiplierScope.ORDERS_AND_EVENTS,
    event_types: tuple[str, ...] = (),
) -> TimeWindowMultiplierRule:
    return TimeWindowMultiplierRule(
        starts_at=starts_at,
        ends_at=ends_at,
        multiplier_bps=bps,
        scope=scope,
        event_types=event_types,
    )


def line(line_id: str, cents: int, *categories: str, sku: str = "", quantity: int = 1) -> OrderLine:
    return OrderLine(
        line_id=line_id,
        sku=sku or f"SKU-{line_id}",
        categories=categories,
        quantity=quantity,
        unit_price=usd(cents),
    )


def order(cents: int, *lines: OrderLine, at: dt.datetime = NOW) -> Order:
    cart = Cart(currency_code="USD", lines=lines) if lines else None
    return Order(order_id="o-1", customer_id="c-1", amount=usd(cents), occurred_at=at, cart=cart)


def earn(
    rule_set: Rules,
    the_order: Order,
    the_program: Program | None = None,
    tier: TierBenefits | None = None,
) -> Earning:
    return earn_for_order(
        the_program or program(), rule_set.rules, the_order, tier_benefits=tier, now=NOW
    )


def event(event_type: str, at: dt.datetime = NOW) -> CustomEvent:
    return CustomEvent(customer_id="c-1", event_type=event_type, occurred_at=at)


def record(
    rule_set: Rules,
    the_event: CustomEvent,
    awards: dict[str, list[dt.datetime]] | None = None,
    the_program: Program = BERLIN_PROGRAM,
    tier: TierBenefits | None = None,
) -> Earning:
    return apply_event(
        the_program,
        rule_set.rules,
        the_event,
        AwardHistory(awards or {}),
        tier_benefits=tier,
        now=max(NOW, the_event.occurred_at),
    )


def points_by_rule(result: Earning) -> dict[str, int]:
    return {c.rule_name: c.points for c in result.contributions}


def skip_reasons(result: Earning) -> dict[str, SkipReason]:
    return {s.rule_name: s.reason for s in result.skipped_rules}


# -------------------------------------------------------------------------- order rules


def test_one_point_per_dollar_rounds_the_cents_down():
    rule_set = Rules()
    base = rule_set.add("1 point per dollar", per_dollar(minimum_order_amount=usd(1_000)))
    result = earn(rule_set, order(4_250))
    assert result.points == 42
    [contribution] = result.contributions
    assert contribution.rule_id == base.rule_id
    assert contribution.rule_revision == 1
    assert contribution.kind is RuleKind.ORDER
    assert contribution.multiplier_bps == 0
    assert contribution.explanation == "1 point per $1.00 on $42.50 = 42 points (rounded down)"
    assert result.explanation == "42 points earned"
    assert result.no_points_reason is None


def test_an_order_below_the_minimum_earns_nothing_and_says_why():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar(minimum_order_amount=usd(1_000)))
    result = earn(rule_set, order(999))
    assert result.points == 0
    assert result.no_points_reason is SkipReason.BELOW_MINIMUM_ORDER
    assert result.explanation == "No points: Order total $9.99 is below the $10.00 minimum"
    assert skip_reasons(result) == {"1 point per dollar": SkipReason.BELOW_MINIMUM_ORDER}


def test_an_order_of_exactly_the_minimum_earns():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar(minimum_order_amount=usd(1_000)))
    assert earn(rule_set, order(1_000)).points == 10


def test_a_free_order_earns_nothing():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    result = earn(rule_set, order(0))
    assert result.no_points_reason is SkipReason.ZERO_AMOUNT
    assert result.explanation == "No points: Nothing was paid"


def test_a_program_without_order_rules_earns_nothing_on_orders():
    rule_set = Rules()
    rule_set.add("Review bonus", CustomEventRule(event_type="review_submitted", points=50))
    result = earn(rule_set, order(4_250))
    assert result.points == 0
    assert result.no_points_reason is SkipReason.NO_MATCHING_RULE
    assert result.explanation == "No points: no earning rule applies to orders"


def test_partial_spend_units_earn_fractions_rounded_once():
    rule_set = Rules()
    rule_set.add("3 points per $5", per_dollar(3, spend_unit=usd(500)))
    # $12.00 is 2.4 units: 7.2 points.
    assert earn(rule_set, order(1_200)).points == 7
    assert earn(rule_set, order(1_200), program(rounding=Rounding.UP)).points == 8


def coffee_club_rule() -> OrderRule:
    return per_dollar(
        line_multipliers=(LineMultiplier(category="coffee", multiplier_bps=20_000),),
        excluded_categories=("gift cards",),
    )


COFFEE = line("1", 1_000, "coffee", quantity=2)
GIFT_CARD = line("2", 5_000, "gift cards")
MUG = line("3", 1_500, "merch")


def test_coffee_counts_double_and_gift_cards_earn_nothing():
    rule_set = Rules()
    rule_set.add("Coffee club", coffee_club_rule())
    result = earn(rule_set, order(8_500, COFFEE, GIFT_CARD, MUG))
    # Coffee $20 at 2x = 40, gift card excluded, mug $15 = 15.
    assert result.points == 55
    assert result.contributions[0].explanation == (
        "1 point per $1.00 on $85.00, coffee 2x, gift cards excluded = 55 points"
    )


def test_a_discount_is_spread_over_the_lines_by_list_value():
    rule_set = Rules()
    rule_set.add("Coffee club", coffee_club_rule())
    # Paid $76.50 of $85.00 list (10% off): coffee earns on $18.00 x2, the mug on $13.50.
    result = earn(rule_set, order(7_650, COFFEE, GIFT_CARD, MUG))
    assert result.points == 49  # 36 + 13.5, rounded down once
    assert "(rounded down)" in result.contributions[0].explanation


def test_an_order_of_only_gift_cards_earns_nothing():
    rule_set = Rules()
    rule_set.add("Coffee club", coffee_club_rule())
    result = earn(rule_set, order(9_500, GIFT_CARD, line("4", 4_500, "gift cards")))
    assert result.points == 0
    assert result.no_points_reason is SkipReason.ALL_LINES_EXCLUDED
    assert result.explanation == ("No points: Every line of the order is excluded from Coffee club")


def test_the_highest_matching_line_multiplier_applies_and_exclusions_win():
    rule_set = Rules()
    rule_set.add(
        "Coffee club",
        per_dollar(
            line_multipliers=(
                LineMultiplier(category="coffee", multiplier_bps=20_000),
                LineMultiplier(sku="ARABICA-1KG", multiplier_bps=30_000),
            ),
            excluded_skus=("DECAF-250",),
        ),
    )
    arabica = line("1", 1_000, "coffee", sku="ARABICA-1KG")
    decaf = line("2", 1_000, "coffee", sku="DECAF-250")
    result = earn(rule_set, order(2_000, arabica, decaf))
    assert result.points == 30
    assert result.contributions[0].explanation == (
        "1 point per $1.00 on $20.00, ARABICA-1KG 3x, DECAF-250 excluded = 30 points"
    )


def test_an_order_without_lines_earns_at_the_base_rate():
    rule_set = Rules()
    rule_set.add("Coffee club", coffee_club_rule())
    assert earn(rule_set, order(8_500)).points == 85


def test_free_lines_share_the_paid_amount_by_units():
    rule_set = Rules()
    rule_set.add("Coffee club", coffee_club_rule())
    # A bundle rung up at $0 per line but paid $30: 2 coffee units of 3 earn, at 2x.
    bundle = order(3_000, line("1", 0, "coffee", quantity=2), line("2", 0, "merch"))
    assert earn(rule_set, bundle).points == 50


# ----------------------------------------------------------------------- time windows


def double_points_weekend() -> TimeWindowMultiplierRule:
    # Friday 18:00 to Monday 00:00 in New York (EDT, UTC-4).
    return window(
        20_000,
        starts_at=dt.datetime(2025, 4, 11, 22, 0, tzinfo=UTC),
        ends_at=dt.datetime(2025, 4, 14, 4, 0, tzinfo=UTC),
        scope=MultiplierScope.ORDERS,
    )


@pytest.mark.parametrize(
    ("at", "points"),
    [
        (dt.datetime(2025, 4, 11, 21, 59, 59, tzinfo=UTC), 42),
        # $42.50 doubled is 85: the cents count before the one rounding.
        (dt.datetime(2025, 4, 11, 22, 0, 0, tzinfo=UTC), 85),
        (dt.datetime(2025, 4, 14, 3, 59, 59, tzinfo=UTC), 85),
        (dt.datetime(2025, 4, 14, 4, 0, 0, tzinfo=UTC), 42),
    ],
)
def test_the_double_points_weekend_is_exact_to_the_second(at, points):
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Double-points weekend", double_points_weekend())
    result = earn_for_order(program(), rule_set.rules, order(4_250, at=at), now=at)
    assert result.points == points


def test_the_weekend_multiplier_is_credited_and_explained():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    weekend = rule_set.add("Double-points weekend", double_points_weekend())
    result = earn(rule_set, order(4_250))
    assert points_by_rule(result) == {"1 point per dollar": 42, "Double-points weekend": 43}
    bonus = result.contributions[1]
    assert bonus.rule_id == weekend.rule_id
    assert bonus.kind is RuleKind.TIME_WINDOW_MULTIPLIER
    assert bonus.multiplier_bps == 20_000
    assert bonus.explanation == "Double-points weekend 2x: +43 points"


def test_an_order_outside_the_window_lists_the_window_as_skipped():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Double-points weekend", double_points_weekend())
    monday_noon = dt.datetime(2025, 4, 14, 16, 0, tzinfo=UTC)
    result = earn_for_order(
        program(), rule_set.rules, order(4_250, at=monday_noon), now=monday_noon
    )
    [skip] = result.skipped_rules
    assert skip.reason is SkipReason.OUTSIDE_TIME_WINDOW
    assert skip.explanation == (
        "Double-points weekend runs from 11 Apr 2025 18:00 EDT to 14 Apr 2025 00:00 EDT only"
    )


def test_an_events_only_window_does_not_touch_orders():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Review week", window(30_000, scope=MultiplierScope.EVENTS))
    result = earn(rule_set, order(4_250))
    assert result.points == 42
    assert skip_reasons(result) == {"Review week": SkipReason.OUT_OF_SCOPE}


def test_a_zero_multiplier_window_switches_earning_off():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Clearance sale", window(0))
    result = earn(rule_set, order(4_250))
    assert result.points == 0
    assert result.contributions == ()
    assert result.no_points_reason is SkipReason.ROUNDED_TO_ZERO
    assert result.explanation == (
        "No points: 1 point per $1.00 on $42.50 = 42 points, 0 after multipliers"
    )


def test_a_multiplier_below_one_is_credited_with_negative_extra_points():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Half points", window(5_000))
    result = earn(rule_set, order(4_250))
    assert points_by_rule(result) == {"1 point per dollar": 42, "Half points": -21}
    assert result.points == 21
    assert result.contributions[1].explanation == "Half points 0.5x: -21 points"


# --------------------------------------------------------------------------------- tiers

GOLD = TierBenefits(
    tier_name="Gold",
    earning_multiplier_bps=15_000,
    event_multiplier_bps={"referral_completed": 20_000},
)


def test_gold_members_earn_one_and_a_half_times_on_orders():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Tier bonus", TierMultiplierRule(scope=MultiplierScope.ORDERS_AND_EVENTS))
    result = earn(rule_set, order(4_250), tier=GOLD)
    assert points_by_rule(result) == {"1 point per dollar": 42, "Tier bonus": 21}
    assert result.contributions[1].explanation == "Gold tier 1.5x: +21 points"
    assert result.contributions[1].multiplier_bps == 15_000


def test_gold_members_earn_double_on_referrals_and_the_global_rate_on_other_events():
    rule_set = Rules()
    rule_set.add("Referral bonus", CustomEventRule(event_type="referral_completed", points=100))
    rule_set.add("Newsletter bonus", CustomEventRule(event_type="newsletter_signup", points=30))
    rule_set.add("Tier bonus", TierMultiplierRule(scope=MultiplierScope.EVENTS))
    referral = record(rule_set, event("referral_completed"), tier=GOLD)
    assert points_by_rule(referral) == {"Referral bonus": 100, "Tier bonus": 100}
    newsletter = record(rule_set, event("newsletter_signup"), tier=GOLD)
    assert points_by_rule(newsletter) == {"Newsletter bonus": 30, "Tier bonus": 15}
    assert newsletter.explanation == "45 points earned: Newsletter bonus"


@pytest.mark.parametrize(
    ("tier", "explanation"),
    [
        (None, "The customer's tier has no multiplier above 1x"),
        (TierBenefits(tier_name="Silver"), "The Silver tier has no multiplier above 1x"),
        # Tiers never lower earning, even if configured below 1x.
        (
            TierBenefits(tier_name="Basic", earning_multiplier_bps=5_000),
            "The Basic tier has no multiplier above 1x",
        ),
    ],
)
def test_customers_without_a_tier_multiplier_earn_the_base_points(tier, explanation):
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Tier bonus", TierMultiplierRule(scope=MultiplierScope.ORDERS_AND_EVENTS))
    result = earn(rule_set, order(4_250), tier=tier)
    assert result.points == 42
    [skip] = result.skipped_rules
    assert (skip.reason, skip.explanation) == (SkipReason.NO_TIER_MULTIPLIER, explanation)


def test_the_tiers_service_is_asked_only_when_a_tier_rule_applies():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    assert not needs_tier_benefits(rule_set.rules)
    rule_set.add(
        "Referral tier bonus",
        TierMultiplierRule(scope=MultiplierScope.EVENTS, event_types=("referral_completed",)),
    )
    assert not needs_tier_benefits(rule_set.rules)
    assert not needs_tier_benefits(rule_set.rules, "birthday")
    assert needs_tier_benefits(rule_set.rules, "referral_completed")
    rule_set.rules[-1] = archive(rule_set.rules[-1], NOW)
    assert not needs_tier_benefits(rule_set.rules, "referral_completed")


# -------------------------------------------------------------- stacking and rounding once


def test_multipliers_stack_and_are_credited_in_rule_creation_order():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Double-points weekend", window(20_000))
    rule_set.add("Tier bonus", TierMultiplierRule(scope=MultiplierScope.ORDERS_AND_EVENTS))
    result = earn(rule_set, order(4_250), tier=GOLD)
    # 42.50 x 2 x 1.5 = 127.5 -> 127; the weekend takes 42.5 -> 85, the tier 85 -> 127.
    assert points_by_rule(result) == {
        "1 point per dollar": 42,
        "Double-points weekend": 43,
        "Tier bonus": 42,
    }
    assert result.points == 127


def test_the_same_multipliers_created_the_other_way_round_split_differently():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Tier bonus", TierMultiplierRule(scope=MultiplierScope.ORDERS_AND_EVENTS))
    rule_set.add("Double-points weekend", window(20_000))
    result = earn(rule_set, order(4_250), tier=GOLD)
    assert points_by_rule(result) == {
        "1 point per dollar": 42,
        "Tier bonus": 21,
        "Double-points weekend": 64,
    }
    assert result.points == 127


def test_creation_order_not_list_order_decides():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Double-points weekend", window(20_000))
    rule_set.add("Tier bonus", TierMultiplierRule(scope=MultiplierScope.ORDERS_AND_EVENTS))
    forward = earn(rule_set, order(4_250), tier=GOLD)
    rule_set.rules.reverse()
    assert earn(rule_set, order(4_250), tier=GOLD) == forward


@pytest.mark.parametrize(
    ("rounding", "base", "bonus"),
    [
        # $4.25 at 2x is exactly 8.5 points; rounding 4.25 first would give 8 in every
        # half-up case. The base shows its own rounding, the bonus makes up the rest.
        (Rounding.DOWN, 4, 4),
        (Rounding.UP, 5, 4),
        (Rounding.HALF_UP, 4, 5),
        (Rounding.HALF_EVEN, 4, 4),
    ],
)
def test_the_programs_rounding_applies_once_after_multiplying(rounding, base, bonus):
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Double-points weekend", window(20_000))
    result = earn(rule_set, order(425), program(rounding=rounding))
    assert points_by_rule(result) == {"1 point per dollar": base, "Double-points weekend": bonus}
    assert result.points == round_points(Fraction(17, 2), rounding)


def test_a_multiplier_can_lift_a_sub_point_base_to_a_point():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Double-points weekend", window(20_000))
    # $0.60 is 0.6 points; doubled, 1.2 -> 1. The base alone rounds to 0.
    result = earn(rule_set, order(60))
    assert points_by_rule(result) == {"1 point per dollar": 0, "Double-points weekend": 1}
    assert result.points == 1


def test_points_that_round_to_nothing_are_explained():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Double-points weekend", window(20_000))
    result = earn(rule_set, order(40))
    assert result.no_points_reason is SkipReason.ROUNDED_TO_ZERO
    assert result.explanation == "No points: 1 point per $1.00 on $0.40 = less than one point"
    assert skip_reasons(result)["Double-points weekend"] is SkipReason.NO_MATCHING_RULE


# ----------------------------------------------------------------- rules change, history not


def test_results_carry_the_revision_of_the_rules_as_of_now():
    rule_set = Rules()
    base = rule_set.add("1 point per dollar", per_dollar())
    before = earn(rule_set, order(4_250))
    rule_set.rules[0] = revise(
        base, NOW, display_name="2 points per dollar", definition=per_dollar(2)
    )
    after = earn(rule_set, order(4_250))
    assert (before.points, before.contributions[0].rule_revision) == (42, 1)
    assert (after.points, after.contributions[0].rule_revision) == (85, 2)
    assert after.contributions[0].rule_name == "2 points per dollar"


def test_archived_rules_and_other_programs_rules_do_not_apply():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    rule_set.add("Double-points weekend", window(20_000))
    rule_set.rules[1] = archive(rule_set.rules[1], NOW)
    foreign = rule_set.add("5 points per dollar elsewhere", per_dollar(5))
    rule_set.rules[-1] = dataclasses.replace(foreign, program_id="prg_2")
    result = earn(rule_set, order(4_250))
    assert result.points == 42
    assert result.skipped_rules == ()


# ------------------------------------------------------------------------------- pending


def test_order_points_are_pending_for_the_return_window():
    fourteen_days = program(pending_seconds=14 * 86_400)
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    result = earn(rule_set, order(4_250), fourteen_days)
    assert isinstance(result, earning.OrderEarning)
    assert result.available_at == NOW + dt.timedelta(days=14)
    assert result.explanation == "42 points earned, spendable from 26 Apr 2025"
    old_backlog = order(4_250, at=NOW - dt.timedelta(days=30))
    late = earn(rule_set, old_backlog, fourteen_days)
    assert isinstance(late, earning.OrderEarning)
    assert late.available_at is None
    assert late.explanation == "42 points earned"


# ---------------------------------------------------------------------------- bad orders


def test_money_in_another_currency_is_refused_with_the_programs_currency():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    euros = Order(
        order_id="o-1",
        customer_id="c-1",
        amount=Money("EUR", 4_250),
        occurred_at=NOW,
        cart=Cart(
            currency_code="EUR",
            lines=(OrderLine(line_id="1", quantity=1, unit_price=Money("EUR", 4_250)),),
        ),
    )
    with pytest.raises(InvalidArgument) as raised:
        earn(rule_set, euros)
    assert raised.value.reason == "CURRENCY_MISMATCH"
    assert raised.value.metadata == {"program_currency": "USD"}
    assert [v.field for v in raised.value.violations] == [
        "amount.currency_code",
        "cart.currency_code",
        "cart.lines[0].unit_price.currency_code",
    ]


def test_malformed_orders_get_field_violations():
    bad = Order(
        order_id="",
        customer_id="c\n1",
        amount=usd(-1),
        occurred_at=NOW + dt.timedelta(minutes=5, seconds=1),
        cart=Cart(currency_code="USD", lines=(line("1", 100, quantity=0), line("1", -5))),
    )
    with pytest.raises(InvalidArgument) as raised:
        earn(Rules(), bad)
    assert raised.value.reason == "INVALID_ARGUMENT"
    assert {v.field: v.reason for v in raised.value.violations} == {
        "order_id": "REQUIRED",
        "customer.customer_id": "INVALID_FORMAT",
        "amount.amount_minor": "OUT_OF_RANGE",
        "cart.lines[0].quantity": "OUT_OF_RANGE",
        "cart.lines[1].line_id": "DUPLICATE",
        "cart.lines[1].unit_price.amount_minor": "OUT_OF_RANGE",
        "occurred_at": "OUT_OF_RANGE",
    }


def test_an_order_up_to_five_minutes_ahead_of_the_server_clock_is_accepted():
    rule_set = Rules()
    rule_set.add("1 point per dollar", per_dollar())
    ahead = order(4_250, at=NOW + dt.timedelta(minutes=5))
    assert earn(rule_set, ahead).points == 42


def test_an_award_beyond_the_points_limit_is_refused_not_overflowed():
    rule_set = Rules()
    rule_set.add("Whale", OrderRule(points_per_unit=10**12, spend_unit=usd(1)))
    with pytest.raises(InvalidArgument) as raised:
        earn(rule_set, order(2))
    assert raised.value.violations[0].field == "amount"


# ---------------------------------------------------------------------- custom events


def review_bonus(**changes: object) -> CustomEventRule:
    fields: dict[str, object] = {"event_type": "review_submitted", "points": 50}
    fields.update(changes)
    return CustomEventRule(**fields)  # type: ignore[arg-type]


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> dt.datetime:
    """A Berlin wall-clock time as the UTC instant a till would send."""
    local = dt.datetime(year, month, day, hour, minute, tzinfo=BERLIN_PROGRAM.zone)
    return local.astimezone(UTC)


def test_a_review_earns_its_fixed_points():
    rule_set = Rules()
    bonus = rule_set.add("Review bonus", review_bonus())
    result = record(rule_set, event("review_submitted"))
    assert result.points == 50
    [contribution] = result.contributions
    assert (contribution.rule_id, contribution.kind) == (bonus.rule_id, RuleKind.CUSTOM_EVENT)
    assert contribution.explanation == "review_submitted event = 50 points"
    assert result.explanation == "50 points earned: Review bonus"


def test_one_review_bonus_per_berlin_day_resets_at_berlin_midnight():
    rule_set = Rules()
    bonus = rule_set.add("Review bonus", review_bonus(frequency_cap=Limit(1, LimitPeriod.DAY)))
    first = berlin(2025, 4, 14, 23, 30)  # 21:30 UTC
    awards = {bonus.rule_id: [first]}
    same_evening = record(rule_set, event("review_submitted", berlin(2025, 4, 14, 23, 50)), awards)
    assert same_evening.points == 0
    assert same_evening.no_points_reason is SkipReason.FREQUENCY_CAP_REACHED
    [skip] = same_evening.skipped_rules
    assert skip.eligible_again_at == berlin(2025, 4, 15, 0, 0)
    assert same_evening.explanation == (
        "No points: Review bonus already given today (limit 1 per day);"
        " possible again from 15 Apr 2025 00:00 CEST"
    )
    # 00:10 in Berlin is still 14 April in UTC: the Berlin calendar decides.
    after_midnight = berlin(2025, 4, 15, 0, 10)
    assert after_midnight.date() == dt.date(2025, 4, 14)
    assert record(rule_set, event("review_submitted", after_midnight), awards).points == 50


def test_a_birthday_bonus_once_per_year():
    rule_set = Rules()
    birthday = rule_set.add(
        "Birthday bonus",
        CustomEventRule(
            event_type="birthday", points=500, frequency_cap=Limit(1, LimitPeriod.YEAR)
        ),
    )
    awards = {birthday.rule_id: [berlin(2025, 3, 14, 8, 0)]}
    again = record(rule_set, event("birthday", berlin(2025, 12, 31, 23, 59)), awards)
    assert again.no_points_reason is SkipReason.FREQUENCY_CAP_REACHED
    assert again.skipped_rules[0].eligible_again_at == berlin(2026, 1, 1, 0, 0)
    assert "already given this year (limit 1 per year)" in again.explanation
    next_year = record(rule_set, event("birthday", berlin(2026, 1, 1, 0, 0)), awards)
    assert next_year.points == 500


def test_a_newsletter_bonus_once_ever_never_comes_back():
    rule_set = Rules()
    newsletter = rule_set.add(
        "Newsletter bonus",
        CustomEventRule(
            event_type="newsletter_signup", points=30, frequency_cap=Limit(1, LimitPeriod.LIFETIME)
        ),
    )
    awards = {newsletter.rule_id: [T0]}
    result = record(rule_set, event("newsletter_signup"), awards)
    [skip] = result.skipped_rules
    assert skip.reason is SkipReason.FREQUENCY_CAP_REACHED
    assert skip.eligible_again_at is None
    assert skip.explanation == "Newsletter bonus already given (limit 1 in total)"


def test_up_to_three_goals_a_month():
    rule_set = Rules()
    goal = rule_set.add(
        "Activity goal",
        CustomEventRule(
            event_type="activity_goal_reached", points=20, frequency_cap=Limit(3, LimitPeriod.MONTH)
        ),
    )
    earlier = [berlin(2025, 4, 1, 0, 0), berlin(2025, 4, 5, 12, 0)]
    last_month = [berlin(2025, 3, 31, 23, 59)]
    assert (
        record(
            rule_set, event("activity_goal_reached"), {goal.rule_id: earlier + last_month}
        ).points
        == 20
    )
    third_done = {goal.rule_id: [*earlier, berlin(2025, 4, 10, 9, 0)]}
    capped = record(rule_set, event("activity_goal_reached"), third_done)
    assert capped.skipped_rules[0].explanation.startswith(
        "Activity goal already given 3 times this month (limit 3 per month)"
    )


def test_a_referral_cooldown_of_seven_days():
    rule_set = Rules()
    referral = rule_set.add(
        "Referral bonus",
        CustomEventRule(event_type="referral_completed", points=100, cooldown=dt.timedelta(days=7)),
    )
    last = dt.datetime(2025, 4, 1, 10, 0, tzinfo=UTC)
    awards = {referral.rule_id: [last]}
    too_soon = record(
        rule_set, event("referral_completed", last + dt.timedelta(days=7) - SECOND), awards
    )
    assert too_soon.no_points_reason is SkipReason.COOLDOWN_ACTIVE
    assert too_soon.skipped_rules[0].eligible_again_at == last + dt.timedelta(days=7)
    assert too_soon.explanation == (
        "No points: Referral bonus is in its 7 days cooldown until 8 Apr 2025 12:00 CEST"
    )
    on_time = record(rule_set, event("referral_completed", last + dt.timedelta(days=7)), awards)
    assert on_time.points == 100


def test_a_late_uploaded_event_respects_the_cooldown_of_a_later_award():
    rule_set = Rules()
    referral = rule_set.add(
        "Referral bonus",
        CustomEventRule(event_type="referral_completed", points=100, cooldown=dt.timedelta(days=7)),
    )
    later_award = NOW - dt.timedelta(days=1)
    offline = record(
        rule_set,
        event("referral_completed", NOW - dt.timedelta(days=3)),
        {referral.rule_id: [later_award]},
    )
    assert offline.no_points_reason is SkipReason.COOLDOWN_ACTIVE
    assert offline.skipped_rules[0].eligible_again_at == later_award + dt.timedelta(days=7)


def test_an_unknown_event_type_earns_nothing():
    rule_set = Rules()
    rule_set.add("Review bonus", review_bonus())
    result = record(rule_set, event("app_opened"))
    assert result.points == 0
    assert result.no_points_reason is SkipReason.NO_MATCHING_RULE
    assert result.explanation == "No points: no active rule for event type 'app_opened'"
    assert result.skipped_rules == ()


def test_an_archived_event_rule_is_named_as_the_reason():
    rule_set = Rules()
    rule_set.add("Review bonus", review_bonus())
    rule_set.rules[0] = archive(rule_set.rules[0], NOW)
    result = record(rule_set, event("review_submitted"))
    assert result.no_points_reason is SkipReason.NO_MATCHING_RULE
    assert result.explanation == "No points: Review bonus is archived"


def test_every_rule_for_the_event_type_fires_on_its_own_terms():
    rule_set = Rules()
    capped = rule_set.add("Review bonus", review_bonus(frequency_cap=Limit(1, LimitPeriod.DAY)))
    old = rule_set.add("Old review bonus", review_bonus(points=5))
    rule_set.rules[-1] = archive(old, NOW)
    rule_set.add("Spring review drive", review_bonus(points=10))
    result = record(rule_set, event("review_submitted"), {capped.rule_id: [NOW - SECOND]})
    assert points_by_rule(result) == {"Spring review drive": 10}
    assert skip_reasons(result) == {
        "Review bonus": SkipReason.FREQUENCY_CAP_REACHED,
        "Old review bonus": SkipReason.NO_MATCHING_RULE,
    }
    assert result.no_points_reason is None


def test_an_event_window_for_chosen_event_types():
    rule_set = Rules()
    rule_set.add("Review bonus", review_bonus())
    rule_set.add("Birthday bonus", CustomEventRule(event_type="birthday", points=500))
    rule_set.add(
        "Review week",
        window(30_000, scope=MultiplierScope.EVENTS, event_types=("review_submitted",)),
    )
    assert record(rule_set, event("review_submitted")).points == 150
    birthday = record(rule_set, event("birthday"))
    assert birthday.points == 500
    assert birthday.skipped_rules[0].explanation == (
        "Review week does not apply to birthday events"
    )


def test_malformed_events_get_field_violations():
    with pytest.raises(InvalidArgument) as raised:
        record(Rules(), CustomEvent(customer_id="", event_type="", occurred_at=NOW))
    assert {v.field: v.reason for v in raised.value.violations} == {
        "customer.customer_id": "REQUIRED",
        "event_type": "REQUIRED",
    }


# ---------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money("USD", 4_250), "$42.50"),
        (Money("EUR", 123_456), "€1,234.56"),
        (Money("JPY", 500), "¥500"),
        (Money("KWD", 1_250), "1.250 KWD"),
        (Money("CHF", 5), "0.05 CHF"),
        (Money("GBP", -199), "-£1.99"),
    ],
)
def test_money_is_formatted_exactly_from_minor_units(money, text):
    assert format_money(money) == text


def test_multipliers_and_durations_read_naturally():
    assert [format_multiplier(b) for b in (10_000, 15_000, 20_000, 12_345, 0)] == [
        "1x",
        "1.5x",
        "2x",
        "1.2345x",
        "0x",
    ]
    assert format_duration(dt.timedelta(days=7)) == "7 days"
    assert format_duration(dt.timedelta(days=1, hours=12)) == "1 day 12 hours"
    assert format_duration(dt.timedelta(minutes=90)) == "1 hour 30 minutes"


# ---------------------------------------------------------------------------- properties

ROUNDINGS = st.sampled_from(list(Rounding))
BPS = st.integers(0, 1_000_000)
CATEGORIES = st.sampled_from(["coffee", "tea", "gift cards", "merch"])
SKUS = st.sampled_from(["A", "B", "C", "GIFT"])


@st.composite
def carts(draw: st.DrawFn) -> tuple[OrderLine, ...]:
    count = draw(st.integers(0, 5))
    return tuple(
        OrderLine(
            line_id=str(index),
            sku=draw(SKUS),
            categories=tuple(draw(st.lists(CATEGORIES, max_size=2, unique=True))),
            quantity=draw(st.integers(1, 5)),
            unit_price=usd(draw(st.integers(0, 50_000))),
        )
        for index in range(count)
    )


@st.composite
def order_rules(draw: st.DrawFn) -> OrderRule:
    return OrderRule(
        points_per_unit=draw(st.integers(1, 20)),
        spend_unit=usd(draw(st.integers(1, 1_000))),
        minimum_order_amount=draw(st.none() | st.integers(0, 20_000).map(usd)),
        line_multipliers=tuple(
            draw(
                st.lists(
                    st.builds(LineMultiplier, category=CATEGORIES, multiplier_bps=BPS)
                    | st.builds(LineMultiplier, sku=SKUS, multiplier_bps=BPS),
                    max_size=3,
                )
            )
        ),
        excluded_skus=tuple(draw(st.lists(SKUS, max_size=1))),
        excluded_categories=tuple(draw(st.lists(CATEGORIES, max_size=1))),
    )


@st.composite
def multiplier_rules(draw: st.DrawFn) -> RuleDefinition:
    scope = draw(st.sampled_from(list(MultiplierScope)))
    if draw(st.booleans()):
        return TierMultiplierRule(scope=scope)
    opens = NOW + dt.timedelta(hours=draw(st.integers(-48, 48)))
    return window(draw(BPS), opens, opens + dt.timedelta(hours=draw(st.integers(1, 72))), scope)


TIERS = st.none() | st.builds(
    TierBenefits,
    tier_name=st.just("Gold"),
    earning_multiplier_bps=BPS,
    event_multiplier_bps=st.dictionaries(st.sampled_from(["review_submitted"]), BPS),
)


def assert_consistent(result: Earning) -> None:
    assert type(result.points) is int
    assert result.points == sum(c.points for c in result.contributions)
    assert result.points >= 0
    assert (result.no_points_reason is None) == (result.points > 0)
    for contribution in result.contributions:
        assert type(contribution.points) is int
        assert type(contribution.multiplier_bps) is int
        assert type(contribution.rule_revision) is int


@given(
    bases=st.lists(order_rules(), min_size=0, max_size=2),
    multipliers=st.lists(multiplier_rules(), max_size=3),
    lines=carts(),
    amount=st.integers(0, 200_000),
    rounding=ROUNDINGS,
    tier=TIERS,
)
def test_the_order_breakdown_always_sums_to_the_total(
    bases, multipliers, lines, amount, rounding, tier
):
    rule_set = Rules()
    for index, definition in enumerate([*bases, *multipliers]):
        rule_set.add(f"rule {index}", definition)
    result = earn(rule_set, order(amount, *lines), program(rounding=rounding), tier)
    assert_consistent(result)


@given(
    points=st.integers(1, 1_000),
    multipliers=st.lists(multiplier_rules(), max_size=3),
    rounding=ROUNDINGS,
    tier=TIERS,
    cap=st.none() | st.builds(Limit, st.integers(1, 3), st.sampled_from(list(LimitPeriod))),
    cooldown_hours=st.integers(0, 48),
    award_hours_ago=st.lists(st.integers(-24, 24 * 400), max_size=4),
)
def test_the_event_breakdown_always_sums_to_the_total(
    points, multipliers, rounding, tier, cap, cooldown_hours, award_hours_ago
):
    rule_set = Rules()
    bonus = rule_set.add(
        "Review bonus",
        review_bonus(points=points, frequency_cap=cap, cooldown=dt.timedelta(hours=cooldown_hours)),
    )
    for index, definition in enumerate(multipliers):
        rule_set.add(f"multiplier {index}", definition)
    awards = {bonus.rule_id: [NOW - dt.timedelta(hours=h) for h in award_hours_ago]}
    the_program = program(rounding=rounding, time_zone="Europe/Berlin")
    result = record(rule_set, event("review_submitted"), awards, the_program, tier)
    assert_consistent(result)


@given(
    rule=order_rules(),
    windows=st.lists(st.integers(0, 1_000_000).map(window), max_size=2),
    rounding=ROUNDINGS,
    amount=st.integers(0, 10**9),
)
def test_points_are_the_exact_product_rounded_once(rule, windows, rounding, amount):
    rule_set = Rules()
    plain = OrderRule(points_per_unit=rule.points_per_unit, spend_unit=rule.spend_unit)
    rule_set.add("base", plain)
    for index, definition in enumerate(windows):
        rule_set.add(f"window {index}", definition)
    exact = Fraction(amount * plain.points_per_unit, plain.spend_unit.amount_minor)
    for definition in windows:
        exact *= Fraction(definition.multiplier_bps, 10_000)
    result = earn(rule_set, order(amount), program(rounding=rounding))
    assert result.points == round_points(exact, rounding)


@given(
    rule=order_rules(),
    multipliers=st.lists(multiplier_rules(), max_size=2),
    rounding=ROUNDINGS,
    amounts=st.lists(st.integers(0, 10**9), min_size=2, max_size=2).map(sorted),
)
def test_paying_more_never_earns_fewer_points_under_a_per_unit_rule(
    rule, multipliers, rounding, amounts
):
    rule_set = Rules()
    rule_set.add(
        "base", OrderRule(points_per_unit=rule.points_per_unit, spend_unit=rule.spend_unit)
    )
    for index, definition in enumerate(multipliers):
        rule_set.add(f"multiplier {index}", definition)
    smaller, larger = (
        earn(rule_set, order(amount), program(rounding=rounding), GOLD).points for amount in amounts
    )
    assert smaller <= larger


@given(
    rule=order_rules(),
    rounding=ROUNDINGS,
    lines=carts(),
    excluded=st.lists(
        st.builds(
            OrderLine,
            line_id=st.uuids().map(str),
            sku=st.just("GIFT"),
            categories=st.just(("gift cards",)),
            quantity=st.integers(1, 3),
            unit_price=st.integers(0, 50_000).map(usd),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_excluded_lines_never_earn(rule, rounding, lines, excluded):
    """Paid at list price, an order earns what it would earn without its excluded lines."""
    rule_set = Rules()
    rule_set.add(
        "base",
        OrderRule(
            points_per_unit=rule.points_per_unit,
            spend_unit=rule.spend_unit,
            line_multipliers=rule.line_multipliers,
            excluded_skus=("GIFT",),
            excluded_categories=("gift cards",),
        ),
    )
    kept = tuple(
        line for line in lines if line.sku != "GIFT" and "gift cards" not in line.categories
    )
    everything = (*kept, *excluded)
    with_excluded = order(sum(line.list_value_minor for line in everything), *everything)
    without = order(sum(line.list_value_minor for line in kept), *kept)
    the_program = program(rounding=rounding)
    assert earn(rule_set, with_excluded, the_program).points == (
        earn(rule_set, without, the_program).points
    )
    only_excluded = order(sum(line.list_value_minor for line in excluded), *excluded)
    assert earn(rule_set, only_excluded, the_program).points == 0


@pytest.mark.parametrize("module", [rules, earning])
def test_no_float_in_the_earning_code(module):
    """No float literal, no float(), no true division: points and money stay exact."""
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Constant):
            assert not isinstance(node.value, float), node.lineno
        elif isinstance(node, ast.Name):
            assert node.id != "float", node.lineno
        elif isinstance(node, ast.BinOp | ast.AugAssign):
            assert not isinstance(node.op, ast.Div), node.lineno
