"""Rewards catalog use cases, each inside the caller's unit of work.

A redemption is one transaction: debit the points (the account row lock serializes the
customer), count the per-customer limit, take a unit of stock, obtain the voucher code,
record the redemption; the caller commits it together with the idempotency key. Any
failure rolls all of it back, so no points are spent and no stock is taken.

Vouchers are the one effect outside our database, and the order is chosen so that a
voucher is never issued without the points being spent nor spent without a voucher:
everything the database can refuse (points, limit) is done first; promotions is called
last, *before* commit, with a request id derived from this call's ``request_id``; then
the rows are written and committed. If promotions fails, we roll back. The window left
open: promotions issued the code and we died (or the database failed) before commit —
the customer holds an unpaid code until the client retries, and the retry (same
request_id, hence same derived id) gets the *same* code back and commits the debit. We
keep that side of the window on purpose: the opposite order (commit, then issue) would
leave members short of points without a voucher, which is what a ledger must never do,
and issuing from an outbox after commit could not return the code in the response. The
customer's account row stays locked during the call, bounded by the client deadline;
only that customer's other writes wait (on SQLite, which locks the whole database per
transaction, every writer waits: acceptable for the embedded single-node mode).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace

from services.points.application import ledger
from services.points.application.programs import program_not_found
from services.points.domain.ledger import Balance, Entry
from services.points.domain.ports import PointsUnitOfWork, VoucherIssuer
from services.points.domain.program import Program
from services.points.domain.rewards import (
    PaymentOption,
    PhysicalItemReward,
    Redemption,
    Reward,
    RewardKind,
    VoucherReward,
    check_reward_currency,
    limit_period_key,
    out_of_stock,
    redemption_limit_reached,
    reward_not_found,
    validate_reward,
)
from shared.clock import Clock
from shared.errors import Aborted
from shared.ids import IdGenerator
from shared.validation import Violations


async def _program(uow: PointsUnitOfWork, program_id: str) -> Program:
    program = await uow.programs.get(program_id)
    if program is None:
        raise program_not_found(program_id)
    return program


async def create_reward(
    uow: PointsUnitOfWork, draft: Reward, *, clock: Clock, ids: IdGenerator
) -> Reward:
    program = await _program(uow, draft.program_id)
    reward = replace(
        draft,
        reward_id=ids.new_id("rwd"),
        display_name=draft.display_name.strip(),
        created_at=clock.now(),
    )
    violations = Violations()
    validate_reward(reward, violations)
    violations.raise_if_any()
    check_reward_currency(reward, program.currency_code)
    await uow.rewards.add(reward)
    return reward


@dataclass(frozen=True)
class RewardFilter:
    kinds: frozenset[RewardKind] = frozenset()  # empty: every kind
    in_stock_only: bool = False


async def list_rewards(
    uow: PointsUnitOfWork,
    program_id: str,
    reward_filter: RewardFilter,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> tuple[list[Reward], bool]:
    """One page of the catalog, oldest first, and whether more follow."""
    await _program(uow, program_id)
    page = await uow.rewards.page(
        program_id,
        after=after,
        limit=limit + 1,
        kinds=reward_filter.kinds,
        in_stock_only=reward_filter.in_stock_only,
    )
    return page[:limit], len(page) > limit


@dataclass(frozen=True)
class RedeemedReward:
    redemption: Redemption
    entry: Entry  # the REDEEM entry
    balance: Balance  # right after the redemption


def voucher_request_id(program_id: str, request_id: str) -> str:
    """IssueVoucher's request id for one RedeemReward call: the same for every retry of
    the call, and apart from any id other callers of promotions choose themselves."""
    digest = hashlib.sha256(f"{program_id}\0{request_id}".encode()).hexdigest()
    return f"points-reward-{digest[:48]}"


async def redeem_reward(
    uow: PointsUnitOfWork,
    ctx: ledger.Context,
    reward_id: str,
    option: PaymentOption,
    order_id: str,
    vouchers: VoucherIssuer,
) -> RedeemedReward:
    program = await _program(uow, ctx.program_id)
    reward = await uow.rewards.get(ctx.program_id, reward_id)
    if reward is None:
        raise reward_not_found(reward_id)
    price = reward.price(option, program.currency_code)
    if not reward.in_stock:  # the early answer; take_stock below is the one that decides
        raise out_of_stock(reward)
    entry, balance = await ledger.redeem(
        uow, ctx, price.points, f"Reward: {reward.display_name}", order_id, reward_id=reward_id
    )
    limit = reward.per_customer_limit
    if limit is not None:
        period = limit_period_key(limit, ctx.now, program.zone)
        counted = await uow.redemptions.count_towards_limit(
            ctx.program_id, ctx.customer_id, reward_id, period, limit.max_count
        )
        if not counted:
            raise redemption_limit_reached(reward, limit)
    # The catalog's row is the one all customers contend for: lock it last and briefly.
    if isinstance(reward.item, PhysicalItemReward) and (
        await uow.rewards.take_stock(ctx.program_id, reward_id) is None
    ):
        raise out_of_stock(reward)
    voucher_code = ""
    if isinstance(reward.item, VoucherReward):
        voucher_code = await _issue_voucher(uow, ctx, reward.item, reward_id, vouchers)
    redemption = Redemption(
        redemption_id=ctx.ids.new_id("rdm"),
        program_id=ctx.program_id,
        customer_id=ctx.customer_id,
        reward_id=reward_id,
        kind=reward.kind,
        payment_option=option,
        points_spent=price.points,
        cash_due=price.cash,
        voucher_code=voucher_code,
        entry_id=entry.entry_id,
        order_id=order_id,
        request_id=ctx.request_id,
        created_at=ctx.now,
    )
    await uow.redemptions.add(redemption)
    return RedeemedReward(redemption, entry, balance)


async def _issue_voucher(
    uow: PointsUnitOfWork,
    ctx: ledger.Context,
    voucher: VoucherReward,
    reward_id: str,
    vouchers: VoucherIssuer,
) -> str:
    # A request id already answered is replayed (or refused as reused) by the idempotency
    # layer once this call fails. Failing before promotions is asked keeps a reused id
    # from issuing a code that our rollback would leave unpaid.
    if await uow.redemptions.request_answered(ctx.program_id, ctx.request_id):
        raise Aborted("This request was already answered.", reason="REQUEST_ALREADY_ANSWERED")
    return await vouchers.issue(
        request_id=voucher_request_id(ctx.program_id, ctx.request_id),
        campaign_id=voucher.campaign_id,
        program_id=ctx.program_id,
        customer_id=ctx.customer_id,
        # Deterministic too: a retry must send promotions the very same payload.
        source_reference=f"points reward {reward_id}, request {ctx.request_id}",
    )
