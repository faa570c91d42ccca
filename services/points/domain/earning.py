"""Earning: the points an order or a custom event earns, explained rule by rule.

The contract's arithmetic: every active base rule (order or custom-event) that matches
contributes its points, kept exact as a ``Fraction``; each contribution is multiplied by
every applicable multiplier rule and then rounded once with the program's rounding mode.
The breakdown credits a multiplier with the extra points it added (multipliers taken in
rule creation order), so the breakdown always sums to the total. No float anywhere: money
is whole minor units, multipliers are basis points.

The rules given are the rules as of now (never the rules as they were when the order
happened); results carry each rule's revision so history stays explainable.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from zoneinfo import ZoneInfo

from services.points.domain.program import Program, Rounding, round_points
from services.points.domain.rules import (
    MAX_AMOUNT_MINOR,
    MAX_POINTS,
    ONE_X_BPS,
    CustomEventRule,
    EarningRule,
    Limit,
    LimitPeriod,
    Money,
    OrderRule,
    RuleKind,
    TierMultiplierRule,
    TimeWindowMultiplierRule,
    validate_event_type,
)
from shared.errors import InvalidArgument
from shared.validation import Violations

MAX_FUTURE_SKEW = dt.timedelta(minutes=5)  # till clocks drift; beyond this it is a mistake
MAX_ID_LENGTH = 128

# ----------------------------------------------------------------------------------- inputs


@dataclass(frozen=True, kw_only=True)
class OrderLine:
    line_id: str
    sku: str = ""
    categories: tuple[str, ...] = ()
    quantity: int
    unit_price: Money  # before any discount

    @property
    def list_value_minor(self) -> int:
        return self.quantity * self.unit_price.amount_minor


@dataclass(frozen=True, kw_only=True)
class Cart:
    currency_code: str
    lines: tuple[OrderLine, ...] = ()
    channel: str = ""
    store_id: str = ""


@dataclass(frozen=True, kw_only=True)
class Order:
    """An order as ``EarnForOrder`` receives it."""

    order_id: str
    customer_id: str
    amount: Money  # paid for the goods after discounts, without shipping: what earns
    occurred_at: dt.datetime
    cart: Cart | None = None  # without lines the whole amount earns at the base rate

    @property
    def lines(self) -> tuple[OrderLine, ...]:
        return self.cart.lines if self.cart is not None else ()


@dataclass(frozen=True, kw_only=True)
class CustomEvent:
    """An event as ``RecordEvent`` receives it (its free-form properties are not needed)."""

    customer_id: str
    event_type: str
    occurred_at: dt.datetime


@dataclass(frozen=True, kw_only=True)
class TierBenefits:
    """The customer's tier multipliers, as loyalty.tiers.v1 ``TierBenefits`` gives them."""

    tier_name: str = ""
    earning_multiplier_bps: int = 0  # 0 reads as 1x, as in the tiers contract
    event_multiplier_bps: Mapping[str, int] = field(default_factory=dict)

    def multiplier_bps(self, event_type: str | None) -> int:
        """For an order (``event_type`` None) or an event; a listed event type wins."""
        bps = self.earning_multiplier_bps
        if event_type is not None:
            bps = self.event_multiplier_bps.get(event_type, bps)
        return bps or ONE_X_BPS


@dataclass(frozen=True)
class AwardHistory:
    """One customer's previous awards of custom-event rules: rule id -> the ``occurred_at``
    of each awarded event. Caps and cooldowns are evaluated against it."""

    awards: Mapping[str, Sequence[dt.datetime]] = field(default_factory=dict)

    def of_rule(self, rule_id: str) -> Sequence[dt.datetime]:
        return self.awards.get(rule_id, ())


# ---------------------------------------------------------------------------------- results


class SkipReason(enum.Enum):
    """Why a rule, or a whole call, earned nothing (``loyalty.points.v1.SkipReason``)."""

    NO_MATCHING_RULE = "no_matching_rule"
    FREQUENCY_CAP_REACHED = "frequency_cap_reached"
    COOLDOWN_ACTIVE = "cooldown_active"
    BELOW_MINIMUM_ORDER = "below_minimum_order"
    ALL_LINES_EXCLUDED = "all_lines_excluded"
    OUTSIDE_TIME_WINDOW = "outside_time_window"
    OUT_OF_SCOPE = "out_of_scope"
    NO_TIER_MULTIPLIER = "no_tier_multiplier"
    ROUNDED_TO_ZERO = "rounded_to_zero"
    ZERO_AMOUNT = "zero_amount"


@dataclass(frozen=True, kw_only=True)
class Contribution:
    """What one rule added. Base rules: their rounded points (0 only when multipliers lift
    a sub-point base above zero). Multiplier rules: the extra points, negative below 1x."""

    rule_id: str
    rule_name: str
    rule_revision: int
    kind: RuleKind
    points: int
    multiplier_bps: int  # 0 for base rules
    explanation: str


@dataclass(frozen=True, kw_only=True)
class RuleSkip:
    rule_id: str
    rule_name: str
    reason: SkipReason
    explanation: str
    # When the rule can fire again for this customer (cap reset, end of cooldown); None
    # when it never will (lifetime cap) or time does not matter.
    eligible_again_at: dt.datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Earning:
    points: int  # the sum of the contributions' points
    contributions: tuple[Contribution, ...]  # base rules, then multipliers, creation order
    skipped_rules: tuple[RuleSkip, ...]
    no_points_reason: SkipReason | None  # set exactly when points == 0
    explanation: str  # one sentence for the receipt or the cashier


@dataclass(frozen=True, kw_only=True)
class OrderEarning(Earning):
    available_at: dt.datetime | None = None  # end of the pending period, if still ahead


@dataclass(frozen=True, kw_only=True)
class EventEarning(Earning):
    """Points from custom events are available at once."""


# ---------------------------------------------------------------------------- calculators


def earn_for_order(
    program: Program,
    rules: Iterable[EarningRule],
    order: Order,
    *,
    tier_benefits: TierBenefits | None = None,
    now: dt.datetime,
) -> OrderEarning:
    """The points ``order`` earns under the program's current rules.

    Raises ``InvalidArgument`` (reason ``CURRENCY_MISMATCH`` when money is not in the
    program's currency) for a bad order, and when the result would exceed 10^12 points.
    """
    violations = Violations()
    validate_order(order, program, now, violations)
    _raise_if_invalid(violations, program)
    at = order.occurred_at.astimezone(dt.UTC)
    active = [rule for rule in _in_creation_order(rules, program) if rule.is_active]
    bases = [
        _order_base(rule, rule.definition, order)
        for rule in active
        if isinstance(rule.definition, OrderRule)
    ]
    tally = _tally(program, bases, _multipliers(active, None, at, tier_benefits, program))
    _check_points_limit(tally, "amount")
    available_at = _available_at(program, at, now)
    if tally.points:
        explanation = f"{_points(tally.points)} earned"
        if available_at is not None:
            explanation += f", spendable from {_format_date(available_at, program.zone)}"
    else:
        explanation = _no_points(tally, "no earning rule applies to orders")
    return OrderEarning(
        points=tally.points,
        contributions=tally.contributions,
        skipped_rules=tally.skipped,
        no_points_reason=tally.no_points_reason,
        explanation=explanation,
        available_at=available_at if tally.points else None,
    )


def apply_event(
    program: Program,
    rules: Iterable[EarningRule],
    event: CustomEvent,
    history: AwardHistory,
    *,
    tier_benefits: TierBenefits | None = None,
    now: dt.datetime,
) -> EventEarning:
    """Which custom-event rules fire for ``event`` (and what multipliers add), or why none.

    ``history`` holds the customer's earlier awards of the rules for this event type.
    Raises ``InvalidArgument`` for a bad event or a result above 10^12 points.
    """
    violations = Violations()
    validate_event(event, now, violations)
    _raise_if_invalid(violations, program)
    at = event.occurred_at.astimezone(dt.UTC)
    ordered = _in_creation_order(rules, program)
    bases: list[_Base | RuleSkip] = []
    for rule in ordered:
        terms = rule.definition
        if not isinstance(terms, CustomEventRule) or terms.event_type != event.event_type:
            continue
        if rule.is_active:
            awards = history.of_rule(rule.rule_id)
            bases.append(_event_base(rule, terms, at, awards, program.zone))
        else:
            # Listed so "why no points" can say the rule was archived, not just missing.
            archived = f"{rule.display_name} is archived"
            bases.append(_skip(rule, SkipReason.NO_MATCHING_RULE, archived))
    active = [rule for rule in ordered if rule.is_active]
    multipliers = _multipliers(active, event.event_type, at, tier_benefits, program)
    tally = _tally(program, bases, multipliers)
    _check_points_limit(tally, "event_type")
    if tally.points:
        names = ", ".join(
            c.rule_name for c in tally.contributions if c.kind is RuleKind.CUSTOM_EVENT
        )
        explanation = f"{_points(tally.points)} earned: {names}"
    else:
        explanation = _no_points(tally, f"no active rule for event type {event.event_type!r}")
    return EventEarning(
        points=tally.points,
        contributions=tally.contributions,
        skipped_rules=tally.skipped,
        no_points_reason=tally.no_points_reason,
        explanation=explanation,
    )


def needs_tier_benefits(rules: Iterable[EarningRule], event_type: str | None = None) -> bool:
    """Whether an active tier multiplier rule covers an order (``event_type`` None) or an
    event type, i.e. whether the tiers service must be asked before calculating."""
    return any(
        rule.is_active
        and isinstance(rule.definition, TierMultiplierRule)
        and rule.definition.covers(event_type)
        for rule in rules
    )


# ------------------------------------------------------------------------------ base rules


@dataclass(frozen=True)
class _Base:
    """A base rule's exact points before multipliers, and what earned them."""

    rule: EarningRule
    exact: Fraction
    describe: str  # "1 point per €1.00 on €42.50, coffee 2x"


def _order_base(rule: EarningRule, terms: OrderRule, order: Order) -> _Base | RuleSkip:
    amount = order.amount
    if amount.amount_minor == 0:
        return _skip(rule, SkipReason.ZERO_AMOUNT, "Nothing was paid")
    minimum = terms.minimum_order_amount
    if minimum is not None and amount.amount_minor < minimum.amount_minor:
        return _skip(
            rule,
            SkipReason.BELOW_MINIMUM_ORDER,
            f"Order total {format_money(amount)} is below the {format_money(minimum)} minimum",
        )
    share = _earning_share(terms, order.lines)
    if share is None:
        excluded = f"Every line of the order is excluded from {rule.display_name}"
        return _skip(rule, SkipReason.ALL_LINES_EXCLUDED, excluded)
    weight, notes = share
    exact = Fraction(
        amount.amount_minor * terms.points_per_unit * weight.numerator,
        terms.spend_unit.amount_minor * weight.denominator,
    )
    describe = f"{_points(terms.points_per_unit)} per {format_money(terms.spend_unit)}"
    describe += f" on {format_money(amount)}" + "".join(f", {note}" for note in notes)
    return _Base(rule, exact, describe)


def _earning_share(
    terms: OrderRule, lines: Sequence[OrderLine]
) -> tuple[Fraction, list[str]] | None:
    """The multiplier-weighted share of the paid amount that earns (1 = all of it at 1x),
    with notes on exclusions and line multipliers; None when every line is excluded.

    The paid amount is spread over the lines in proportion to their list value, so a
    discount lowers every line alike.
    """
    if not lines:
        return Fraction(1), []
    weights = [line.list_value_minor for line in lines]
    if sum(weights) == 0:  # every line free of charge: spread the amount by units instead
        weights = [line.quantity for line in lines]
    weighted_bps = 0
    notes: list[str] = []
    any_earning = False
    for line, weight in zip(lines, weights, strict=True):
        excluded_by = _exclusion(terms, line)
        if excluded_by is not None:
            notes.append(f"{excluded_by} excluded")
            continue
        any_earning = True
        bps, matched = _line_multiplier(terms, line)
        if matched is not None and bps != ONE_X_BPS:
            notes.append(f"{matched} {format_multiplier(bps)}")
        weighted_bps += weight * bps
    if not any_earning:
        return None
    return Fraction(weighted_bps, sum(weights) * ONE_X_BPS), list(dict.fromkeys(notes))


def _exclusion(terms: OrderRule, line: OrderLine) -> str | None:
    """The SKU or category excluding the line from this rule, if any."""
    if line.sku in terms.excluded_skus:
        return line.sku
    return next((c for c in line.categories if c in terms.excluded_categories), None)


def _line_multiplier(terms: OrderRule, line: OrderLine) -> tuple[int, str | None]:
    """The highest matching line multiplier and what it matched; 1x when none matches."""
    matching = [
        (m.multiplier_bps, m.sku if m.sku is not None else m.category)
        for m in terms.line_multipliers
        if (m.sku is not None and m.sku == line.sku)
        or (m.category is not None and m.category in line.categories)
    ]
    return max(matching, key=lambda match: match[0], default=(ONE_X_BPS, None))


def _event_base(
    rule: EarningRule,
    terms: CustomEventRule,
    at: dt.datetime,
    awards: Sequence[dt.datetime],
    zone: ZoneInfo,
) -> _Base | RuleSkip:
    if terms.frequency_cap is not None:
        capped = _cap_reached(rule, terms.frequency_cap, at, awards, zone)
        if capped is not None:
            return capped
    if terms.cooldown:
        cooling = _cooldown_active(rule, terms.cooldown, at, awards, zone)
        if cooling is not None:
            return cooling
    return _Base(rule, Fraction(terms.points), f"{terms.event_type} event")


_PERIOD_NAMES = {
    LimitPeriod.DAY: "day",
    LimitPeriod.WEEK: "week",
    LimitPeriod.MONTH: "month",
    LimitPeriod.YEAR: "year",
}
_PERIOD_SO_FAR = {
    LimitPeriod.LIFETIME: "",
    LimitPeriod.DAY: " today",
    LimitPeriod.WEEK: " this week",
    LimitPeriod.MONTH: " this month",
    LimitPeriod.YEAR: " this year",
}


def _cap_reached(
    rule: EarningRule,
    cap: Limit,
    at: dt.datetime,
    awards: Sequence[dt.datetime],
    zone: ZoneInfo,
) -> RuleSkip | None:
    start, end = cap.period.bounds(at, zone)
    given = sum(1 for t in awards if (start is None or start <= t) and (end is None or t < end))
    if given < cap.max_count:
        return None
    times = "" if cap.max_count == 1 else f" {given} times"
    if cap.period is LimitPeriod.LIFETIME:
        limit = f"limit {cap.max_count} in total"
    else:
        limit = f"limit {cap.max_count} per {_PERIOD_NAMES[cap.period]}"
    explanation = f"{rule.display_name} already given{times}{_PERIOD_SO_FAR[cap.period]} ({limit})"
    if end is not None:
        explanation += f"; possible again from {format_instant(end, zone)}"
    return _skip(rule, SkipReason.FREQUENCY_CAP_REACHED, explanation, end)


def _cooldown_active(
    rule: EarningRule,
    cooldown: dt.timedelta,
    at: dt.datetime,
    awards: Sequence[dt.datetime],
    zone: ZoneInfo,
) -> RuleSkip | None:
    # "Minimum time between two awards": an award just after ``at`` (an event uploaded
    # late from an offline till) blocks as much as one just before.
    conflicting = [t for t in awards if abs(t - at) < cooldown]
    if not conflicting:
        return None
    until = max(conflicting) + cooldown
    explanation = (
        f"{rule.display_name} is in its {format_duration(cooldown)} cooldown"
        f" until {format_instant(until, zone)}"
    )
    return _skip(rule, SkipReason.COOLDOWN_ACTIVE, explanation, until)


# ------------------------------------------------------------------------------ multipliers


@dataclass(frozen=True)
class _Multiplier:
    rule: EarningRule
    bps: int
    label: str  # "Double-points weekend 2x", "Gold tier 1.5x"


def _multipliers(
    active: Sequence[EarningRule],
    event_type: str | None,
    at: dt.datetime,
    tier: TierBenefits | None,
    program: Program,
) -> list[_Multiplier | RuleSkip]:
    """Every multiplier rule, in creation order: applicable, or skipped with the reason."""
    outcomes: list[_Multiplier | RuleSkip] = []
    for rule in active:
        terms = rule.definition
        if not isinstance(terms, TimeWindowMultiplierRule | TierMultiplierRule):
            continue
        if not terms.covers(event_type):
            target = "orders" if event_type is None else f"{event_type} events"
            not_for = f"{rule.display_name} does not apply to {target}"
            outcomes.append(_skip(rule, SkipReason.OUT_OF_SCOPE, not_for))
        elif isinstance(terms, TimeWindowMultiplierRule):
            outcomes.append(_window_multiplier(rule, terms, at, program.zone))
        else:
            outcomes.append(_tier_multiplier(rule, event_type, tier))
    return outcomes


def _window_multiplier(
    rule: EarningRule, terms: TimeWindowMultiplierRule, at: dt.datetime, zone: ZoneInfo
) -> _Multiplier | RuleSkip:
    if not terms.is_open_at(at):
        window = f"{format_instant(terms.starts_at, zone)} to {format_instant(terms.ends_at, zone)}"
        runs = f"{rule.display_name} runs from {window} only"
        return _skip(rule, SkipReason.OUTSIDE_TIME_WINDOW, runs)
    label = f"{rule.display_name} {format_multiplier(terms.multiplier_bps)}"
    return _Multiplier(rule, terms.multiplier_bps, label)


def _tier_multiplier(
    rule: EarningRule, event_type: str | None, tier: TierBenefits | None
) -> _Multiplier | RuleSkip:
    bps = tier.multiplier_bps(event_type) if tier is not None else ONE_X_BPS
    tier_label = f"{tier.tier_name} tier" if tier is not None and tier.tier_name else ""
    # Per the contract, a tier "without a multiplier above 1x" earns 1x: never less.
    if bps <= ONE_X_BPS:
        whose = f"The {tier_label}" if tier_label else "The customer's tier"
        return _skip(rule, SkipReason.NO_TIER_MULTIPLIER, f"{whose} has no multiplier above 1x")
    label = f"{tier_label or rule.display_name} {format_multiplier(bps)}"
    return _Multiplier(rule, bps, label)


# ---------------------------------------------------------------------------------- tally


@dataclass(frozen=True)
class _Tally:
    points: int
    contributions: tuple[Contribution, ...]
    skipped: tuple[RuleSkip, ...]
    no_points_reason: SkipReason | None
    decisive_skip: RuleSkip | None  # the base-rule skip that explains "no points"


def _tally(
    program: Program,
    base_outcomes: Sequence[_Base | RuleSkip],
    multiplier_outcomes: Sequence[_Multiplier | RuleSkip],
) -> _Tally:
    """Both outcome lists in rule creation order; rounds once per base contribution."""
    multipliers = [m for m in multiplier_outcomes if isinstance(m, _Multiplier)]
    factors = [Fraction(m.bps, ONE_X_BPS) for m in multipliers]
    contributions: list[Contribution] = []
    base_skips: list[RuleSkip] = []
    extras = dict.fromkeys((m.rule.rule_id for m in multipliers), 0)
    for base in base_outcomes:
        if isinstance(base, RuleSkip):
            base_skips.append(base)
            continue
        pieces = _split(base.exact, factors, program.rounding)
        if sum(pieces) == 0:
            base_skips.append(_rounded_to_zero(base, pieces[0]))
            continue
        contributions.append(_base_contribution(base, pieces[0], program.rounding))
        for multiplier, extra in zip(multipliers, pieces[1:], strict=True):
            extras[multiplier.rule.rule_id] += extra
    earned_base = bool(contributions)
    multiplier_skips: list[RuleSkip] = []
    for outcome in multiplier_outcomes:
        if isinstance(outcome, RuleSkip):
            multiplier_skips.append(outcome)
        elif extras[outcome.rule.rule_id]:
            contributions.append(_multiplier_contribution(outcome, extras[outcome.rule.rule_id]))
        else:
            multiplier_skips.append(_added_nothing(outcome, earned_base))
    points = sum(c.points for c in contributions)
    decisive = None if points else _decisive(base_skips)
    no_points_reason = None
    if not points:
        no_points_reason = decisive.reason if decisive else SkipReason.NO_MATCHING_RULE
    return _Tally(
        points=points,
        contributions=tuple(contributions),
        skipped=(*base_skips, *multiplier_skips),
        no_points_reason=no_points_reason,
        decisive_skip=decisive,
    )


def _split(exact: Fraction, factors: Sequence[Fraction], rounding: Rounding) -> list[int]:
    """The rounded base, then the extra points each multiplier adds in turn.

    They sum to the base times every factor rounded once, so rounding never compounds.
    """
    pieces: list[int] = []
    running = exact
    credited = 0
    for factor in (Fraction(1), *factors):
        running *= factor
        rounded = round_points(running, rounding)
        pieces.append(rounded - credited)
        credited = rounded
    return pieces


def _decisive(base_skips: Sequence[RuleSkip]) -> RuleSkip | None:
    """The skip that best explains "no points": an active rule's reason over "archived"."""
    return next(
        (s for s in base_skips if s.reason is not SkipReason.NO_MATCHING_RULE),
        base_skips[0] if base_skips else None,
    )


_ROUNDING_NOTES = {
    Rounding.DOWN: "rounded down",
    Rounding.UP: "rounded up",
    Rounding.HALF_UP: "rounded",
    Rounding.HALF_EVEN: "rounded half to even",
}


def _base_contribution(base: _Base, points: int, rounding: Rounding) -> Contribution:
    explanation = f"{base.describe} = {_points(points)}"
    if base.exact != points:
        explanation += f" ({_ROUNDING_NOTES[rounding]})"
    return Contribution(
        rule_id=base.rule.rule_id,
        rule_name=base.rule.display_name,
        rule_revision=base.rule.revision,
        kind=base.rule.kind,
        points=points,
        multiplier_bps=0,
        explanation=explanation,
    )


def _multiplier_contribution(multiplier: _Multiplier, extra: int) -> Contribution:
    return Contribution(
        rule_id=multiplier.rule.rule_id,
        rule_name=multiplier.rule.display_name,
        rule_revision=multiplier.rule.revision,
        kind=multiplier.rule.kind,
        points=extra,
        multiplier_bps=multiplier.bps,
        explanation=f"{multiplier.label}: {'+' if extra > 0 else '-'}{_points(abs(extra))}",
    )


def _added_nothing(multiplier: _Multiplier, earned_base: bool) -> RuleSkip:
    if earned_base:
        return _skip(
            multiplier.rule,
            SkipReason.ROUNDED_TO_ZERO,
            f"{multiplier.label} added less than one point",
        )
    nothing = f"{multiplier.label} had no points to multiply"
    return _skip(multiplier.rule, SkipReason.NO_MATCHING_RULE, nothing)


def _rounded_to_zero(base: _Base, rounded_base: int) -> RuleSkip:
    if rounded_base:
        text = f"{base.describe} = {_points(rounded_base)}, 0 after multipliers"
    else:
        text = f"{base.describe} = less than one point"
    return _skip(base.rule, SkipReason.ROUNDED_TO_ZERO, text)


def _skip(
    rule: EarningRule,
    reason: SkipReason,
    explanation: str,
    eligible_again_at: dt.datetime | None = None,
) -> RuleSkip:
    return RuleSkip(
        rule_id=rule.rule_id,
        rule_name=rule.display_name,
        reason=reason,
        explanation=explanation,
        eligible_again_at=eligible_again_at,
    )


def _no_points(tally: _Tally, without_rules: str) -> str:
    decisive = tally.decisive_skip
    return f"No points: {decisive.explanation if decisive else without_rules}"


def _in_creation_order(rules: Iterable[EarningRule], program: Program) -> list[EarningRule]:
    # Creation order decides how multipliers are credited; the id breaks ties stably.
    own = (rule for rule in rules if rule.program_id == program.program_id)
    return sorted(own, key=lambda rule: (rule.created_at, rule.rule_id))


def _available_at(program: Program, at: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    if not program.pending_seconds:
        return None
    available_at = program.spendable_at(at)
    return available_at if available_at > now else None


def _check_points_limit(tally: _Tally, field: str) -> None:
    largest = max((abs(c.points) for c in tally.contributions), default=0)
    if max(largest, tally.points) > MAX_POINTS:
        raise InvalidArgument.for_field(
            field, f"would earn more than {MAX_POINTS:,} points at once", "OUT_OF_RANGE"
        )


# ------------------------------------------------------------------------------ validation


def validate_order(
    order: Order, program: Program, now: dt.datetime, violations: Violations
) -> None:
    """Field paths are those of ``EarnForOrderRequest``."""
    _check_id(order.order_id, "order_id", violations)
    _check_id(order.customer_id, "customer.customer_id", violations)
    _check_money(order.amount, program.currency_code, "amount", violations)
    if order.cart is not None:
        _check_currency(order.cart.currency_code, program.currency_code, "cart", violations)
        seen: set[str] = set()
        for index, line in enumerate(order.cart.lines):
            path = f"cart.lines[{index}]"
            if violations.require(line.line_id, f"{path}.line_id"):
                violations.check(
                    line.line_id not in seen,
                    f"{path}.line_id",
                    "must be unique within the cart",
                    "DUPLICATE",
                )
                seen.add(line.line_id)
            violations.check(
                1 <= line.quantity <= MAX_AMOUNT_MINOR,
                f"{path}.quantity",
                f"must be between 1 and {MAX_AMOUNT_MINOR}",
                "OUT_OF_RANGE",
            )
            _check_money(line.unit_price, program.currency_code, f"{path}.unit_price", violations)
    _check_occurred_at(order.occurred_at, now, violations)


def validate_event(event: CustomEvent, now: dt.datetime, violations: Violations) -> None:
    """Field paths are those of ``RecordEventRequest``."""
    _check_id(event.customer_id, "customer.customer_id", violations)
    validate_event_type(event.event_type, "event_type", violations)
    _check_occurred_at(event.occurred_at, now, violations)


def _check_id(value: str, field: str, violations: Violations) -> None:
    if violations.require(value, field):
        violations.check(
            len(value) <= MAX_ID_LENGTH and value.isprintable(),
            field,
            f"must be 1 to {MAX_ID_LENGTH} printable characters",
            "INVALID_FORMAT",
        )


def _check_money(money: Money, currency_code: str, field: str, violations: Violations) -> None:
    _check_currency(money.currency_code, currency_code, field, violations)
    violations.check(
        0 <= money.amount_minor <= MAX_AMOUNT_MINOR,
        f"{field}.amount_minor",
        f"must be between 0 and {MAX_AMOUNT_MINOR}",
        "OUT_OF_RANGE",
    )


def _check_currency(code: str, program_code: str, field: str, violations: Violations) -> None:
    violations.check(
        code == program_code,
        f"{field}.currency_code",
        f"must be the program's currency {program_code}",
        "CURRENCY_MISMATCH",
    )


def _check_occurred_at(occurred_at: dt.datetime, now: dt.datetime, violations: Violations) -> None:
    if violations.check(
        occurred_at.tzinfo is not None,
        "occurred_at",
        "must be a time-zone-aware instant",
        "INVALID_FORMAT",
    ):
        violations.check(
            occurred_at <= now + MAX_FUTURE_SKEW,
            "occurred_at",
            "must not be more than 5 minutes in the future",
            "OUT_OF_RANGE",
        )


def _raise_if_invalid(violations: Violations, program: Program) -> None:
    mismatch = next((v for v in violations.items if v.reason == "CURRENCY_MISMATCH"), None)
    if mismatch is not None:
        raise InvalidArgument(
            f"{mismatch.field}: {mismatch.description}",
            violations=violations.items,
            reason="CURRENCY_MISMATCH",
            metadata={"program_currency": program.currency_code},
        )
    violations.raise_if_any()


# ------------------------------------------------------------------------------ formatting

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
_NO_MINOR_UNIT = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV"}
    | {"XAF", "XOF", "XPF"}
)
_THREE_DIGIT_MINOR_UNIT = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_money(money: Money) -> str:
    """ "$42.50", "€1,234.00", "¥500", "12.50 CHF": exact, from the minor units."""
    code = money.currency_code
    digits = 0 if code in _NO_MINOR_UNIT else 3 if code in _THREE_DIGIT_MINOR_UNIT else 2
    whole, minor = divmod(abs(money.amount_minor), 10**digits)
    number = f"{whole:,}" + (f".{minor:0{digits}d}" if digits else "")
    sign = "-" if money.amount_minor < 0 else ""
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code}"


def format_multiplier(bps: int) -> str:
    """Basis points as a factor: 20000 -> "2x", 15000 -> "1.5x", 12345 -> "1.2345x"."""
    whole, fraction = divmod(bps, ONE_X_BPS)
    return f"{whole}.{fraction:04d}".rstrip("0").rstrip(".") + "x"


def format_instant(instant: dt.datetime, zone: ZoneInfo) -> str:
    """ "15 Apr 2025 00:00 CEST" in the program's zone (seconds only when not zero)."""
    local = instant.astimezone(zone)
    clock = f"{local.hour:02d}:{local.minute:02d}"
    if local.second:
        clock += f":{local.second:02d}"
    return f"{_format_date(instant, zone)} {clock} {local.tzname()}"


def format_duration(duration: dt.timedelta) -> str:
    """Whole units, largest first: "7 days", "1 day 12 hours", "1 hour 30 minutes"."""
    remaining = duration.days * 86_400 + duration.seconds
    parts: list[str] = []
    for size, unit in ((86_400, "day"), (3_600, "hour"), (60, "minute"), (1, "second")):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {unit}" + ("s" if count != 1 else ""))
    return " ".join(parts) or "0 seconds"


def _format_date(instant: dt.datetime, zone: ZoneInfo) -> str:
    local = instant.astimezone(zone)
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year}"


def _points(count: int) -> str:
    return f"{count:,} point" + ("" if count == 1 else "s")
