"""Refunding an order (``ReverseOrder``), inside the caller's unit of work.

A refund locks the customer's account row first, like every ledger mutation, so refunds
of one order (and spending on it) run one after the other and each sees what the
previous one committed. It then moves points in two steps, each one atomic statement on
the account:

1. restore: spent points come back as a new lot with a fresh expiry (``ledger.credit``,
   which pays a debt first) and lifetime_spent goes down;
2. claw back: earned points are taken from the order's pending lot first, then from the
   available balance as the refund policy allows; lifetime_earned goes down by what was
   taken. What the policy does not allow is reported as not recovered.

Restoring first lets a refund that both gives back and takes back net out: a customer
who spent an order's earned points on the same order has exactly what to give back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from fractions import Fraction

from services.points.application import ledger
from services.points.application.programs import program_not_found
from services.points.domain.ledger import (
    Account,
    Balance,
    Delta,
    Entry,
    EntryType,
    Lot,
    Take,
    TierActivity,
    allocate,
    before,
    customer_not_found,
    spendable_backing,
    summarize,
)
from services.points.domain.ports import PointsUnitOfWork
from services.points.domain.program import Program
from services.points.domain.refunds import (
    Clawback,
    OrderRecord,
    RefundPlan,
    RefundRecord,
    RefundScope,
    check_refund_currency,
    order_not_found,
    plan_refund,
    raw_share,
    refund_already_applied,
    split_clawback,
)

NO_CHANGE = Delta(entries=0)


@dataclass(frozen=True)
class Refund:
    order_id: str
    refund_id: str
    scope: RefundScope
    reason: str = ""

    @property
    def entry_reason(self) -> str:
        return self.reason or f"Refund {self.refund_id} of order {self.order_id}"


@dataclass(frozen=True)
class RefundOutcome:
    clawback: Clawback
    restored: int
    entries: list[Entry]  # the restore, then the clawback; each only when non-zero
    balance: Balance  # right after the refund
    order_fully_refunded: bool


async def reverse_order(
    uow: PointsUnitOfWork, ctx: ledger.Context, refund: Refund
) -> RefundOutcome:
    program = await uow.programs.get(ctx.program_id)
    if program is None:
        raise program_not_found(ctx.program_id)
    check_refund_currency(refund.scope, program.currency_code)
    account = await uow.accounts.apply(ctx.program_id, ctx.customer_id, NO_CHANGE, ctx.now)
    if account is None:
        raise customer_not_found(ctx.program_id, ctx.customer_id)
    order = await uow.orders.get(ctx.program_id, ctx.customer_id, refund.order_id)
    if order is None or not order.moved_points:
        raise order_not_found(refund.order_id)
    # A concurrent twin of this refund (another request_id) committed while we waited for
    # the lock; failing lets the idempotency layer replay its response.
    if await uow.orders.has_refund(
        ctx.program_id, ctx.customer_id, refund.order_id, refund.refund_id
    ):
        raise refund_already_applied(refund.order_id, refund.refund_id)
    plan = plan_refund(order, refund.scope, program)
    entries: list[Entry] = []
    if plan.restore:
        entries, account = await _restore(uow, ctx, program, refund, plan.restore)
    clawback, taken, account = await _claw_back(
        uow, ctx, program, order, refund, plan.clawback, account
    )
    entries += taken
    settled = plan.settle(clawback)
    record = RefundRecord(
        refund_id=refund.refund_id,
        scope=refund.scope,
        clawed_back=clawback.taken,
        not_recovered=clawback.not_recovered,
        restored=plan.restore,
        order_fully_refunded=settled.full,
        reason=refund.reason,
        request_id=ctx.request_id,
    )
    await uow.orders.record_refund(replace(order, refunded=settled), record, ctx.now)
    await uow.events.tier_activity(_refund_activity(ctx, order, refund, plan, clawback))
    lots = await uow.lots.open_lots(ctx.program_id, ctx.customer_id)
    return RefundOutcome(clawback, plan.restore, entries, summarize(account, lots), settled.full)


async def _restore(
    uow: PointsUnitOfWork, ctx: ledger.Context, program: Program, refund: Refund, points: int
) -> tuple[list[Entry], Account]:
    move = ledger.Movement(
        EntryType.REVERSE,
        available=points,
        reason=refund.entry_reason,
        order_id=refund.order_id,
        refund_id=refund.refund_id,
        expires_at=program.expires_at(ctx.now),
    )
    return await ledger.credit(
        uow,
        ctx,
        program,
        [move],
        occurred_at=ctx.now,  # a fresh expiry: the customer gets the points back today
        pending=False,
        earned=False,
        order_id=refund.order_id,
        spent=-points,
    )


async def _claw_back(
    uow: PointsUnitOfWork,
    ctx: ledger.Context,
    program: Program,
    order: OrderRecord,
    refund: Refund,
    points: int,
    account: Account,
) -> tuple[Clawback, list[Entry], Account]:
    lots = await uow.lots.open_lots(ctx.program_id, ctx.customer_id)
    pending_lot = _pending_lot(lots, order.pending_lot_id)
    clawback = split_clawback(
        points,
        pending=0 if pending_lot is None else pending_lot.remaining,
        available=account.available,
        policy=program.refund_policy,
    )
    if not clawback.taken:
        return clawback, [], account
    delta = Delta(
        available=-clawback.from_available,
        pending=-clawback.from_pending,
        earned=-clawback.taken,
    )
    after = await uow.accounts.apply(ctx.program_id, ctx.customer_id, delta, ctx.now)
    assert after is not None, "the account is locked by this transaction"
    takes: list[Take] = []
    if pending_lot is not None and clawback.from_pending:
        takes.append(Take(pending_lot.lot_id, clawback.from_pending))
    # The spendable lots back max(0, available + held): below zero the balance is a debt
    # backed by nothing, so the lots give only what they stop backing.
    unbacked = spendable_backing(before(after, delta)) - spendable_backing(after)
    takes += allocate((lot for lot in lots if lot.available_at is None), unbacked)
    await uow.lots.take(takes)
    move = ledger.Movement(
        EntryType.REVERSE,
        available=-clawback.from_available,
        pending=-clawback.from_pending,
        reason=refund.entry_reason,
        order_id=refund.order_id,
        refund_id=refund.refund_id,
    )
    return clawback, await ledger._record(uow, after, delta, [move], ctx), after


def _pending_lot(lots: list[Lot], lot_id: str | None) -> Lot | None:
    """The order's lot if its points are still pending (activation makes them available)."""
    return next(
        (lot for lot in lots if lot.lot_id == lot_id and lot.available_at is not None), None
    )


def _refund_digest(refund: Refund) -> str:
    # Order and refund ids are up to 128 characters each; a source id is at most 200.
    return hashlib.sha256(f"{refund.order_id}\0{refund.refund_id}".encode()).hexdigest()


def _refund_activity(
    ctx: ledger.Context, order: OrderRecord, refund: Refund, plan: RefundPlan, clawback: Clawback
) -> TierActivity:
    """What the refund takes off the customer's qualifying activity: the points the
    refunded share earned (recovered or not) and, when the amount is known, the money —
    as the difference of rounded cumulative targets, so the refunds of an order add up to
    exactly its amount."""
    spend = 0
    if order.amount is not None:
        before = min(raw_share(order, order.refunded), Fraction(1))
        total = order.amount.amount_minor
        spend = round(total * plan.share) - round(total * before)
    return TierActivity(
        program_id=ctx.program_id,
        customer_id=ctx.customer_id,
        source_id=f"refund:{_refund_digest(refund)}",
        occurred_at=ctx.now,
        points=-(clawback.taken + clawback.not_recovered),
        spend_minor=-spend,
        currency_code=order.amount.currency_code if order.amount is not None else "",
    )
