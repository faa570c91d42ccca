"""Earning rules: what earns points (order and custom-event rules) and what multiplies them.

Pure domain code: no gRPC, no SQL. The types mirror ``loyalty.points.v1.EarningRule`` field
for field so that the proto mapping and storage are mechanical; field paths in violations
are the proto's (``rule.order_rule.points_per_unit``).

A rule is never edited in place: ``revise`` returns the next revision, and whatever a rule
earned keeps the revision that earned it.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace
from typing import ClassVar
from zoneinfo import ZoneInfo

from services.points.domain.program import MAX_NAME_LENGTH, is_currency_code
from shared.errors import FailedPrecondition, FieldViolation, InvalidArgument
from shared.validation import Violations

ONE_X_BPS = 10_000  # multipliers are basis points of 1x
MAX_MULTIPLIER_BPS = 1_000_000  # 100x
MAX_POINTS = 10**12  # the API's limit on points in requests and in one award
MAX_AMOUNT_MINOR = 10**15  # the API's limit on money amounts
MAX_DESCRIPTION_LENGTH = 2_000
MAX_EVENT_TYPE_LENGTH = 64
MAX_LIMIT_COUNT = 2**31 - 1  # int32 in the contract
# Not in the contract: keeps "last award + cooldown" far from the end of the calendar.
MAX_COOLDOWN = dt.timedelta(days=3_660)


@dataclass(frozen=True)
class Money:
    """An amount in whole minor units (1999 with "USD" is $19.99); never a float."""

    currency_code: str
    amount_minor: int


class RuleState(enum.Enum):
    ACTIVE = "active"
    ARCHIVED = "archived"  # applies to nothing new, cannot be updated, kept for history


class RuleKind(enum.Enum):
    """The kind of a rule; each value is the name of the proto ``kind`` oneof field."""

    ORDER = "order_rule"
    CUSTOM_EVENT = "custom_event_rule"
    TIME_WINDOW_MULTIPLIER = "time_window_multiplier_rule"
    TIER_MULTIPLIER = "tier_multiplier_rule"


class MultiplierScope(enum.Enum):
    ORDERS_AND_EVENTS = "orders_and_events"
    ORDERS = "orders"
    EVENTS = "events"


class LimitPeriod(enum.Enum):
    """The period a ``Limit`` counts in; calendar periods follow the program's time zone."""

    LIFETIME = "lifetime"
    DAY = "day"
    WEEK = "week"  # starts on Monday
    MONTH = "month"
    YEAR = "year"

    def bounds(
        self, at: dt.datetime, zone: ZoneInfo
    ) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The UTC [start, end) of the period containing ``at``; (None, None) for LIFETIME."""
        if self is LimitPeriod.LIFETIME:
            return None, None
        day = at.astimezone(zone).date()
        if self is LimitPeriod.DAY:
            start, end = day, day + dt.timedelta(days=1)
        elif self is LimitPeriod.WEEK:
            start = day - dt.timedelta(days=day.weekday())
            end = start + dt.timedelta(days=7)
        elif self is LimitPeriod.MONTH:
            start = day.replace(day=1)
            end = (start + dt.timedelta(days=31)).replace(day=1)
        else:
            start, end = dt.date(day.year, 1, 1), dt.date(day.year + 1, 1, 1)
        return _local_midnight(start, zone), _local_midnight(end, zone)


def _local_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(dt.UTC)


@dataclass(frozen=True)
class Limit:
    """At most ``max_count`` times per ``period``, per customer."""

    max_count: int
    period: LimitPeriod


@dataclass(frozen=True, kw_only=True)
class LineMultiplier:
    """Multiplies the points of order lines matching a SKU or a category (set exactly one)."""

    sku: str | None = None
    category: str | None = None
    multiplier_bps: int


@dataclass(frozen=True, kw_only=True)
class OrderRule:
    """``points_per_unit`` points per ``spend_unit`` of the order's paid amount."""

    kind: ClassVar[RuleKind] = RuleKind.ORDER

    points_per_unit: int
    spend_unit: Money
    minimum_order_amount: Money | None = None
    line_multipliers: tuple[LineMultiplier, ...] = ()
    excluded_skus: tuple[str, ...] = ()
    excluded_categories: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CustomEventRule:
    """Fixed points each time an event of ``event_type`` is recorded for a customer."""

    kind: ClassVar[RuleKind] = RuleKind.CUSTOM_EVENT

    event_type: str
    points: int
    frequency_cap: Limit | None = None
    cooldown: dt.timedelta = dt.timedelta(0)  # zero means none


@dataclass(frozen=True, kw_only=True)
class TimeWindowMultiplierRule:
    """Multiplies points of orders and events that occur in [starts_at, ends_at)."""

    kind: ClassVar[RuleKind] = RuleKind.TIME_WINDOW_MULTIPLIER

    starts_at: dt.datetime
    ends_at: dt.datetime
    multiplier_bps: int
    scope: MultiplierScope
    event_types: tuple[str, ...] = ()  # empty: every event type (when events are in scope)

    def covers(self, event_type: str | None) -> bool:
        """Whether an order (``event_type`` None) or an event of that type is in scope."""
        return _covers(self.scope, self.event_types, event_type)

    def is_open_at(self, instant: dt.datetime) -> bool:
        return self.starts_at <= instant < self.ends_at


@dataclass(frozen=True, kw_only=True)
class TierMultiplierRule:
    """Multiplies points by the customer's tier multiplier (from the tiers service)."""

    kind: ClassVar[RuleKind] = RuleKind.TIER_MULTIPLIER

    scope: MultiplierScope
    event_types: tuple[str, ...] = ()  # empty: every event type (when events are in scope)

    def covers(self, event_type: str | None) -> bool:
        """Whether an order (``event_type`` None) or an event of that type is in scope."""
        return _covers(self.scope, self.event_types, event_type)


def _covers(scope: MultiplierScope, event_types: tuple[str, ...], event_type: str | None) -> bool:
    if event_type is None:
        return scope is not MultiplierScope.EVENTS
    if scope is MultiplierScope.ORDERS:
        return False
    return not event_types or event_type in event_types


RuleDefinition = OrderRule | CustomEventRule | TimeWindowMultiplierRule | TierMultiplierRule


@dataclass(frozen=True, kw_only=True)
class EarningRule:
    rule_id: str
    program_id: str
    display_name: str
    description: str = ""
    definition: RuleDefinition  # the proto's `kind` oneof: what the rule does
    state: RuleState = RuleState.ACTIVE
    revision: int = 1  # bumped by every update; results record the revision that made them
    created_at: dt.datetime
    updated_at: dt.datetime
    archived_at: dt.datetime | None = None

    @property
    def kind(self) -> RuleKind:
        return self.definition.kind

    @property
    def is_active(self) -> bool:
        return self.state is RuleState.ACTIVE


def revise(
    rule: EarningRule,
    now: dt.datetime,
    *,
    display_name: str | None = None,
    description: str | None = None,
    definition: RuleDefinition | None = None,
) -> EarningRule:
    """The next revision of an active rule with the given fields replaced.

    Only what ``UpdateEarningRule`` may change can be passed; the kind is fixed for life.
    Validate the result with ``validate_rule``.
    """
    if not rule.is_active:
        raise rule_archived(rule)
    if definition is not None and definition.kind is not rule.kind:
        field = f"rule.{definition.kind.value}"
        message = f"the rule is a {rule.kind.value}; its kind cannot change"
        raise InvalidArgument(
            f"{field}: {message}",
            violations=[FieldViolation(field, message, "FIELD_IMMUTABLE")],
            reason="FIELD_IMMUTABLE",
        )
    return replace(
        rule,
        display_name=rule.display_name if display_name is None else display_name,
        description=rule.description if description is None else description,
        definition=rule.definition if definition is None else definition,
        revision=rule.revision + 1,
        updated_at=now,
    )


def archive(rule: EarningRule, now: dt.datetime) -> EarningRule:
    """The archived rule; archiving an archived rule changes nothing. Keeps its revision:
    what the rule computes did not change, only whether it applies."""
    if not rule.is_active:
        return rule
    return replace(rule, state=RuleState.ARCHIVED, archived_at=now, updated_at=now)


def rule_archived(rule: EarningRule) -> FailedPrecondition:
    return FailedPrecondition(
        f"The earning rule '{rule.display_name}' is archived and can no longer be changed.",
        reason="RULE_ARCHIVED",
        metadata={"rule_id": rule.rule_id},
    )


# ------------------------------------------------------------------------------ validation


def validate_rule(rule: EarningRule, violations: Violations, prefix: str = "rule") -> None:
    """Check a rule's own fields; ids, state and timestamps are the service's business."""
    violations.require(rule.program_id, f"{prefix}.program_id")
    _check_text(rule.display_name.strip(), f"{prefix}.display_name", MAX_NAME_LENGTH, violations)
    violations.check(
        len(rule.description) <= MAX_DESCRIPTION_LENGTH,
        f"{prefix}.description",
        f"must be at most {MAX_DESCRIPTION_LENGTH} characters",
        "TOO_LONG",
    )
    path = f"{prefix}.{rule.kind.value}"
    definition = rule.definition
    if isinstance(definition, OrderRule):
        _validate_order_rule(definition, violations, path)
    elif isinstance(definition, CustomEventRule):
        _validate_custom_event_rule(definition, violations, path)
    elif isinstance(definition, TimeWindowMultiplierRule):
        _validate_time_window(definition, violations, path)
    else:
        _validate_event_types(definition.scope, definition.event_types, violations, path)


def validate_rule_currency(
    rule: EarningRule, currency_code: str, violations: Violations, prefix: str = "rule"
) -> None:
    """Money in an order rule must be in the program's currency (reason CURRENCY_MISMATCH)."""
    definition = rule.definition
    if not isinstance(definition, OrderRule):
        return
    path = f"{prefix}.{rule.kind.value}"
    for name, money in (
        ("spend_unit", definition.spend_unit),
        ("minimum_order_amount", definition.minimum_order_amount),
    ):
        if money is not None and money.currency_code != currency_code:
            violations.add(
                f"{path}.{name}.currency_code",
                f"must be the program's currency {currency_code}",
                "CURRENCY_MISMATCH",
            )


def _validate_order_rule(rule: OrderRule, violations: Violations, path: str) -> None:
    _check_range(rule.points_per_unit, 1, MAX_POINTS, f"{path}.points_per_unit", violations)
    unit = rule.spend_unit
    if unit.amount_minor == 0 and not unit.currency_code:
        violations.add(f"{path}.spend_unit", "is required", "REQUIRED")
    else:
        _check_money(unit, 1, f"{path}.spend_unit", violations)
    if rule.minimum_order_amount is not None:
        _check_money(rule.minimum_order_amount, 0, f"{path}.minimum_order_amount", violations)
    for index, multiplier in enumerate(rule.line_multipliers):
        _validate_line_multiplier(multiplier, violations, f"{path}.line_multipliers[{index}]")
    for index, sku in enumerate(rule.excluded_skus):
        violations.require(sku, f"{path}.excluded_skus[{index}]")
    for index, category in enumerate(rule.excluded_categories):
        violations.require(category, f"{path}.excluded_categories[{index}]")


def _validate_line_multiplier(rule: LineMultiplier, violations: Violations, path: str) -> None:
    if rule.sku is None and rule.category is None:
        violations.add(path, "set either sku or category", "REQUIRED")
    elif rule.sku is not None and rule.category is not None:
        violations.add(path, "set either sku or category, not both", "INVALID_FORMAT")
    elif rule.sku is not None:
        violations.require(rule.sku, f"{path}.sku")
    else:
        violations.require(rule.category, f"{path}.category")
    _check_multiplier(rule.multiplier_bps, f"{path}.multiplier_bps", violations)


def _validate_custom_event_rule(rule: CustomEventRule, violations: Violations, path: str) -> None:
    validate_event_type(rule.event_type, f"{path}.event_type", violations)
    _check_range(rule.points, 1, MAX_POINTS, f"{path}.points", violations)
    if rule.frequency_cap is not None:
        _check_range(
            rule.frequency_cap.max_count,
            1,
            MAX_LIMIT_COUNT,
            f"{path}.frequency_cap.max_count",
            violations,
        )
    violations.check(
        dt.timedelta(0) <= rule.cooldown <= MAX_COOLDOWN,
        f"{path}.cooldown",
        f"must be between 0 and {MAX_COOLDOWN.days} days",
        "OUT_OF_RANGE",
    )


def _validate_time_window(
    rule: TimeWindowMultiplierRule, violations: Violations, path: str
) -> None:
    starts_ok = _check_instant(rule.starts_at, f"{path}.starts_at", violations)
    ends_ok = _check_instant(rule.ends_at, f"{path}.ends_at", violations)
    if starts_ok and ends_ok:
        violations.check(
            rule.ends_at > rule.starts_at,
            f"{path}.ends_at",
            "must be after starts_at",
            "OUT_OF_RANGE",
        )
    _check_multiplier(rule.multiplier_bps, f"{path}.multiplier_bps", violations)
    _validate_event_types(rule.scope, rule.event_types, violations, path)


def _validate_event_types(
    scope: MultiplierScope, event_types: tuple[str, ...], violations: Violations, path: str
) -> None:
    # Event types on an orders-only multiplier would silently do nothing: refuse them.
    if event_types and scope is MultiplierScope.ORDERS:
        violations.add(
            f"{path}.event_types",
            "must be empty when the scope is orders only",
            "INVALID_FORMAT",
        )
    for index, event_type in enumerate(event_types):
        validate_event_type(event_type, f"{path}.event_types[{index}]", violations)


def validate_event_type(event_type: str, field: str, violations: Violations) -> None:
    """An event type is any string of 1 to 64 characters."""
    _check_text(event_type, field, MAX_EVENT_TYPE_LENGTH, violations)


def _check_text(value: str, field: str, max_length: int, violations: Violations) -> None:
    if violations.require(value, field):
        violations.check(
            len(value) <= max_length,
            field,
            f"must be at most {max_length} characters",
            "TOO_LONG",
        )


def _check_instant(value: dt.datetime, field: str, violations: Violations) -> bool:
    return violations.check(
        value.tzinfo is not None, field, "must be a time-zone-aware instant", "INVALID_FORMAT"
    )


def _check_range(value: int, low: int, high: int, field: str, violations: Violations) -> None:
    violations.check(
        low <= value <= high, field, f"must be between {low} and {high}", "OUT_OF_RANGE"
    )


def _check_multiplier(bps: int, field: str, violations: Violations) -> None:
    violations.check(
        0 <= bps <= MAX_MULTIPLIER_BPS,
        field,
        f"must be between 0 and {MAX_MULTIPLIER_BPS} basis points (10000 = 1x)",
        "OUT_OF_RANGE",
    )


def _check_money(money: Money, minimum: int, field: str, violations: Violations) -> None:
    violations.check(
        is_currency_code(money.currency_code),
        f"{field}.currency_code",
        "must be a three-letter ISO-4217 code in upper case, e.g. USD",
        "INVALID_CURRENCY",
    )
    _check_range(money.amount_minor, minimum, MAX_AMOUNT_MINOR, f"{field}.amount_minor", violations)
