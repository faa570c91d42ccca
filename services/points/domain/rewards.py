"""The rewards catalog: what members buy with points, and what a redemption records.

Pure domain code: no gRPC, no SQL. Types mirror ``loyalty.points.v1.Reward`` so the proto
mapping and storage are mechanical; field paths in violations are the proto's
(``reward.points_plus_cash.cash.amount_minor``).

Stock and per-customer limits are *enforced* by storage with atomic conditional updates
(a read here can be stale the moment it is made); this module only says what they mean.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import ClassVar
from zoneinfo import ZoneInfo

from services.points.domain.ledger import MAX_POINTS
from services.points.domain.program import MAX_NAME_LENGTH, is_currency_code
from services.points.domain.rules import (
    MAX_AMOUNT_MINOR,
    MAX_DESCRIPTION_LENGTH,
    MAX_LIMIT_COUNT,
    Limit,
    LimitPeriod,
    Money,
)
from shared.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from shared.validation import Violations

MAX_REFERENCE_LENGTH = 128  # campaign, SKU and charity ids: the merchant's or another service's
# The period key of a lifetime limit: every redemption counts in the same bucket.
LIFETIME_PERIOD = "lifetime"


class RewardKind(enum.Enum):
    """The kind of a reward; each value is the name of the proto ``kind`` oneof field."""

    VOUCHER = "voucher"
    PHYSICAL_ITEM = "physical_item"
    CHARITY_DONATION = "charity_donation"


class PaymentOption(enum.Enum):
    POINTS_ONLY = "points_only"
    POINTS_PLUS_CASH = "points_plus_cash"


@dataclass(frozen=True, kw_only=True)
class VoucherReward:
    """A unique code the promotions service issues from ``campaign_id`` per redemption."""

    kind: ClassVar[RewardKind] = RewardKind.VOUCHER

    campaign_id: str


@dataclass(frozen=True, kw_only=True)
class PhysicalItemReward:
    """An item taken from counted stock: ``stock`` is the units left."""

    kind: ClassVar[RewardKind] = RewardKind.PHYSICAL_ITEM

    sku: str = ""
    stock: int


@dataclass(frozen=True, kw_only=True)
class CharityDonationReward:
    """The merchant donates ``donation`` to a charity in the customer's name."""

    kind: ClassVar[RewardKind] = RewardKind.CHARITY_DONATION

    charity_id: str
    charity_name: str
    donation: Money


RewardItem = VoucherReward | PhysicalItemReward | CharityDonationReward


@dataclass(frozen=True)
class PointsPlusCash:
    """Fewer points than ``points_cost``; the till collects ``cash`` for the rest."""

    points: int
    cash: Money


@dataclass(frozen=True)
class Price:
    """What one redemption costs: points spent and cash the till collects."""

    points: int
    cash: Money


@dataclass(frozen=True, kw_only=True)
class Reward:
    reward_id: str
    program_id: str
    display_name: str
    description: str = ""
    points_cost: int
    points_plus_cash: PointsPlusCash | None = None
    per_customer_limit: Limit | None = None
    item: RewardItem  # the proto's `kind` oneof: what the customer gets
    created_at: dt.datetime

    @property
    def kind(self) -> RewardKind:
        return self.item.kind

    @property
    def in_stock(self) -> bool:
        """False only for a physical item with no units left."""
        return not isinstance(self.item, PhysicalItemReward) or self.item.stock > 0

    def price(self, option: PaymentOption, currency_code: str) -> Price:
        """The price under ``option``; cash is in the program's ``currency_code``."""
        if option is PaymentOption.POINTS_ONLY:
            return Price(self.points_cost, Money(currency_code, 0))
        if self.points_plus_cash is None:
            raise FailedPrecondition(
                f"'{self.display_name}' can only be paid with points.",
                reason="POINTS_PLUS_CASH_NOT_OFFERED",
                metadata={"reward_id": self.reward_id},
            )
        return Price(self.points_plus_cash.points, self.points_plus_cash.cash)


@dataclass(frozen=True, kw_only=True)
class Redemption:
    """One redemption of a reward by a customer, kept for limits and audit."""

    redemption_id: str
    program_id: str
    customer_id: str
    reward_id: str
    kind: RewardKind
    payment_option: PaymentOption
    points_spent: int
    cash_due: Money
    voucher_code: str = ""
    entry_id: str
    order_id: str = ""
    request_id: str
    created_at: dt.datetime


def limit_period_key(limit: Limit, at: dt.datetime, zone: ZoneInfo) -> str:
    """The bucket redemptions at ``at`` count in: the period's UTC start, or lifetime."""
    start, _ = limit.period.bounds(at, zone)
    return LIFETIME_PERIOD if start is None else start.isoformat()


# ---------------------------------------------------------------------------------- errors


def reward_not_found(reward_id: str) -> NotFound:
    return NotFound(
        f"Reward {reward_id} does not exist in this program.",
        reason="REWARD_NOT_FOUND",
        metadata={"reward_id": reward_id},
    )


def out_of_stock(reward: Reward) -> FailedPrecondition:
    return FailedPrecondition(
        f"'{reward.display_name}' is out of stock.",
        reason="OUT_OF_STOCK",
        metadata={"reward_id": reward.reward_id},
    )


_PER_PERIOD = {
    LimitPeriod.LIFETIME: "in total",
    LimitPeriod.DAY: "per day",
    LimitPeriod.WEEK: "per week",
    LimitPeriod.MONTH: "per month",
    LimitPeriod.YEAR: "per year",
}


def redemption_limit_reached(reward: Reward, limit: Limit) -> FailedPrecondition:
    times = "once" if limit.max_count == 1 else f"{limit.max_count} times"
    return FailedPrecondition(
        f"'{reward.display_name}' can be redeemed {times} {_PER_PERIOD[limit.period]}; "
        "this customer has reached the limit.",
        reason="REDEMPTION_LIMIT_REACHED",
        metadata={
            "reward_id": reward.reward_id,
            "max_count": str(limit.max_count),
            "period": limit.period.name,
        },
    )


# ------------------------------------------------------------------------------ validation


def validate_reward(reward: Reward, violations: Violations, prefix: str = "reward") -> None:
    """Check a reward's own fields; its id and creation time are the service's business."""
    violations.require(reward.program_id, f"{prefix}.program_id")
    _check_text(reward.display_name.strip(), f"{prefix}.display_name", MAX_NAME_LENGTH, violations)
    violations.check(
        len(reward.description) <= MAX_DESCRIPTION_LENGTH,
        f"{prefix}.description",
        f"must be at most {MAX_DESCRIPTION_LENGTH} characters",
        "TOO_LONG",
    )
    _check_range(reward.points_cost, 1, MAX_POINTS, f"{prefix}.points_cost", violations)
    if reward.points_plus_cash is not None:
        _validate_points_plus_cash(
            reward.points_plus_cash, reward.points_cost, violations, f"{prefix}.points_plus_cash"
        )
    if reward.per_customer_limit is not None:
        _check_range(
            reward.per_customer_limit.max_count,
            1,
            MAX_LIMIT_COUNT,
            f"{prefix}.per_customer_limit.max_count",
            violations,
        )
    path = f"{prefix}.{reward.kind.value}"
    item = reward.item
    if isinstance(item, VoucherReward):
        _check_text(item.campaign_id, f"{path}.campaign_id", MAX_REFERENCE_LENGTH, violations)
    elif isinstance(item, PhysicalItemReward):
        violations.check(
            len(item.sku) <= MAX_REFERENCE_LENGTH,
            f"{path}.sku",
            f"must be at most {MAX_REFERENCE_LENGTH} characters",
            "TOO_LONG",
        )
        violations.check(item.stock >= 0, f"{path}.stock", "must not be negative", "OUT_OF_RANGE")
    else:
        _check_text(item.charity_id, f"{path}.charity_id", MAX_REFERENCE_LENGTH, violations)
        _check_text(item.charity_name.strip(), f"{path}.charity_name", MAX_NAME_LENGTH, violations)
        _check_money(item.donation, f"{path}.donation", violations)


def check_reward_currency(reward: Reward, currency_code: str) -> None:
    """The cash price must be in the program's currency (a donation may be in any)."""
    price = reward.points_plus_cash
    if price is None or price.cash.currency_code == currency_code:
        return
    field = "reward.points_plus_cash.cash.currency_code"
    description = f"must be the program's currency {currency_code}"
    raise InvalidArgument(
        f"{field}: {description}",
        violations=[FieldViolation(field, description, "CURRENCY_MISMATCH")],
        reason="CURRENCY_MISMATCH",
        metadata={"program_currency": currency_code},
    )


def _validate_points_plus_cash(
    price: PointsPlusCash, points_cost: int, violations: Violations, path: str
) -> None:
    violations.check(
        1 <= price.points < points_cost,
        f"{path}.points",
        "must be at least 1 and less than the reward's points_cost",
        "OUT_OF_RANGE",
    )
    _check_money(price.cash, f"{path}.cash", violations)


def _check_money(money: Money, field: str, violations: Violations) -> None:
    if not money.currency_code and money.amount_minor == 0:
        violations.add(field, "is required", "REQUIRED")
        return
    violations.check(
        is_currency_code(money.currency_code),
        f"{field}.currency_code",
        "must be a three-letter ISO-4217 code in upper case, e.g. USD",
        "INVALID_CURRENCY",
    )
    _check_range(money.amount_minor, 1, MAX_AMOUNT_MINOR, f"{field}.amount_minor", violations)


def _check_text(value: str, field: str, max_length: int, violations: Violations) -> None:
    if violations.require(value, field):
        violations.check(
            len(value) <= max_length,
            field,
            f"must be at most {max_length} characters",
            "TOO_LONG",
        )


def _check_range(value: int, low: int, high: int, field: str, violations: Violations) -> None:
    violations.check(
        low <= value <= high, field, f"must be between {low} and {high}", "OUT_OF_RANGE"
    )
