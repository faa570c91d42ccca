"""Loyalty programs: currency, expiry, pending period, refund policy, rounding.

Pure domain code: no gRPC, no SQL. Instants are timezone-aware; calendar rules
("end of the month") are evaluated in the program's own time zone, because a member in
Berlin expects points to expire at midnight Berlin time, not UTC.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.validation import Violations

MAX_NAME_LENGTH = 200
MAX_PENDING_SECONDS = 366 * 86_400
MAX_EXPIRY_DAYS = 3_660
MAX_EXPIRY_PERIODS = 120


class ExpiryKind(enum.Enum):
    NEVER = "never"
    DAYS_AFTER_EARNING = "days_after_earning"
    END_OF_MONTH = "end_of_month"  # end of the month N months after earning
    END_OF_YEAR = "end_of_year"  # end of the year N years after earning


class RefundPolicy(enum.Enum):
    PENDING_ONLY = "pending_only"  # claw back only points not yet spendable
    WITHIN_AVAILABLE = "within_available"  # claw back at most what the customer has
    ALLOW_NEGATIVE = "allow_negative"  # claw back everything, balance may go below zero


class Rounding(enum.Enum):
    DOWN = "down"  # 12.9 -> 12: never gives more than earned (the common default)
    HALF_UP = "half_up"  # 12.5 -> 13
    UP = "up"  # 12.1 -> 13
    HALF_EVEN = "half_even"  # 12.5 -> 12, 13.5 -> 14 (banker's rounding)


@dataclass(frozen=True)
class ExpiryPolicy:
    kind: ExpiryKind = ExpiryKind.NEVER
    # Days for DAYS_AFTER_EARNING; months or years for END_OF_MONTH / END_OF_YEAR.
    count: int = 0

    def expires_at(self, earned_at: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
        """The first instant at which points earned at ``earned_at`` are expired."""
        if self.kind is ExpiryKind.NEVER:
            return None
        if self.kind is ExpiryKind.DAYS_AFTER_EARNING:
            return earned_at + dt.timedelta(days=self.count)
        local = earned_at.astimezone(zone)
        if self.kind is ExpiryKind.END_OF_MONTH:
            # Months since year 0, plus N, plus one: the first day of the following month.
            index = local.year * 12 + (local.month - 1) + self.count + 1
            year, month = divmod(index, 12)
            boundary = dt.datetime(year, month + 1, 1, tzinfo=zone)
        else:
            boundary = dt.datetime(local.year + self.count + 1, 1, 1, tzinfo=zone)
        return boundary.astimezone(dt.UTC)


@dataclass(frozen=True)
class Program:
    program_id: str
    name: str
    currency_code: str
    time_zone: str
    expiry: ExpiryPolicy
    pending_seconds: int
    refund_policy: RefundPolicy
    rounding: Rounding
    created_at: dt.datetime
    updated_at: dt.datetime
    etag: int = 1  # bumped by every update; clients may send it for optimistic locking

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def expires_at(self, earned_at: dt.datetime) -> dt.datetime | None:
        return self.expiry.expires_at(earned_at, self.zone)

    def spendable_at(self, earned_at: dt.datetime) -> dt.datetime:
        """Order points become spendable once the return window has passed."""
        return earned_at + dt.timedelta(seconds=self.pending_seconds)

    def round_points(self, value: Fraction) -> int:
        return round_points(value, self.rounding)

    def updated(self, now: dt.datetime, **changes: object) -> Program:
        return replace(self, updated_at=now, etag=self.etag + 1, **changes)  # type: ignore[arg-type]


def round_points(value: Fraction, rounding: Rounding) -> int:
    """Exact rounding of a rational number of points (no float on the way)."""
    if rounding is Rounding.DOWN:
        return value.numerator // value.denominator
    if rounding is Rounding.UP:
        return -((-value.numerator) // value.denominator)
    if rounding is Rounding.HALF_EVEN:
        return round(value)  # Fraction.__round__ rounds halves to even, exactly
    doubled = value * 2
    return (doubled.numerator // doubled.denominator + 1) // 2


def is_currency_code(code: str) -> bool:
    return len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


def validate_program(program: Program, violations: Violations, prefix: str = "program") -> None:
    """Check a program's own fields; ids and timestamps are the service's business."""
    name = program.name.strip()
    violations.check(bool(name), f"{prefix}.display_name", "is required", "REQUIRED")
    violations.check(
        len(name) <= MAX_NAME_LENGTH,
        f"{prefix}.display_name",
        f"must be at most {MAX_NAME_LENGTH} characters",
        "TOO_LONG",
    )
    violations.check(
        is_currency_code(program.currency_code),
        f"{prefix}.currency_code",
        "must be a three-letter ISO-4217 code in upper case, e.g. USD",
        "INVALID_CURRENCY",
    )
    try:
        ZoneInfo(program.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        violations.add(
            f"{prefix}.time_zone",
            "must be an IANA time zone such as Europe/Berlin or UTC",
            "INVALID_TIME_ZONE",
        )
    violations.check(
        0 <= program.pending_seconds <= MAX_PENDING_SECONDS,
        f"{prefix}.pending_period",
        "must be between 0 and 366 days",
        "OUT_OF_RANGE",
    )
    expiry = program.expiry
    if expiry.kind is ExpiryKind.DAYS_AFTER_EARNING:
        violations.check(
            1 <= expiry.count <= MAX_EXPIRY_DAYS,
            f"{prefix}.expiry_policy.after_days.days",
            f"must be between 1 and {MAX_EXPIRY_DAYS} days",
            "OUT_OF_RANGE",
        )
    elif expiry.kind in (ExpiryKind.END_OF_MONTH, ExpiryKind.END_OF_YEAR):
        violations.check(
            0 <= expiry.count <= MAX_EXPIRY_PERIODS,
            f"{prefix}.expiry_policy.end_of_period.periods",
            f"must be between 0 and {MAX_EXPIRY_PERIODS}",
            "OUT_OF_RANGE",
        )
