"""Program rules: expiry instants in the program's zone, exact rounding, validation."""

import datetime as dt
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.points.domain.program import (
    ExpiryKind,
    ExpiryPolicy,
    Program,
    RefundPolicy,
    Rounding,
    round_points,
    validate_program,
)
from shared.validation import Violations

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")


def program(**changes: object) -> Program:
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    base = {
        "program_id": "prg_1",
        "name": "Coffee Club",
        "currency_code": "EUR",
        "time_zone": "Europe/Berlin",
        "expiry": ExpiryPolicy(),
        "pending_seconds": 0,
        "refund_policy": RefundPolicy.WITHIN_AVAILABLE,
        "rounding": Rounding.DOWN,
        "created_at": now,
        "updated_at": now,
    }
    base.update(changes)
    return Program(**base)  # type: ignore[arg-type]


def test_never_expiring_points_have_no_expiry():
    assert ExpiryPolicy().expires_at(dt.datetime(2026, 5, 1, tzinfo=UTC), BERLIN) is None


def test_days_after_earning_is_exact_to_the_second():
    earned = dt.datetime(2026, 2, 28, 13, 45, 7, tzinfo=UTC)
    policy = ExpiryPolicy(ExpiryKind.DAYS_AFTER_EARNING, 365)
    assert policy.expires_at(earned, BERLIN) == dt.datetime(2027, 2, 28, 13, 45, 7, tzinfo=UTC)


def test_end_of_month_is_local_midnight_after_n_months():
    # Earned on 15 Nov 2026 in Berlin; "end of the month 2 months later" = end of January.
    earned = dt.datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
    expires = ExpiryPolicy(ExpiryKind.END_OF_MONTH, 2).expires_at(earned, BERLIN)
    # 1 Feb 2027 00:00 in Berlin (CET, UTC+1) is 31 Jan 23:00 UTC.
    assert expires == dt.datetime(2027, 1, 31, 23, 0, tzinfo=UTC)


def test_end_of_month_uses_the_local_date_not_the_utc_date():
    # 31 Jan 23:30 UTC is already 1 Feb in Berlin: the local month counts.
    earned = dt.datetime(2027, 1, 31, 23, 30, tzinfo=UTC)
    expires = ExpiryPolicy(ExpiryKind.END_OF_MONTH, 0).expires_at(earned, BERLIN)
    assert expires == dt.datetime(2027, 3, 1, 0, 0, tzinfo=BERLIN)


def test_end_of_year_crosses_the_year_boundary_in_summer_time():
    earned = dt.datetime(2028, 2, 29, 10, 0, tzinfo=UTC)  # leap day
    expires = ExpiryPolicy(ExpiryKind.END_OF_YEAR, 1).expires_at(earned, BERLIN)
    assert expires == dt.datetime(2030, 1, 1, tzinfo=BERLIN)


def test_pending_points_become_spendable_after_the_return_window():
    earned = dt.datetime(2026, 12, 30, 9, 0, tzinfo=UTC)
    assert program(pending_seconds=14 * 86_400).spendable_at(earned) == dt.datetime(
        2027, 1, 13, 9, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("value", "rounding", "expected"),
    [
        (Fraction(25, 2), Rounding.DOWN, 12),
        (Fraction(25, 2), Rounding.HALF_UP, 13),
        (Fraction(249, 20), Rounding.HALF_UP, 12),
        (Fraction(121, 10), Rounding.UP, 13),
        (Fraction(12), Rounding.UP, 12),
        (Fraction(85, 2), Rounding.HALF_EVEN, 42),
        (Fraction(87, 2), Rounding.HALF_EVEN, 44),
    ],
)
def test_rounding_modes(value: Fraction, rounding: Rounding, expected: int):
    assert round_points(value, rounding) == expected


@given(st.fractions(min_value=0, max_value=10**12))
def test_rounding_is_within_one_point_and_ordered(value: Fraction):
    down, half, even, up = (
        round_points(value, r)
        for r in (Rounding.DOWN, Rounding.HALF_UP, Rounding.HALF_EVEN, Rounding.UP)
    )
    assert down <= even <= half <= up
    assert up - down <= 1
    assert down <= value <= up
    assert abs(half - value) <= Fraction(1, 2)


def test_validation_reports_every_bad_field():
    bad = program(
        name=" ",
        currency_code="usd",
        time_zone="Mars/Olympus",
        pending_seconds=-1,
        expiry=ExpiryPolicy(ExpiryKind.DAYS_AFTER_EARNING, 0),
    )
    violations = Violations()
    validate_program(bad, violations)
    fields = {v.field for v in violations.items}
    assert fields == {
        "program.display_name",
        "program.currency_code",
        "program.time_zone",
        "program.pending_period",
        "program.expiry_policy.after_days.days",
    }


def test_a_valid_program_has_no_violations():
    violations = Violations()
    validate_program(program(), violations)
    assert not violations
