"""Proto ⇄ domain for earning rules, orders, events and earning results.

Field paths in violations are the request's (``rule.order_rule.spend_unit``,
``cart.lines[0].unit_price``). Enums map by name: the domain's members are named after
the proto's values, so a value added to one and not the other fails at import.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import resources_pb2 as pb
from loyalty.type.v1 import cart_pb2, money_pb2
from services.points.domain.earning import (
    Cart,
    Contribution,
    CustomEvent,
    Order,
    OrderLine,
    RuleSkip,
    SkipReason,
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
    RuleState,
    TierMultiplierRule,
    TimeWindowMultiplierRule,
)
from shared.proto_types import EPOCH, from_timestamp, to_timestamp
from shared.validation import Violations, enum_filter

# The proto field of each kind, e.g. "order_rule": the `kind` oneof and update-mask paths.
KIND_FIELDS = frozenset(kind.value for kind in RuleKind)

_SCOPES = {pb.MultiplierScope.Value(f"MULTIPLIER_SCOPE_{s.name}"): s for s in MultiplierScope}
_PERIODS = {pb.LimitPeriod.Value(f"LIMIT_PERIOD_{p.name}"): p for p in LimitPeriod}
_KINDS = {pb.EarningRuleKind.Value(f"EARNING_RULE_KIND_{k.name}"): k for k in RuleKind}
_SCOPE_VALUES = {domain: value for value, domain in _SCOPES.items()}
_PERIOD_VALUES = {domain: value for value, domain in _PERIODS.items()}
_KIND_VALUES = {domain: value for value, domain in _KINDS.items()}
_STATE_VALUES = {
    state: pb.EarningRuleState.Value(f"EARNING_RULE_STATE_{state.name}") for state in RuleState
}
_SKIP_VALUES = {reason: pb.SkipReason.Value(f"SKIP_REASON_{reason.name}") for reason in SkipReason}

E = TypeVar("E")


def _enum(table: Mapping[Any, E], value: int, field: str, violations: Violations) -> E | None:
    """The domain value; unset and unknown values are violations, never guessed."""
    if value in table:
        return table[value]
    if value == 0:
        violations.add(field, "is required: choose one of the documented values", "REQUIRED")
    else:
        violations.add(field, f"{value} is not a known value", "INVALID_ENUM")
    return None


def _money(message: money_pb2.Money) -> Money:
    return Money(message.currency_code, message.amount_minor)


def _money_proto(money: Money) -> money_pb2.Money:
    return money_pb2.Money(currency_code=money.currency_code, amount_minor=money.amount_minor)


def _required_instant(
    stamp: timestamp_pb2.Timestamp, present: bool, field: str, violations: Violations
) -> dt.datetime:
    # The epoch stands in for a missing instant only until the violation is raised.
    violations.check(present, field, "is required", "REQUIRED")
    return from_timestamp(stamp) if present else EPOCH


# ------------------------------------------------------------------------------- rules in


def rule_from_proto(
    message: pb.EarningRule, violations: Violations, prefix: str = "rule"
) -> EarningRule | None:
    """A draft rule (ids, state and timestamps are the service's); None without a kind."""
    kind = message.WhichOneof("kind")
    if kind is None:
        violations.add(
            f"{prefix}.kind",
            f"set one of {', '.join(sorted(KIND_FIELDS))}",
            "REQUIRED",
        )
        return None
    return EarningRule(
        rule_id=message.rule_id,
        program_id=message.program_id,
        display_name=message.display_name,
        description=message.description,
        definition=definition_from_proto(message, RuleKind(kind), violations, prefix),
        # Output-only fields: the application sets them.
        created_at=EPOCH,
        updated_at=EPOCH,
    )


def definition_from_proto(
    message: pb.EarningRule, kind: RuleKind, violations: Violations, prefix: str = "rule"
) -> RuleDefinition:
    """The definition in the ``kind`` field of ``message`` (empty if that field is unset).

    A bad enum value is a violation; a placeholder stands in until it is raised.
    """
    path = f"{prefix}.{kind.value}"
    if kind is RuleKind.ORDER:
        return _order_rule(message.order_rule)
    if kind is RuleKind.CUSTOM_EVENT:
        return _custom_event_rule(message.custom_event_rule, violations, path)
    if kind is RuleKind.TIME_WINDOW_MULTIPLIER:
        return _time_window_rule(message.time_window_multiplier_rule, violations, path)
    terms = message.tier_multiplier_rule
    return TierMultiplierRule(
        scope=_enum(_SCOPES, terms.scope, f"{path}.scope", violations)
        or MultiplierScope.ORDERS_AND_EVENTS,
        event_types=tuple(terms.event_types),
    )


def _order_rule(terms: pb.OrderRule) -> OrderRule:
    return OrderRule(
        points_per_unit=terms.points_per_unit,
        spend_unit=_money(terms.spend_unit),
        minimum_order_amount=(
            _money(terms.minimum_order_amount) if terms.HasField("minimum_order_amount") else None
        ),
        line_multipliers=tuple(
            LineMultiplier(
                sku=m.sku if m.WhichOneof("match") == "sku" else None,
                category=m.category if m.WhichOneof("match") == "category" else None,
                multiplier_bps=m.multiplier_bps,
            )
            for m in terms.line_multipliers
        ),
        excluded_skus=tuple(terms.excluded_skus),
        excluded_categories=tuple(terms.excluded_categories),
    )


def _custom_event_rule(
    terms: pb.CustomEventRule, violations: Violations, path: str
) -> CustomEventRule:
    cap = None
    if terms.HasField("frequency_cap"):
        period = _enum(
            _PERIODS, terms.frequency_cap.period, f"{path}.frequency_cap.period", violations
        )
        cap = Limit(terms.frequency_cap.max_count, period or LimitPeriod.LIFETIME)
    return CustomEventRule(
        event_type=terms.event_type,
        points=terms.points,
        frequency_cap=cap,
        cooldown=terms.cooldown.ToTimedelta(),
    )


def _time_window_rule(
    terms: pb.TimeWindowMultiplierRule, violations: Violations, path: str
) -> TimeWindowMultiplierRule:
    return TimeWindowMultiplierRule(
        starts_at=_required_instant(
            terms.starts_at, terms.HasField("starts_at"), f"{path}.starts_at", violations
        ),
        ends_at=_required_instant(
            terms.ends_at, terms.HasField("ends_at"), f"{path}.ends_at", violations
        ),
        multiplier_bps=terms.multiplier_bps,
        scope=_enum(_SCOPES, terms.scope, f"{path}.scope", violations)
        or MultiplierScope.ORDERS_AND_EVENTS,
        event_types=tuple(terms.event_types),
    )


def kinds_from_proto(
    values: Iterable[Any], violations: Violations, field: str = "kinds"
) -> frozenset[RuleKind]:
    """A list filter: unspecified entries mean "no filter", unknown ones are violations."""
    return enum_filter(values, _KINDS, violations, field)


# ------------------------------------------------------------------------------ rules out


def rule_to_proto(rule: EarningRule) -> pb.EarningRule:
    message = pb.EarningRule(
        rule_id=rule.rule_id,
        program_id=rule.program_id,
        display_name=rule.display_name,
        description=rule.description,
        state=_STATE_VALUES[rule.state],
        revision=rule.revision,
        created_at=to_timestamp(rule.created_at),
        updated_at=to_timestamp(rule.updated_at),
    )
    if rule.archived_at is not None:
        message.archived_at.CopyFrom(to_timestamp(rule.archived_at))
    terms = rule.definition
    if isinstance(terms, OrderRule):
        message.order_rule.CopyFrom(_order_rule_proto(terms))
    elif isinstance(terms, CustomEventRule):
        message.custom_event_rule.CopyFrom(_custom_event_rule_proto(terms))
    elif isinstance(terms, TimeWindowMultiplierRule):
        message.time_window_multiplier_rule.CopyFrom(
            pb.TimeWindowMultiplierRule(
                starts_at=to_timestamp(terms.starts_at),
                ends_at=to_timestamp(terms.ends_at),
                multiplier_bps=terms.multiplier_bps,
                scope=_SCOPE_VALUES[terms.scope],
                event_types=terms.event_types,
            )
        )
    else:
        message.tier_multiplier_rule.CopyFrom(
            pb.TierMultiplierRule(scope=_SCOPE_VALUES[terms.scope], event_types=terms.event_types)
        )
    return message


def _order_rule_proto(terms: OrderRule) -> pb.OrderRule:
    message = pb.OrderRule(
        points_per_unit=terms.points_per_unit,
        spend_unit=_money_proto(terms.spend_unit),
        excluded_skus=terms.excluded_skus,
        excluded_categories=terms.excluded_categories,
    )
    if terms.minimum_order_amount is not None:
        message.minimum_order_amount.CopyFrom(_money_proto(terms.minimum_order_amount))
    for multiplier in terms.line_multipliers:
        line = message.line_multipliers.add(multiplier_bps=multiplier.multiplier_bps)
        if multiplier.sku is not None:
            line.sku = multiplier.sku
        elif multiplier.category is not None:
            line.category = multiplier.category
    return message


def _custom_event_rule_proto(terms: CustomEventRule) -> pb.CustomEventRule:
    message = pb.CustomEventRule(event_type=terms.event_type, points=terms.points)
    if terms.frequency_cap is not None:
        message.frequency_cap.CopyFrom(
            pb.Limit(
                max_count=terms.frequency_cap.max_count,
                period=_PERIOD_VALUES[terms.frequency_cap.period],
            )
        )
    if terms.cooldown:
        cooldown = duration_pb2.Duration()
        cooldown.FromTimedelta(terms.cooldown)
        message.cooldown.CopyFrom(cooldown)
    return message


# ------------------------------------------------------------------------- orders, events


def order_from_proto(
    request: api.EarnForOrderRequest, customer_id: str, violations: Violations
) -> Order:
    """Presence checks only; the domain checks the rest against the program."""
    violations.check(request.HasField("amount"), "amount", "is required", "REQUIRED")
    cart = None
    if request.HasField("cart"):
        cart = Cart(
            currency_code=request.cart.currency_code,
            lines=tuple(
                _order_line(line, f"cart.lines[{index}]", violations)
                for index, line in enumerate(request.cart.lines)
            ),
            channel=request.cart.channel,
            store_id=request.cart.store_id,
        )
    return Order(
        order_id=request.order_id,
        customer_id=customer_id,
        amount=_money(request.amount),
        occurred_at=_required_instant(
            request.occurred_at, request.HasField("occurred_at"), "occurred_at", violations
        ),
        cart=cart,
    )


def _order_line(line: cart_pb2.CartLine, path: str, violations: Violations) -> OrderLine:
    violations.check(line.HasField("unit_price"), f"{path}.unit_price", "is required", "REQUIRED")
    return OrderLine(
        line_id=line.line_id,
        sku=line.sku,
        categories=tuple(line.categories),
        quantity=line.quantity,
        unit_price=_money(line.unit_price),
    )


def event_from_proto(
    request: api.RecordEventRequest, customer_id: str, violations: Violations
) -> CustomEvent:
    return CustomEvent(
        customer_id=customer_id,
        event_type=request.event_type,
        occurred_at=_required_instant(
            request.occurred_at, request.HasField("occurred_at"), "occurred_at", violations
        ),
    )


# ------------------------------------------------------------------------------- results


def contribution_to_proto(contribution: Contribution) -> pb.EarningContribution:
    return pb.EarningContribution(
        rule_id=contribution.rule_id,
        rule_name=contribution.rule_name,
        rule_revision=contribution.rule_revision,
        kind=_KIND_VALUES[contribution.kind],
        points=contribution.points,
        multiplier_bps=contribution.multiplier_bps,
        explanation=contribution.explanation,
    )


def skip_to_proto(skip: RuleSkip) -> pb.RuleSkip:
    return pb.RuleSkip(
        rule_id=skip.rule_id,
        rule_name=skip.rule_name,
        reason=_SKIP_VALUES[skip.reason],
        explanation=skip.explanation,
    )


def skip_reason_to_proto(reason: SkipReason | None) -> pb.SkipReason.ValueType:
    return pb.SKIP_REASON_UNSPECIFIED if reason is None else _SKIP_VALUES[reason]
