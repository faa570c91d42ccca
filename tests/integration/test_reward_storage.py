"""The rewards catalog and redemptions in storage, on PostgreSQL and SQLite."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from services.points.app import SPEC, unit_of_work_factory
from services.points.application import ledger, programs, rewards
from services.points.clients.promotions import GrpcVoucherIssuer
from services.points.domain.program import ExpiryPolicy, Program, RefundPolicy, Rounding
from services.points.domain.rewards import (
    CharityDonationReward,
    PaymentOption,
    PhysicalItemReward,
    PointsPlusCash,
    Reward,
    RewardItem,
    RewardKind,
    VoucherReward,
)
from services.points.domain.rules import Limit, LimitPeriod, Money
from services.points.storage.reward_tables import reward_limit_counts, reward_redemptions
from services.points.storage.tables import idempotency_keys
from services.points.storage.uow import SqlPointsUnitOfWork
from shared import migrations
from shared.clock import ManualClock
from shared.db import create_engine
from shared.errors import DomainError
from shared.ids import SequentialIds
from tests.support.ledger_checks import assert_ledger_consistent

START = dt.datetime(2026, 3, 14, 10, 0, tzinfo=dt.UTC)
IDS = SequentialIds()
_customers = itertools.count(1)

MUG = PhysicalItemReward(sku="MUG-LOGO-350", stock=3)
FIVE_OFF = VoucherReward(campaign_id="cmp_5off")
RED_CROSS = CharityDonationReward(
    charity_id="red-cross-de", charity_name="Deutsches Rotes Kreuz ✚", donation=Money("USD", 500)
)


class CodesByRequest:
    """Stands in for promotions' IssueVoucher, which is not built yet: a unique code per
    request id, the same code again for a repeated id, as its contract promises."""

    def __init__(self) -> None:
        self.issued: dict[str, tuple[str, str]] = {}

    async def issue(
        self,
        *,
        request_id: str,
        campaign_id: str,
        program_id: str,
        customer_id: str,
        source_reference: str,
    ) -> str:
        payload = f"{campaign_id}/{program_id}/{customer_id}/{source_reference}"
        code, issued_for = self.issued.setdefault(
            request_id, (f"V-{len(self.issued) + 1:04d}", payload)
        )
        assert issued_for == payload, "a retry must send the same payload"
        return code


@pytest.fixture(scope="module")
async def engine(db_url):
    await migrations.upgrade_async(db_url, SPEC.migrations_dir, SPEC.metadata)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def unreachable_promotions():
    issuer = GrpcVoucherIssuer.connect("127.0.0.1:1", api_key="k", timeout_seconds=2.0)
    yield issuer
    await issuer.close()


async def in_uow(engine, operation: Callable[[SqlPointsUnitOfWork], Awaitable[Any]]) -> Any:
    async with unit_of_work_factory(engine, ManualClock(START), IDS)() as uow:
        result = await operation(uow)
        await uow.commit()
        return result


@pytest.fixture
async def program(engine) -> Program:
    draft = Program(
        program_id="",
        name="Bean Club",
        currency_code="EUR",
        time_zone="Europe/Berlin",
        expiry=ExpiryPolicy(),
        pending_seconds=0,
        refund_policy=RefundPolicy.WITHIN_AVAILABLE,
        rounding=Rounding.DOWN,
        created_at=START,
        updated_at=START,
    )
    clock = ManualClock(START)
    return await in_uow(
        engine, lambda uow: programs.create_program(uow, draft, clock=clock, ids=IDS)
    )


@pytest.fixture
def customer() -> str:
    return f"cust-{next(_customers)}"


def a_reward(program: Program, item: RewardItem, *, minutes: int = 0, **changes: Any) -> Reward:
    fields: dict[str, Any] = {
        "reward_id": IDS.new_id("rwd"),
        "program_id": program.program_id,
        "display_name": "Logo mug",
        "description": "Für Stammkunden",
        "points_cost": 1_000,
        "item": item,
        "created_at": START + dt.timedelta(minutes=minutes),
    }
    fields.update(changes)
    return Reward(**fields)


async def add(engine, reward: Reward) -> Reward:
    await in_uow(engine, lambda uow: uow.rewards.add(reward))
    return reward


async def give(engine, program: Program, customer: str, points: int) -> None:
    context = ledger.Context(program.program_id, customer, START, IDS)
    await in_uow(engine, lambda uow: ledger.adjust(uow, context, program, points, "welcome"))


async def available(engine, program: Program, customer: str) -> int:
    balance = await in_uow(engine, lambda uow: ledger.balance(uow, program.program_id, customer))
    return int(balance.account.available)


async def count_rows(engine, table: sa.Table, customer: str) -> int:
    async with engine.connect() as connection:
        query = sa.select(sa.func.count()).select_from(table).where(table.c.customer_id == customer)
        return int((await connection.execute(query)).scalar_one())


# ------------------------------------------------------------------------------- catalog


@pytest.mark.parametrize(
    ("item", "extras"),
    [
        (MUG, {"per_customer_limit": Limit(2, LimitPeriod.MONTH)}),
        (FIVE_OFF, {"points_plus_cash": PointsPlusCash(400, Money("EUR", 299))}),
        (RED_CROSS, {}),
    ],
)
async def test_every_kind_of_reward_reads_back_exactly_as_written(engine, program, item, extras):
    reward = await add(engine, a_reward(program, item, **extras))
    stored = await in_uow(engine, lambda uow: uow.rewards.get(program.program_id, reward.reward_id))
    assert stored == reward


async def test_a_reward_is_found_only_in_its_own_program(engine, program):
    reward = await add(engine, a_reward(program, MUG))
    assert await in_uow(engine, lambda uow: uow.rewards.get("prg_other", reward.reward_id)) is None


async def test_the_catalog_pages_oldest_first_and_filters_by_kind_and_stock(engine, program):
    sold_out = await add(engine, a_reward(program, dataclasses.replace(MUG, stock=0), minutes=1))
    mug = await add(engine, a_reward(program, MUG, minutes=2))
    voucher = await add(engine, a_reward(program, FIVE_OFF, minutes=3))
    donation = await add(engine, a_reward(program, RED_CROSS, minutes=3))

    async def page(
        after: tuple[dt.datetime, str] | None = None,
        limit: int = 10,
        kinds: frozenset[RewardKind] = frozenset(),
        in_stock_only: bool = False,
    ) -> list[str]:
        found = await in_uow(
            engine,
            lambda uow: uow.rewards.page(
                program.program_id,
                after=after,
                limit=limit,
                kinds=kinds,
                in_stock_only=in_stock_only,
            ),
        )
        return [r.reward_id for r in found]

    everything = [sold_out.reward_id, mug.reward_id, voucher.reward_id, donation.reward_id]
    assert await page() == everything
    assert await page(limit=2) == everything[:2]
    # Same creation instant: the id breaks the tie, so no reward is skipped or repeated.
    assert await page(after=(voucher.created_at, voucher.reward_id)) == [donation.reward_id]
    assert await page(after=(mug.created_at, mug.reward_id)) == everything[2:]
    assert await page(kinds=frozenset({RewardKind.PHYSICAL_ITEM})) == everything[:2]
    assert await page(in_stock_only=True) == everything[1:]


async def test_stock_is_taken_one_unit_at_a_time_and_never_below_zero(engine, program):
    reward = await add(engine, a_reward(program, dataclasses.replace(MUG, stock=2)))

    async def take() -> int | None:
        return await in_uow(
            engine, lambda uow: uow.rewards.take_stock(program.program_id, reward.reward_id)
        )

    assert [await take(), await take(), await take()] == [1, 0, None]
    stored = await in_uow(engine, lambda uow: uow.rewards.get(program.program_id, reward.reward_id))
    assert stored.item.stock == 0
    assert not stored.in_stock


async def test_a_limit_counts_up_to_its_maximum_per_customer_and_period(engine, program, customer):
    reward = await add(engine, a_reward(program, FIVE_OFF))

    async def count(who: str, period: str) -> bool:
        return await in_uow(
            engine,
            lambda uow: uow.redemptions.count_towards_limit(
                program.program_id, who, reward.reward_id, period, 2
            ),
        )

    march, april = "2026-02-28T23:00:00+00:00", "2026-03-31T22:00:00+00:00"
    assert [await count(customer, march) for _ in range(3)] == [True, True, False]
    assert await count(customer, april)
    assert await count(f"{customer}-friend", march)


async def test_a_request_id_is_answered_once_its_key_is_committed(engine, program):
    answered = lambda uow: uow.redemptions.request_answered(program.program_id, "r-1")  # noqa: E731
    assert not await in_uow(engine, answered)
    async with engine.begin() as connection:
        await connection.execute(
            sa.insert(idempotency_keys).values(
                scope=program.program_id,
                request_id="r-1",
                method="Redeem",
                fingerprint=b"\0" * 32,
                response=b"",
                created_at=START,
            )
        )
    assert await in_uow(engine, answered)
    assert not await in_uow(
        engine, lambda uow: uow.redemptions.request_answered("prg_other", "r-1")
    )


# ---------------------------------------------------------------------------- redeeming


def context(program: Program, customer: str, request_id: str) -> ledger.Context:
    return ledger.Context(program.program_id, customer, START, IDS, request_id)


async def test_redeeming_an_item_spends_points_takes_stock_and_records_it(
    engine, program, customer, unreachable_promotions
):
    await give(engine, program, customer, 1_500)
    reward = await add(engine, a_reward(program, MUG))
    done = await in_uow(
        engine,
        lambda uow: rewards.redeem_reward(
            uow,
            context(program, customer, "r-mug"),
            reward.reward_id,
            PaymentOption.POINTS_ONLY,
            "order-7",
            unreachable_promotions,
        ),
    )
    assert (done.entry.points, done.entry.reward_id, done.entry.order_id) == (
        -1_000,
        reward.reward_id,
        "order-7",
    )
    assert done.balance.account.available == 500
    redemption = done.redemption
    assert (redemption.points_spent, redemption.cash_due) == (1_000, Money("EUR", 0))
    assert (redemption.entry_id, redemption.voucher_code) == (done.entry.entry_id, "")
    stored = await in_uow(engine, lambda uow: uow.rewards.get(program.program_id, reward.reward_id))
    assert stored.item.stock == 2
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                sa.select(reward_redemptions).where(
                    reward_redemptions.c.redemption_id == redemption.redemption_id
                )
            )
        ).one()
    assert (row.customer_id, row.kind, row.request_id) == (customer, "physical_item", "r-mug")
    await assert_ledger_consistent(engine)


async def test_points_plus_cash_spends_fewer_points_and_asks_for_the_cash(
    engine, program, customer, unreachable_promotions
):
    await give(engine, program, customer, 500)
    offer = PointsPlusCash(400, Money("EUR", 299))
    reward = await add(engine, a_reward(program, RED_CROSS, points_plus_cash=offer))
    done = await in_uow(
        engine,
        lambda uow: rewards.redeem_reward(
            uow,
            context(program, customer, "r-ppc"),
            reward.reward_id,
            PaymentOption.POINTS_PLUS_CASH,
            "",
            unreachable_promotions,
        ),
    )
    assert (done.redemption.points_spent, done.redemption.cash_due) == (400, Money("EUR", 299))
    assert done.balance.account.available == 100


async def redeem_failure(engine, program, customer, reward, issuer, request_id) -> DomainError:
    with pytest.raises(DomainError) as failed:
        await in_uow(
            engine,
            lambda uow: rewards.redeem_reward(
                uow,
                context(program, customer, request_id),
                reward.reward_id,
                PaymentOption.POINTS_ONLY,
                "",
                issuer,
            ),
        )
    return failed.value


async def test_a_limit_reached_refuses_and_spends_nothing(
    engine, program, customer, unreachable_promotions
):
    await give(engine, program, customer, 5_000)
    reward = await add(
        engine, a_reward(program, MUG, per_customer_limit=Limit(1, LimitPeriod.LIFETIME))
    )
    await in_uow(
        engine,
        lambda uow: rewards.redeem_reward(
            uow,
            context(program, customer, "r-once"),
            reward.reward_id,
            PaymentOption.POINTS_ONLY,
            "",
            unreachable_promotions,
        ),
    )
    error = await redeem_failure(
        engine, program, customer, reward, unreachable_promotions, "r-twice"
    )
    assert error.reason == "REDEMPTION_LIMIT_REACHED"
    assert await available(engine, program, customer) == 4_000
    stored = await in_uow(engine, lambda uow: uow.rewards.get(program.program_id, reward.reward_id))
    assert stored.item.stock == 2


async def test_a_failed_voucher_issue_leaves_points_limit_and_records_untouched(
    engine, program, customer, unreachable_promotions
):
    await give(engine, program, customer, 1_000)
    reward = await add(
        engine, a_reward(program, FIVE_OFF, per_customer_limit=Limit(1, LimitPeriod.LIFETIME))
    )
    error = await redeem_failure(
        engine, program, customer, reward, unreachable_promotions, "r-down"
    )
    assert error.reason == "PROMOTIONS_UNAVAILABLE"
    assert await available(engine, program, customer) == 1_000
    assert await count_rows(engine, reward_redemptions, customer) == 0
    assert await count_rows(engine, reward_limit_counts, customer) == 0
    await assert_ledger_consistent(engine)


async def test_a_retry_after_a_crash_before_commit_gets_the_same_voucher_and_pays_once(
    engine, program, customer
):
    await give(engine, program, customer, 2_500)
    reward = await add(engine, a_reward(program, FIVE_OFF))
    promotions = CodesByRequest()

    def attempt(uow: SqlPointsUnitOfWork) -> Awaitable[rewards.RedeemedReward]:
        return rewards.redeem_reward(
            uow,
            context(program, customer, "r-voucher"),
            reward.reward_id,
            PaymentOption.POINTS_ONLY,
            "",
            promotions,
        )

    # The first attempt got its code, then the process died before commit.
    async with unit_of_work_factory(engine, ManualClock(START), IDS)() as uow:
        lost = await attempt(uow)
    assert await available(engine, program, customer) == 2_500
    done = await in_uow(engine, attempt)
    assert done.redemption.voucher_code == lost.redemption.voucher_code
    assert len(promotions.issued) == 1
    assert await available(engine, program, customer) == 1_500
    assert await count_rows(engine, reward_redemptions, customer) == 1
    await assert_ledger_consistent(engine)
