"""Refunds: the share of an order a refund covers, and the points that share moves.

Pure arithmetic on what was recorded about an order; no I/O.

The share refunded so far is never stored as a rounded number. It is derived, exactly,
from what the refunds covered: the amount refunded by amount over the order's amount, plus
the list value of the units refunded by line over the list value of all its lines (capped
at 1), or exactly 1 once a refund completed the order. A line's list value is its quantity
times its unit price before discounts: the paid ``amount`` is after discounts and we do
not know how they were spread over the lines, so the lines share it in proportion to their
list value (and, should every line be free, in proportion to their units).

Points follow the share cumulatively: once the share is S, the order has given back
``round(earned * S)`` points in total (taken back, or reported as not recovered) and
restored ``round(spent * S)``, rounded with the program's rounding mode. Each refund moves
the difference to what earlier refunds moved, so rounding never accumulates, and the
refund that brings S to 1 moves exactly what is left.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from services.points.domain.program import Program, RefundPolicy, round_points
from services.points.domain.rules import Money
from shared.errors import Aborted, FailedPrecondition, FieldViolation, InvalidArgument, NotFound

ONE = Fraction(1)

# ---------------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class OrderedLine:
    """A line of an order as ``EarnForOrder`` received it."""

    line_id: str
    quantity: int
    unit_price_minor: int  # before any discount


@dataclass(frozen=True)
class Refunded:
    """What an order's refunds have covered and moved so far."""

    amount_minor: int = 0  # refunded by amount
    units: Mapping[str, int] = field(default_factory=dict)  # refunded by line: id -> units
    full: bool = False  # a refund completed the order
    clawed_back: int = 0  # earned points taken back (pending and available)
    not_recovered: int = 0  # earned points the refund policy let the customer keep
    restored: int = 0  # spent points given back


@dataclass(frozen=True)
class OrderRecord:
    """What the ledger knows about one order of one customer, recorded as it happened."""

    program_id: str
    customer_id: str
    order_id: str
    amount: Money | None = None  # None: the order never earned (points were only spent)
    lines: tuple[OrderedLine, ...] | None = None  # None: earned without lines, or never
    points_earned: int = 0  # the sum of the order's EARN entries
    pending_lot_id: str | None = None  # the lot holding the points while they are pending
    points_spent: int = 0  # by Redeem, CaptureHold and RedeemReward calls naming the order
    refunded: Refunded = field(default_factory=Refunded)

    @property
    def moved_points(self) -> bool:
        return bool(self.points_earned or self.points_spent)


# --------------------------------------------------------------------------------- scopes


@dataclass(frozen=True)
class FullRefund:
    """The whole order, or all that earlier partial refunds left of it."""


@dataclass(frozen=True)
class AmountRefund:
    amount: Money


@dataclass(frozen=True)
class LineRefund:
    line_id: str
    quantity: int


@dataclass(frozen=True)
class LinesRefund:
    lines: tuple[LineRefund, ...]  # each line id at most once


RefundScope = FullRefund | AmountRefund | LinesRefund


@dataclass(frozen=True)
class RefundRecord:
    """The audit trail of one refund of an order."""

    refund_id: str
    scope: RefundScope
    clawed_back: int
    not_recovered: int
    restored: int
    order_fully_refunded: bool
    reason: str
    request_id: str


# ------------------------------------------------------------------------------ the share


def _line_share(lines: Sequence[OrderedLine], units: Mapping[str, int]) -> Fraction:
    weights = {line.line_id: line.unit_price_minor for line in lines}
    if not any(weights.values()):  # every line free: each unit weighs the same
        weights = dict.fromkeys(weights, 1)
    total = sum(line.quantity * weights[line.line_id] for line in lines)
    return Fraction(sum(count * weights[line_id] for line_id, count in units.items()), total)


def raw_share(order: OrderRecord, refunded: Refunded) -> Fraction:
    """The share of ``order`` that ``refunded`` covers, exact and not capped at 1."""
    if refunded.full:
        return ONE
    share = Fraction(0)
    if refunded.amount_minor:
        assert order.amount is not None, "only orders with a known amount are refunded by it"
        share += Fraction(refunded.amount_minor, order.amount.amount_minor)
    if refunded.units:
        assert order.lines is not None, "only orders with known lines are refunded by line"
        share += _line_share(order.lines, refunded.units)
    return share


def refundable_amount_minor(order: OrderRecord) -> int:
    """What is left to refund of the order's amount, in whole minor units (rounded up, so
    refunding it completes an order that line refunds left at a fraction of a cent)."""
    if order.amount is None:
        return 0
    left = order.amount.amount_minor * (ONE - min(ONE, raw_share(order, order.refunded)))
    return math.ceil(left)


# ---------------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class RefundPlan:
    covered: Refunded  # the order's refunds including this one; points not yet settled
    share: Fraction  # the cumulative share after this refund, at most 1
    clawback: int  # earned points this refund takes back or reports as not recovered
    restore: int  # spent points this refund gives back

    def settle(self, clawback: Clawback) -> Refunded:
        """The order's refund state once this refund moved its points."""
        return replace(
            self.covered,
            clawed_back=self.covered.clawed_back + clawback.taken,
            not_recovered=self.covered.not_recovered + clawback.not_recovered,
            restored=self.covered.restored + self.restore,
        )


def plan_refund(order: OrderRecord, scope: RefundScope, program: Program) -> RefundPlan:
    """What this refund covers and how many points it moves.

    Raises ``ORDER_FULLY_REFUNDED``, ``ORDER_AMOUNT_UNKNOWN``, ``ORDER_LINES_UNKNOWN``,
    ``UNKNOWN_LINE`` or ``REFUND_EXCEEDS_ORDER``; the currency is checked before
    (``check_refund_currency``).
    """
    done = order.refunded
    if done.full:
        raise order_fully_refunded(order.order_id)
    if isinstance(scope, FullRefund):
        covered = replace(done, full=True)
    elif isinstance(scope, AmountRefund):
        covered = _cover_amount(order, scope.amount.amount_minor)
    else:
        covered = _cover_lines(order, scope.lines)
    share = min(ONE, raw_share(order, covered))
    covered = replace(covered, full=share == ONE)
    # max(0, …): the program's rounding mode may change between two refunds of an order.
    given_back = round_points(order.points_earned * share, program.rounding)
    restored = round_points(order.points_spent * share, program.rounding)
    return RefundPlan(
        covered=covered,
        share=share,
        clawback=max(0, given_back - done.clawed_back - done.not_recovered),
        restore=max(0, restored - done.restored),
    )


def _cover_amount(order: OrderRecord, amount_minor: int) -> Refunded:
    if order.amount is None:
        raise order_amount_unknown(order.order_id)
    refundable = refundable_amount_minor(order)
    if amount_minor > refundable:
        raise refund_exceeds_order(
            f"The refund exceeds what is left of order {order.order_id}: "
            f"{refundable} minor units can still be refunded.",
            refundable,
        )
    return replace(order.refunded, amount_minor=order.refunded.amount_minor + amount_minor)


def _cover_lines(order: OrderRecord, refunds: Sequence[LineRefund]) -> Refunded:
    if order.amount is None:
        raise order_amount_unknown(order.order_id)
    if order.lines is None:
        raise order_lines_unknown(order.order_id)
    quantities = {line.line_id: line.quantity for line in order.lines}
    unknown = [(i, r.line_id) for i, r in enumerate(refunds) if r.line_id not in quantities]
    if unknown:
        raise unknown_line(unknown)
    units = dict(order.refunded.units)
    for refund in refunds:
        left = quantities[refund.line_id] - units.get(refund.line_id, 0)
        if refund.quantity > left:
            raise refund_exceeds_order(
                f"Line {refund.line_id} of order {order.order_id} has {left} units left to "
                f"refund, not {refund.quantity}.",
                refundable_amount_minor(order),
                {"line_id": refund.line_id, "refundable_quantity": str(left)},
            )
        units[refund.line_id] = units.get(refund.line_id, 0) + refund.quantity
    covered = replace(order.refunded, units=units)
    # Only possible after refunds by amount: together they would refund more than the order.
    if raw_share(order, covered) > ONE:
        raise refund_exceeds_order(
            f"Order {order.order_id} was refunded by amount already; these lines exceed "
            "what is left of it.",
            refundable_amount_minor(order),
        )
    return covered


# ------------------------------------------------------------------------------ clawbacks


@dataclass(frozen=True)
class Clawback:
    from_pending: int
    from_available: int
    not_recovered: int

    @property
    def taken(self) -> int:
        return self.from_pending + self.from_available


def split_clawback(points: int, *, pending: int, available: int, policy: RefundPolicy) -> Clawback:
    """Take ``points`` from the order's ``pending`` points first, then as ``policy`` allows
    from the ``available`` balance; the rest is not recovered."""
    from_pending = min(points, pending)
    rest = points - from_pending
    if policy is RefundPolicy.PENDING_ONLY:
        from_available = 0
    elif policy is RefundPolicy.WITHIN_AVAILABLE:
        from_available = min(rest, max(0, available))
    else:  # ALLOW_NEGATIVE: the balance may go below zero, later earnings pay the debt
        from_available = rest
    return Clawback(from_pending, from_available, rest - from_available)


# --------------------------------------------------------------------------------- errors


def check_refund_currency(scope: RefundScope, currency_code: str) -> None:
    if isinstance(scope, AmountRefund) and scope.amount.currency_code != currency_code:
        description = f"must be the program's currency {currency_code}"
        raise InvalidArgument(
            f"amount.currency_code: {description}",
            violations=[FieldViolation("amount.currency_code", description, "CURRENCY_MISMATCH")],
            reason="CURRENCY_MISMATCH",
            metadata={"program_currency": currency_code},
        )


def order_not_found(order_id: str) -> NotFound:
    return NotFound(
        f"Order {order_id} neither earned nor spent points for this customer.",
        reason="ORDER_NOT_FOUND",
        metadata={"order_id": order_id},
    )


def order_fully_refunded(order_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"Order {order_id} is already fully refunded.",
        reason="ORDER_FULLY_REFUNDED",
        metadata={"order_id": order_id},
    )


def order_amount_unknown(order_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"Order {order_id} never earned points, so its amount is unknown; refund it in full.",
        reason="ORDER_AMOUNT_UNKNOWN",
        metadata={"order_id": order_id},
    )


def order_lines_unknown(order_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"Order {order_id} was earned without lines; refund it by amount or in full.",
        reason="ORDER_LINES_UNKNOWN",
        metadata={"order_id": order_id},
    )


def unknown_line(unknown: Sequence[tuple[int, str]]) -> InvalidArgument:
    """``unknown``: (index in the request, line id) of each line the order does not have."""
    violations = [
        FieldViolation(
            f"lines.lines[{index}].line_id", "is not a line of the order", "UNKNOWN_LINE"
        )
        for index, _ in unknown
    ]
    first = unknown[0][1]
    return InvalidArgument(
        f"The order has no line {first}.",
        violations=violations,
        reason="UNKNOWN_LINE",
        metadata={"line_id": first},
    )


def refund_exceeds_order(
    message: str, refundable_minor: int, details: Mapping[str, str] | None = None
) -> FailedPrecondition:
    return FailedPrecondition(
        message,
        reason="REFUND_EXCEEDS_ORDER",
        metadata={"refundable_amount_minor": str(refundable_minor), **(details or {})},
    )


def refund_already_applied(order_id: str, refund_id: str) -> Aborted:
    # Through the API this never reaches a client: the refund's idempotency key was stored
    # with it, so the retry that finds the refund replays the stored response instead.
    return Aborted(
        f"Refund {refund_id} of order {order_id} was already applied.",
        reason="REFUND_ALREADY_APPLIED",
        metadata={"order_id": order_id, "refund_id": refund_id},
    )
