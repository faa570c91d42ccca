"""SQL for the rewards catalog and redemptions. Repositories never commit.

Stock and per-customer limits are single conditional statements: the database decides,
row lock by row lock, which of many concurrent redemptions get the last unit or the last
allowed redemption; nothing is read first and written later.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.points.domain.rewards import (
    CharityDonationReward,
    PhysicalItemReward,
    PointsPlusCash,
    Redemption,
    Reward,
    RewardItem,
    RewardKind,
    VoucherReward,
)
from services.points.domain.rules import Limit, LimitPeriod, Money
from services.points.storage.reward_tables import reward_limit_counts, reward_redemptions, rewards
from services.points.storage.tables import idempotency_keys
from shared.db import after_position


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


# ------------------------------------------------------------------------------- rewards


def _details_json(item: RewardItem) -> dict[str, Any]:
    if isinstance(item, VoucherReward):
        return {"campaign_id": item.campaign_id}
    if isinstance(item, PhysicalItemReward):
        return {"sku": item.sku}
    donation = item.donation
    return {
        "charity_id": item.charity_id,
        "charity_name": item.charity_name,
        "donation": {
            "currency_code": donation.currency_code,
            "amount_minor": donation.amount_minor,
        },
    }


def _item(kind: RewardKind, details: dict[str, Any], stock: int | None) -> RewardItem:
    if kind is RewardKind.VOUCHER:
        return VoucherReward(campaign_id=details["campaign_id"])
    if kind is RewardKind.PHYSICAL_ITEM:
        assert stock is not None, "a physical item has a stock"
        return PhysicalItemReward(sku=details["sku"], stock=stock)
    donation = details["donation"]
    return CharityDonationReward(
        charity_id=details["charity_id"],
        charity_name=details["charity_name"],
        donation=Money(donation["currency_code"], donation["amount_minor"]),
    )


def _reward_row(reward: Reward) -> dict[str, Any]:
    price, limit, item = reward.points_plus_cash, reward.per_customer_limit, reward.item
    return {
        "reward_id": reward.reward_id,
        "program_id": reward.program_id,
        "display_name": reward.display_name,
        "description": reward.description,
        "kind": reward.kind.value,
        "points_cost": reward.points_cost,
        "cash_points": None if price is None else price.points,
        "cash_currency": None if price is None else price.cash.currency_code,
        "cash_amount_minor": None if price is None else price.cash.amount_minor,
        "limit_max_count": None if limit is None else limit.max_count,
        "limit_period": None if limit is None else limit.period.value,
        "stock": item.stock if isinstance(item, PhysicalItemReward) else None,
        "details": _details_json(item),
        "created_at": reward.created_at,
    }


def _reward(row: Any) -> Reward:
    price = None
    if row.cash_points is not None:
        price = PointsPlusCash(row.cash_points, Money(row.cash_currency, row.cash_amount_minor))
    limit = None
    if row.limit_max_count is not None:
        limit = Limit(row.limit_max_count, LimitPeriod(row.limit_period))
    return Reward(
        reward_id=row.reward_id,
        program_id=row.program_id,
        display_name=row.display_name,
        description=row.description,
        points_cost=row.points_cost,
        points_plus_cash=price,
        per_customer_limit=limit,
        item=_item(RewardKind(row.kind), row.details, row.stock),
        created_at=_utc(row.created_at),
    )


class SqlRewardRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, reward: Reward) -> None:
        await self._session.execute(sa.insert(rewards).values(_reward_row(reward)))

    async def get(self, program_id: str, reward_id: str) -> Reward | None:
        query = sa.select(rewards).where(
            rewards.c.program_id == program_id, rewards.c.reward_id == reward_id
        )
        row = (await self._session.execute(query)).first()
        return None if row is None else _reward(row)

    async def page(
        self,
        program_id: str,
        *,
        after: tuple[dt.datetime, str] | None,
        limit: int,
        kinds: frozenset[RewardKind],
        in_stock_only: bool,
    ) -> list[Reward]:
        c = rewards.c
        query = (
            sa.select(rewards)
            .where(c.program_id == program_id)
            .order_by(c.created_at, c.reward_id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(after_position(c.created_at, c.reward_id, after))
        if kinds:
            query = query.where(c.kind.in_([kind.value for kind in kinds]))
        if in_stock_only:
            query = query.where(sa.or_(c.stock.is_(None), c.stock > 0))
        return [_reward(row) for row in await self._session.execute(query)]

    async def take_stock(self, program_id: str, reward_id: str) -> int | None:
        """Take one unit; the units left, or None (taking nothing) when none was left."""
        statement = (
            sa.update(rewards)
            .where(
                rewards.c.program_id == program_id,
                rewards.c.reward_id == reward_id,
                rewards.c.stock >= 1,
            )
            .values(stock=rewards.c.stock - 1)
            .returning(rewards.c.stock)
        )
        left: int | None = (await self._session.execute(statement)).scalar_one_or_none()
        return left


# --------------------------------------------------------------------------- redemptions


def _redemption_row(redemption: Redemption) -> dict[str, Any]:
    return {
        "redemption_id": redemption.redemption_id,
        "program_id": redemption.program_id,
        "customer_id": redemption.customer_id,
        "reward_id": redemption.reward_id,
        "kind": redemption.kind.value,
        "payment_option": redemption.payment_option.value,
        "points_spent": redemption.points_spent,
        "cash_currency": redemption.cash_due.currency_code,
        "cash_amount_minor": redemption.cash_due.amount_minor,
        "voucher_code": redemption.voucher_code,
        "entry_id": redemption.entry_id,
        "order_id": redemption.order_id,
        "request_id": redemption.request_id,
        "created_at": redemption.created_at,
    }


class SqlRedemptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, redemption: Redemption) -> None:
        await self._session.execute(
            sa.insert(reward_redemptions).values(_redemption_row(redemption))
        )

    async def count_towards_limit(
        self, program_id: str, customer_id: str, reward_id: str, period: str, max_count: int
    ) -> bool:
        """Count one redemption in ``period`` unless ``max_count`` are already counted;
        False, counting nothing, when the limit is reached."""
        dialect = self._session.bind.dialect.name if self._session.bind is not None else ""
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        c = reward_limit_counts.c
        statement = (
            insert(reward_limit_counts)
            .values(
                program_id=program_id,
                customer_id=customer_id,
                reward_id=reward_id,
                period=period,
                redeemed=1,
            )
            .on_conflict_do_update(
                index_elements=[c.program_id, c.customer_id, c.reward_id, c.period],
                set_={"redeemed": c.redeemed + 1},
                # Concurrent upserts of one key queue on its row lock, and each evaluates
                # this against the row as the previous one committed it.
                where=c.redeemed < max_count,
            )
            .returning(c.redeemed)
        )
        return (await self._session.execute(statement)).first() is not None

    async def request_answered(self, program_id: str, request_id: str) -> bool:
        """Whether a call in this program already committed under ``request_id``."""
        k = idempotency_keys.c
        query = sa.select(k.request_id).where(k.scope == program_id, k.request_id == request_id)
        return (await self._session.execute(query)).first() is not None
