"""The ledger's use cases on PostgreSQL and SQLite, with an injected clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest

from services.points.app import SPEC, unit_of_work_factory
from services.points.application import ledger, programs
from services.points.domain.ledger import EntryType, HoldState
from services.points.domain.program import ExpiryKind, ExpiryPolicy, Program, RefundPolicy, Rounding
from services.points.storage.uow import SqlPointsUnitOfWork
from shared import migrations
from shared.clock import ManualClock
from shared.db import create_engine
from shared.errors import FailedPrecondition, InvalidArgument, NotFound
from shared.ids import SequentialIds
from tests.support.ledger_checks import assert_ledger_consistent

START = dt.datetime(2026, 12, 30, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
async def engine(db_url):
    await migrations.upgrade_async(db_url, SPEC.migrations_dir, SPEC.metadata)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.fixture
async def program(engine, clock):
    draft = Program(
        program_id="",
        name="Bean Club",
        currency_code="EUR",
        time_zone="Europe/Berlin",
        expiry=ExpiryPolicy(ExpiryKind.DAYS_AFTER_EARNING, 30),
        pending_seconds=0,
        refund_policy=RefundPolicy.WITHIN_AVAILABLE,
        rounding=Rounding.DOWN,
        created_at=START,
        updated_at=START,
    )
    return await in_uow(
        engine, lambda uow: programs.create_program(uow, draft, clock=clock, ids=IDS)
    )


IDS = SequentialIds()
_customers = iter(range(1, 10**6))


@pytest.fixture
def customer():
    return f"cust-{next(_customers)}"


async def in_uow(engine, operation: Callable[[SqlPointsUnitOfWork], Awaitable[Any]]) -> Any:
    async with unit_of_work_factory(engine, ManualClock(START), IDS)() as uow:
        result = await operation(uow)
        await uow.commit()
        return result


def ctx(program: Program, customer: str, clock: ManualClock) -> ledger.Context:
    return ledger.Context(program.program_id, customer, clock.now(), IDS)


async def credit(engine, program, customer, clock, points: int):
    return await in_uow(
        engine,
        lambda uow: ledger.adjust(uow, ctx(program, customer, clock), program, points, "goodwill"),
    )


async def test_credits_then_redeem_spend_soonest_expiring_first(engine, program, customer, clock):
    await credit(engine, program, customer, clock, 100)  # expires 30 days after START
    clock.advance(dt.timedelta(days=10))
    await credit(engine, program, customer, clock, 50)  # expires 10 days later
    entry, balance = await in_uow(
        engine, lambda uow: ledger.redeem(uow, ctx(program, customer, clock), 120, "coffee")
    )
    assert entry.type is EntryType.REDEEM
    assert entry.points == -120
    assert balance.account.available == 30
    # The first lot (100) is used up; the 30 left expire with the second lot.
    assert balance.next_expiry is not None
    assert balance.next_expiry.points == 30
    assert balance.next_expiry.at == START + dt.timedelta(days=40)
    await assert_ledger_consistent(engine)


async def test_redeeming_more_than_available_changes_nothing(engine, program, customer, clock):
    await credit(engine, program, customer, clock, 40)
    with pytest.raises(FailedPrecondition) as refused:
        await in_uow(
            engine, lambda uow: ledger.redeem(uow, ctx(program, customer, clock), 41, "too much")
        )
    assert refused.value.reason == "INSUFFICIENT_POINTS"
    assert refused.value.metadata == {"available": "40", "requested": "41"}
    balance = await in_uow(engine, lambda uow: ledger.balance(uow, program.program_id, customer))
    assert balance.account.available == 40
    await assert_ledger_consistent(engine)


async def test_unknown_customer_is_not_found(engine, program, customer, clock):
    with pytest.raises(NotFound) as missing:
        await in_uow(engine, lambda uow: ledger.redeem(uow, ctx(program, customer, clock), 1, "x"))
    assert missing.value.reason == "CUSTOMER_NOT_FOUND"


async def test_expiry_happens_at_the_instant_and_only_once(engine, program, customer, clock):
    await credit(engine, program, customer, clock, 70)
    expire = partial(_expire, engine, program, customer, clock)
    clock.advance(dt.timedelta(days=30) - dt.timedelta(seconds=1))
    assert await expire() is None  # one second early: nothing
    clock.advance(dt.timedelta(seconds=1))
    entry = await expire()
    assert entry is not None
    assert entry.type is EntryType.EXPIRE
    assert entry.points == -70
    assert entry.occurred_at == START + dt.timedelta(days=30)
    assert await expire() is None  # idempotent
    await assert_ledger_consistent(engine)


async def _expire(engine, program, customer, clock):
    return await in_uow(engine, lambda uow: ledger.expire_due(uow, ctx(program, customer, clock)))


async def test_expiry_spares_points_backing_an_active_hold(engine, program, customer, clock):
    await credit(engine, program, customer, clock, 100)
    hold, _, _ = await in_uow(
        engine,
        lambda uow: ledger.hold_points(
            uow, ctx(program, customer, clock), 60, dt.timedelta(days=60), "till 3"
        ),
    )
    clock.advance(dt.timedelta(days=31))
    entry = await _expire(engine, program, customer, clock)
    assert entry is not None
    assert entry.points == -40
    _, entries, balance = await in_uow(
        engine,
        lambda uow: ledger.capture_hold(uow, ctx(program, customer, clock), hold.hold_id, None),
    )
    assert [e.type for e in entries] == [EntryType.CAPTURE]
    assert balance.account.total == 0
    await assert_ledger_consistent(engine)


async def test_partial_capture_releases_the_remainder(engine, program, customer, clock):
    await credit(engine, program, customer, clock, 100)
    hold, entry, balance = await in_uow(
        engine,
        lambda uow: ledger.hold_points(
            uow, ctx(program, customer, clock), 80, dt.timedelta(minutes=5), "x"
        ),
    )
    assert (entry.points, balance.account.available, balance.account.held) == (0, 20, 80)
    # Held points cannot be spent elsewhere.
    with pytest.raises(FailedPrecondition):
        await in_uow(engine, lambda uow: ledger.redeem(uow, ctx(program, customer, clock), 21, "x"))
    with pytest.raises(InvalidArgument) as too_much:
        await in_uow(
            engine,
            lambda uow: ledger.capture_hold(uow, ctx(program, customer, clock), hold.hold_id, 81),
        )
    assert too_much.value.reason == "CAPTURE_EXCEEDS_HOLD"
    assert too_much.value.metadata == {"held": "80"}
    captured, entries, balance = await in_uow(
        engine,
        lambda uow: ledger.capture_hold(uow, ctx(program, customer, clock), hold.hold_id, 30),
    )
    assert captured.state is HoldState.CAPTURED
    assert captured.captured_points == 30
    assert [(e.type, e.points) for e in entries] == [
        (EntryType.CAPTURE, -30),
        (EntryType.RELEASE, 0),
    ]
    assert (balance.account.available, balance.account.held, balance.account.lifetime_spent) == (
        70,
        0,
        30,
    )
    with pytest.raises(FailedPrecondition) as twice:
        await in_uow(
            engine,
            lambda uow: ledger.capture_hold(uow, ctx(program, customer, clock), hold.hold_id, 1),
        )
    assert twice.value.reason == "HOLD_ALREADY_CAPTURED"
    await assert_ledger_consistent(engine)


async def test_an_expired_hold_cannot_be_captured_and_releases_itself(
    engine, program, customer, clock
):
    await credit(engine, program, customer, clock, 10)
    hold, _, _ = await in_uow(
        engine,
        lambda uow: ledger.hold_points(
            uow, ctx(program, customer, clock), 10, dt.timedelta(minutes=5), "x"
        ),
    )
    clock.advance(dt.timedelta(minutes=5))
    with pytest.raises(FailedPrecondition) as late:
        await in_uow(
            engine,
            lambda uow: ledger.capture_hold(uow, ctx(program, customer, clock), hold.hold_id, None),
        )
    assert late.value.reason == "HOLD_EXPIRED"
    released, entry, balance = await in_uow(
        engine,
        lambda uow: ledger.release_hold(
            uow, ctx(program, customer, clock), hold.hold_id, "", expired=True
        ),
    )
    assert released.state is HoldState.EXPIRED
    assert entry is not None
    assert (balance.account.available, balance.account.held) == (10, 0)
    # Releasing again is a no-op that succeeds.
    again, nothing, _ = await in_uow(
        engine,
        lambda uow: ledger.release_hold(uow, ctx(program, customer, clock), hold.hold_id, ""),
    )
    assert again.state is HoldState.EXPIRED
    assert nothing is None
    await assert_ledger_consistent(engine)


async def test_negative_adjustments_never_overdraw(engine, program, customer, clock):
    await credit(engine, program, customer, clock, 5)
    with pytest.raises(FailedPrecondition):
        await credit(engine, program, customer, clock, -6)
    entry, balance = await credit(engine, program, customer, clock, -5)
    assert entry.type is EntryType.ADJUST
    assert balance.account.available == 0
    await assert_ledger_consistent(engine)


async def test_a_capture_cannot_move_a_hold_to_another_order(engine, program, customer, clock):
    await credit(engine, program, customer, clock, 20)
    hold, _, _ = await in_uow(
        engine,
        lambda uow: ledger.hold_points(
            uow, ctx(program, customer, clock), 10, dt.timedelta(minutes=5), "till", "order-1"
        ),
    )
    with pytest.raises(InvalidArgument) as mismatch:
        await in_uow(
            engine,
            lambda uow: ledger.capture_hold(
                uow, ctx(program, customer, clock), hold.hold_id, None, "order-2"
            ),
        )
    assert mismatch.value.reason == "ORDER_MISMATCH"
    captured, _, _ = await in_uow(
        engine,
        lambda uow: ledger.capture_hold(
            uow, ctx(program, customer, clock), hold.hold_id, None, "order-1"
        ),
    )
    assert captured.order_id == "order-1"
    await assert_ledger_consistent(engine)
