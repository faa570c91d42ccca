"""Earning rules as a merchant configures them: validation, revisions, archiving, periods."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

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
    RuleState,
    TierMultiplierRule,
    TimeWindowMultiplierRule,
    archive,
    revise,
    validate_rule,
    validate_rule_currency,
)
from shared.errors import FailedPrecondition, InvalidArgument
from shared.validation import Violations

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
CREATED = dt.datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

ONE_POINT_PER_EURO = OrderRule(points_per_unit=1, spend_unit=Money("EUR", 100))
REVIEW_BONUS = CustomEventRule(event_type="review_submitted", points=50)
DOUBLE_WEEKEND = TimeWindowMultiplierRule(
    starts_at=dt.datetime(2025, 4, 11, 16, 0, tzinfo=UTC),
    ends_at=dt.datetime(2025, 4, 13, 22, 0, tzinfo=UTC),
    multiplier_bps=20_000,
    scope=MultiplierScope.ORDERS,
)


def rule(definition: RuleDefinition, **changes: object) -> EarningRule:
    fields: dict[str, object] = {
        "rule_id": "rul_1",
        "program_id": "prg_1",
        "display_name": "1 point per euro",
        "definition": definition,
        "created_at": CREATED,
        "updated_at": CREATED,
    }
    fields.update(changes)
    return EarningRule(**fields)  # type: ignore[arg-type]


def violations_of(earning_rule: EarningRule) -> dict[str, str]:
    violations = Violations()
    validate_rule(earning_rule, violations)
    return {v.field: v.reason for v in violations.items}


# ------------------------------------------------------------------------------ the model


def test_each_kind_names_its_proto_oneof_field():
    assert rule(ONE_POINT_PER_EURO).kind is RuleKind.ORDER
    assert rule(REVIEW_BONUS).kind.value == "custom_event_rule"
    assert rule(DOUBLE_WEEKEND).kind.value == "time_window_multiplier_rule"
    scope = MultiplierScope.ORDERS_AND_EVENTS
    assert rule(TierMultiplierRule(scope=scope)).kind.value == "tier_multiplier_rule"


def test_a_new_rule_is_active_at_revision_one():
    created = rule(ONE_POINT_PER_EURO)
    assert created.is_active
    assert created.revision == 1
    assert created.archived_at is None


@pytest.mark.parametrize(
    ("scope", "event_types", "event_type", "covered"),
    [
        (MultiplierScope.ORDERS, (), None, True),
        (MultiplierScope.ORDERS, (), "birthday", False),
        (MultiplierScope.EVENTS, (), None, False),
        (MultiplierScope.EVENTS, (), "birthday", True),
        (MultiplierScope.EVENTS, ("referral_completed",), "birthday", False),
        (MultiplierScope.ORDERS_AND_EVENTS, ("referral_completed",), None, True),
        (MultiplierScope.ORDERS_AND_EVENTS, ("referral_completed",), "referral_completed", True),
    ],
)
def test_multiplier_scope_and_event_types(scope, event_types, event_type, covered):
    assert TierMultiplierRule(scope=scope, event_types=event_types).covers(event_type) is covered


def test_time_window_includes_its_start_and_excludes_its_end():
    start, end = DOUBLE_WEEKEND.starts_at, DOUBLE_WEEKEND.ends_at
    second = dt.timedelta(seconds=1)
    assert not DOUBLE_WEEKEND.is_open_at(start - second)
    assert DOUBLE_WEEKEND.is_open_at(start)
    assert DOUBLE_WEEKEND.is_open_at(end - second)
    assert not DOUBLE_WEEKEND.is_open_at(end)


# -------------------------------------------------------------------- calendar periods


def test_a_day_is_the_programs_local_day():
    # 23:30 in Berlin on 14 April (summer time, UTC+2) is 21:30 UTC.
    start, end = LimitPeriod.DAY.bounds(dt.datetime(2025, 4, 14, 21, 30, tzinfo=UTC), BERLIN)
    assert start == dt.datetime(2025, 4, 13, 22, 0, tzinfo=UTC)
    assert end == dt.datetime(2025, 4, 14, 22, 0, tzinfo=UTC)


def test_a_day_across_the_spring_clock_change_lasts_23_hours():
    start, end = LimitPeriod.DAY.bounds(dt.datetime(2025, 3, 30, 12, 0, tzinfo=UTC), BERLIN)
    assert start is not None
    assert end is not None
    assert end - start == dt.timedelta(hours=23)


def test_a_week_starts_on_monday():
    sunday = dt.datetime(2025, 4, 13, 12, 0, tzinfo=UTC)
    start, end = LimitPeriod.WEEK.bounds(sunday, BERLIN)
    assert start == dt.datetime(2025, 4, 7, tzinfo=BERLIN)
    assert end == dt.datetime(2025, 4, 14, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("at", "start", "end"),
    [
        (dt.datetime(2025, 1, 31, 23, 30, tzinfo=UTC), dt.date(2025, 2, 1), dt.date(2025, 3, 1)),
        (dt.datetime(2025, 12, 15, tzinfo=UTC), dt.date(2025, 12, 1), dt.date(2026, 1, 1)),
        (dt.datetime(2024, 2, 29, tzinfo=UTC), dt.date(2024, 2, 1), dt.date(2024, 3, 1)),
    ],
)
def test_a_month_follows_the_local_calendar(at, start, end):
    assert LimitPeriod.MONTH.bounds(at, BERLIN) == (berlin_midnight(start), berlin_midnight(end))


def berlin_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=BERLIN)


def test_a_year_starts_at_local_new_year_and_lifetime_never_ends():
    # 31 Dec 23:30 UTC is already New Year in Berlin.
    at = dt.datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    assert LimitPeriod.YEAR.bounds(at, BERLIN) == (
        dt.datetime(2026, 1, 1, tzinfo=BERLIN),
        dt.datetime(2027, 1, 1, tzinfo=BERLIN),
    )
    assert LimitPeriod.LIFETIME.bounds(at, BERLIN) == (None, None)


# ----------------------------------------------------------------------------- validation


def test_a_well_formed_rule_of_every_kind_is_valid():
    coffee_club = OrderRule(
        points_per_unit=1,
        spend_unit=Money("EUR", 100),
        minimum_order_amount=Money("EUR", 1_000),
        line_multipliers=(
            LineMultiplier(category="coffee", multiplier_bps=20_000),
            LineMultiplier(sku="MUG-LOGO-350", multiplier_bps=30_000),
        ),
        excluded_categories=("gift cards",),
        excluded_skus=("GIFT-CARD-50",),
    )
    birthday = CustomEventRule(
        event_type="birthday",
        points=500,
        frequency_cap=Limit(1, LimitPeriod.YEAR),
        cooldown=dt.timedelta(days=30),
    )
    gold = TierMultiplierRule(scope=MultiplierScope.EVENTS, event_types=("referral_completed",))
    for definition in (coffee_club, birthday, DOUBLE_WEEKEND, gold):
        assert violations_of(rule(definition)) == {}


def test_order_rule_violations_name_proto_field_paths():
    broken = OrderRule(
        points_per_unit=0,
        spend_unit=Money("EUR", -100),
        minimum_order_amount=Money("eur", 1_000),
        line_multipliers=(
            LineMultiplier(multiplier_bps=20_000),
            LineMultiplier(sku="A", category="b", multiplier_bps=20_000),
            LineMultiplier(category="coffee", multiplier_bps=1_000_001),
        ),
        excluded_skus=("",),
        excluded_categories=("",),
    )
    assert violations_of(rule(broken)) == {
        "rule.order_rule.points_per_unit": "OUT_OF_RANGE",
        "rule.order_rule.spend_unit.amount_minor": "OUT_OF_RANGE",
        "rule.order_rule.minimum_order_amount.currency_code": "INVALID_CURRENCY",
        "rule.order_rule.line_multipliers[0]": "REQUIRED",
        "rule.order_rule.line_multipliers[1]": "INVALID_FORMAT",
        "rule.order_rule.line_multipliers[2].multiplier_bps": "OUT_OF_RANGE",
        "rule.order_rule.excluded_skus[0]": "REQUIRED",
        "rule.order_rule.excluded_categories[0]": "REQUIRED",
    }


def test_a_missing_spend_unit_is_required_not_out_of_range():
    missing = OrderRule(points_per_unit=1, spend_unit=Money("", 0))
    assert violations_of(rule(missing)) == {"rule.order_rule.spend_unit": "REQUIRED"}


def test_points_beyond_the_api_limit_are_out_of_range():
    generous = OrderRule(points_per_unit=10**12 + 1, spend_unit=Money("EUR", 100))
    assert violations_of(rule(generous)) == {"rule.order_rule.points_per_unit": "OUT_OF_RANGE"}


def test_custom_event_rule_violations():
    broken = CustomEventRule(
        event_type="x" * 65,
        points=0,
        frequency_cap=Limit(0, LimitPeriod.DAY),
        cooldown=dt.timedelta(seconds=-1),
    )
    assert violations_of(rule(broken)) == {
        "rule.custom_event_rule.event_type": "TOO_LONG",
        "rule.custom_event_rule.points": "OUT_OF_RANGE",
        "rule.custom_event_rule.frequency_cap.max_count": "OUT_OF_RANGE",
        "rule.custom_event_rule.cooldown": "OUT_OF_RANGE",
    }
    nameless = CustomEventRule(event_type="", points=10)
    assert violations_of(rule(nameless)) == {"rule.custom_event_rule.event_type": "REQUIRED"}


def test_a_time_window_must_end_after_it_starts():
    backwards = TimeWindowMultiplierRule(
        starts_at=DOUBLE_WEEKEND.ends_at,
        ends_at=DOUBLE_WEEKEND.ends_at,
        multiplier_bps=-1,
        scope=MultiplierScope.EVENTS,
        event_types=("",),
    )
    assert violations_of(rule(backwards)) == {
        "rule.time_window_multiplier_rule.ends_at": "OUT_OF_RANGE",
        "rule.time_window_multiplier_rule.multiplier_bps": "OUT_OF_RANGE",
        "rule.time_window_multiplier_rule.event_types[0]": "REQUIRED",
    }


def test_a_time_window_needs_instants_not_wall_clock_times():
    naive = TimeWindowMultiplierRule(
        starts_at=dt.datetime(2025, 4, 11, 18, 0),
        ends_at=DOUBLE_WEEKEND.ends_at,
        multiplier_bps=20_000,
        scope=MultiplierScope.ORDERS,
    )
    assert violations_of(rule(naive)) == {
        "rule.time_window_multiplier_rule.starts_at": "INVALID_FORMAT"
    }


def test_event_types_on_an_orders_only_multiplier_are_refused():
    pointless = TierMultiplierRule(scope=MultiplierScope.ORDERS, event_types=("birthday",))
    assert violations_of(rule(pointless)) == {
        "rule.tier_multiplier_rule.event_types": "INVALID_FORMAT"
    }


def test_common_fields_are_checked():
    assert violations_of(
        rule(ONE_POINT_PER_EURO, program_id="", display_name="  ", description="x" * 2_001)
    ) == {
        "rule.program_id": "REQUIRED",
        "rule.display_name": "REQUIRED",
        "rule.description": "TOO_LONG",
    }
    assert violations_of(rule(ONE_POINT_PER_EURO, display_name="x" * 201)) == {
        "rule.display_name": "TOO_LONG"
    }


def test_money_in_another_currency_than_the_programs_is_a_currency_mismatch():
    dollars = OrderRule(
        points_per_unit=1,
        spend_unit=Money("USD", 100),
        minimum_order_amount=Money("USD", 1_000),
    )
    violations = Violations()
    validate_rule_currency(rule(dollars), "EUR", violations, prefix="rule")
    assert {v.field: v.reason for v in violations.items} == {
        "rule.order_rule.spend_unit.currency_code": "CURRENCY_MISMATCH",
        "rule.order_rule.minimum_order_amount.currency_code": "CURRENCY_MISMATCH",
    }
    euros = Violations()
    validate_rule_currency(rule(ONE_POINT_PER_EURO), "EUR", euros)
    validate_rule_currency(rule(REVIEW_BONUS), "EUR", euros)
    assert not euros


# ------------------------------------------------------------------ revisions and archiving


def test_an_update_makes_the_next_revision_and_keeps_the_rest():
    original = rule(ONE_POINT_PER_EURO)
    later = CREATED + dt.timedelta(days=3)
    two_per_euro = OrderRule(points_per_unit=2, spend_unit=Money("EUR", 100))
    updated = revise(original, later, display_name="2 points per euro", definition=two_per_euro)
    assert updated.revision == 2
    assert updated.updated_at == later
    assert updated.created_at == CREATED
    assert updated.display_name == "2 points per euro"
    assert updated.definition == two_per_euro
    assert updated.description == original.description
    # The original value is untouched: whatever it earned keeps revision 1.
    assert original.revision == 1
    assert original.definition == ONE_POINT_PER_EURO


def test_every_update_bumps_the_revision():
    updated = rule(REVIEW_BONUS)
    for _ in range(3):
        updated = revise(updated, CREATED, description="Thanks for your review")
    assert updated.revision == 4


def test_the_kind_of_a_rule_cannot_change():
    with pytest.raises(InvalidArgument) as raised:
        revise(rule(ONE_POINT_PER_EURO), CREATED, definition=REVIEW_BONUS)
    assert raised.value.reason == "FIELD_IMMUTABLE"
    assert raised.value.violations[0].field == "rule.custom_event_rule"


def test_archiving_is_idempotent_and_keeps_the_revision():
    later = CREATED + dt.timedelta(days=1)
    archived = archive(rule(ONE_POINT_PER_EURO), later)
    assert archived.state is RuleState.ARCHIVED
    assert archived.archived_at == later
    assert archived.updated_at == later
    assert archived.revision == 1
    assert archive(archived, later + dt.timedelta(days=1)) == archived


def test_an_archived_rule_can_no_longer_be_updated():
    archived = archive(rule(ONE_POINT_PER_EURO, rule_id="rul_9"), CREATED)
    with pytest.raises(FailedPrecondition) as raised:
        revise(archived, CREATED, display_name="Back again")
    assert raised.value.reason == "RULE_ARCHIVED"
    assert raised.value.metadata == {"rule_id": "rul_9"}
