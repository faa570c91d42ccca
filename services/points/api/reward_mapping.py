"""Proto ⇄ domain for the rewards catalog and redemptions.

Field paths in violations are the request's (``reward.physical_item.stock``). Enums map by
name: the domain's members are named after the proto's values, so a value added to one
and not the other fails at import.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from loyalty.points.v1 import resources_pb2 as pb
from loyalty.type.v1 import customer_pb2, money_pb2
from services.points.domain.rewards import (
    CharityDonationReward,
    PaymentOption,
    PhysicalItemReward,
    PointsPlusCash,
    Redemption,
    Reward,
    RewardItem,
    RewardKind,
    VoucherReward,
)
from services.points.domain.rules import Limit, LimitPeriod, Money
from shared.proto_types import EPOCH, to_timestamp
from shared.validation import Violations, enum_filter

_KINDS = {pb.RewardKind.Value(f"REWARD_KIND_{kind.name}"): kind for kind in RewardKind}
_KIND_VALUES = {kind: value for value, kind in _KINDS.items()}
_OPTIONS = {
    pb.RewardPaymentOption.Value(f"REWARD_PAYMENT_OPTION_{option.name}"): option
    for option in PaymentOption
}
_OPTION_VALUES = {option: value for value, option in _OPTIONS.items()}
_PERIODS = {pb.LimitPeriod.Value(f"LIMIT_PERIOD_{p.name}"): p for p in LimitPeriod}
_PERIOD_VALUES = {period: value for value, period in _PERIODS.items()}
_KIND_FIELDS = ", ".join(kind.value for kind in RewardKind)


def _money(message: money_pb2.Money) -> Money:
    return Money(message.currency_code, message.amount_minor)


def money_to_proto(money: Money) -> money_pb2.Money:
    return money_pb2.Money(currency_code=money.currency_code, amount_minor=money.amount_minor)


# ------------------------------------------------------------------------------------ in


def reward_from_proto(
    message: pb.Reward, violations: Violations, prefix: str = "reward"
) -> Reward | None:
    """A draft reward (its id and creation time are the service's); None without a kind."""
    item = _item(message, violations, prefix)
    price = None
    if message.HasField("points_plus_cash"):
        cash_price = message.points_plus_cash
        price = PointsPlusCash(cash_price.points, _money(cash_price.cash))
    limit = None
    if message.HasField("per_customer_limit"):
        terms = message.per_customer_limit
        period = _period(terms.period, f"{prefix}.per_customer_limit.period", violations)
        limit = Limit(terms.max_count, period)
    if item is None:
        return None
    return Reward(
        reward_id=message.reward_id,
        program_id=message.program_id,
        display_name=message.display_name,
        description=message.description,
        points_cost=message.points_cost,
        points_plus_cash=price,
        per_customer_limit=limit,
        item=item,
        created_at=EPOCH,  # output only: the application sets it
    )


def _period(value: pb.LimitPeriod.ValueType, field: str, violations: Violations) -> LimitPeriod:
    """The period; unset and unknown values are violations, never guessed."""
    if value in _PERIODS:
        return _PERIODS[value]
    if value:
        violations.add(field, f"{value} is not a known value", "INVALID_ENUM")
    else:
        violations.add(field, "is required: choose one of the documented values", "REQUIRED")
    return LimitPeriod.LIFETIME  # stands in only until the violation is raised


def _item(message: pb.Reward, violations: Violations, prefix: str) -> RewardItem | None:
    kind = message.WhichOneof("kind")
    if kind == RewardKind.VOUCHER.value:
        return VoucherReward(campaign_id=message.voucher.campaign_id)
    if kind == RewardKind.PHYSICAL_ITEM.value:
        return PhysicalItemReward(sku=message.physical_item.sku, stock=message.physical_item.stock)
    if kind == RewardKind.CHARITY_DONATION.value:
        terms = message.charity_donation
        return CharityDonationReward(
            charity_id=terms.charity_id,
            charity_name=terms.charity_name,
            donation=_money(terms.donation),
        )
    violations.add(f"{prefix}.kind", f"set one of {_KIND_FIELDS}", "REQUIRED")
    return None


def kinds_from_proto(
    values: Iterable[Any], violations: Violations, field: str = "kinds"
) -> frozenset[RewardKind]:
    """A list filter: unspecified entries mean "no filter", unknown ones are violations."""
    return enum_filter(values, _KINDS, violations, field)


def payment_option_from_proto(
    value: pb.RewardPaymentOption.ValueType, violations: Violations
) -> PaymentOption:
    """Unset means points only, as the contract says; unknown values are violations."""
    if value in _OPTIONS:
        return _OPTIONS[value]
    if value:
        violations.add("payment_option", f"{value} is not a known value", "INVALID_ENUM")
    return PaymentOption.POINTS_ONLY


# ----------------------------------------------------------------------------------- out


def reward_to_proto(reward: Reward) -> pb.Reward:
    message = pb.Reward(
        reward_id=reward.reward_id,
        program_id=reward.program_id,
        display_name=reward.display_name,
        description=reward.description,
        points_cost=reward.points_cost,
        created_at=to_timestamp(reward.created_at),
    )
    if reward.points_plus_cash is not None:
        message.points_plus_cash.CopyFrom(
            pb.PointsPlusCash(
                points=reward.points_plus_cash.points,
                cash=money_to_proto(reward.points_plus_cash.cash),
            )
        )
    if reward.per_customer_limit is not None:
        message.per_customer_limit.CopyFrom(
            pb.Limit(
                max_count=reward.per_customer_limit.max_count,
                period=_PERIOD_VALUES[reward.per_customer_limit.period],
            )
        )
    item = reward.item
    if isinstance(item, VoucherReward):
        message.voucher.CopyFrom(pb.VoucherReward(campaign_id=item.campaign_id))
    elif isinstance(item, PhysicalItemReward):
        message.physical_item.CopyFrom(pb.PhysicalItemReward(sku=item.sku, stock=item.stock))
    else:
        message.charity_donation.CopyFrom(
            pb.CharityDonationReward(
                charity_id=item.charity_id,
                charity_name=item.charity_name,
                donation=money_to_proto(item.donation),
            )
        )
    return message


def redemption_to_proto(redemption: Redemption) -> pb.RewardRedemption:
    return pb.RewardRedemption(
        redemption_id=redemption.redemption_id,
        customer=customer_pb2.CustomerRef(
            program_id=redemption.program_id, customer_id=redemption.customer_id
        ),
        reward_id=redemption.reward_id,
        kind=_KIND_VALUES[redemption.kind],
        payment_option=_OPTION_VALUES[redemption.payment_option],
        points_spent=redemption.points_spent,
        cash_due=money_to_proto(redemption.cash_due),
        voucher_code=redemption.voucher_code,
        entry_id=redemption.entry_id,
        order_id=redemption.order_id,
        created_at=to_timestamp(redemption.created_at),
    )
