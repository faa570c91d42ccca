"""Refunds through the use cases on PostgreSQL and SQLite, as a merchant runs them: an
order earns (pending through a return window, or at once), points are spent on it, and
then it is refunded in full, in parts or by line, under each refund policy."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.points.app import SPEC, unit_of_work_factory
from services.points.application import earning, ledger, programs, refunds
from services.points.clients.tiers import GrpcTierBenefits
from services.points.domain.earning import Cart, Order, OrderLine
from services.points.domain.ledger import Balance, EntryType
from services.points.domain.program import ExpiryKind, ExpiryPolicy, Program, RefundPolicy, Rounding
from services.points.domain.refunds import (
    AmountRefund,
    FullRefund,
    LineRefund,
    LinesRefund,
    RefundScope,
)
from services.points.domain.rules import EarningRule, Money, OrderRule
from services.points.storage.uow import SqlPointsUnitOfWork
from shared import migrations
from shared.clock import ManualClock
from shared.db import create_engine
from shared.errors import Aborted, DomainError, NotFound
from shared.ids import SequentialIds
from tests.support.ledger_checks import assert_ledger_consistent

START = dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC)
EXPIRY_DAYS = 30
IDS = SequentialIds()
_customers = itertools.count(1)
_refund_ids = itertools.count(1)
_requests = itertools.count(1)


@pytest.fixture(scope="module")
async def engine(db_url):
    await migrations.upgrade_async(db_url, SPEC.migrations_dir, SPEC.metadata)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def tiers():
    # No test program has a tier rule, so earning never calls it.
    client = GrpcTierBenefits.connect("dns:///127.0.0.1:1", api_key="unused", timeout_seconds=1)
    yield client
    await client.close()


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.fixture
def customer():
    return f"cust-{next(_customers)}"


async def in_uow(engine, operation: Callable[[SqlPointsUnitOfWork], Awaitable[Any]]) -> Any:
    async with unit_of_work_factory(engine, ManualClock(START), IDS)() as uow:
        result = await operation(uow)
        await uow.commit()
        return result


async def bean_club(
    engine, clock, policy: RefundPolicy = RefundPolicy.WITHIN_AVAILABLE, pending_days: int = 0
) -> Program:
    """A program earning 1 point per €1, points expiring 30 days after earning."""
    draft = Program(
        program_id="",
        name="Bean Club",
        currency_code="EUR",
        time_zone="Europe/Berlin",
        expiry=ExpiryPolicy(ExpiryKind.DAYS_AFTER_EARNING, EXPIRY_DAYS),
        pending_seconds=pending_days * 86_400,
        refund_policy=policy,
        rounding=Rounding.DOWN,
        created_at=START,
        updated_at=START,
    )
    program = await in_uow(
        engine, lambda uow: programs.create_program(uow, draft, clock=clock, ids=IDS)
    )
    rule = EarningRule(
        rule_id="",
        program_id=program.program_id,
        display_name="1 point per €1",
        definition=OrderRule(points_per_unit=1, spend_unit=Money("EUR", 100)),
        created_at=START,
        updated_at=START,
    )
    await in_uow(engine, lambda uow: earning.create_rule(uow, rule, clock=clock, ids=IDS))
    return program


def ctx(program: Program, customer: str, clock: ManualClock) -> ledger.Context:
    return ledger.Context(program.program_id, customer, clock.now(), IDS, f"r-{next(_requests)}")


async def earn(engine, program, customer, clock, tiers, order_id: str, cents: int, lines=()):
    cart = Cart(currency_code="EUR", lines=tuple(lines)) if lines else None
    order = Order(
        order_id=order_id,
        customer_id=customer,
        amount=Money("EUR", cents),
        occurred_at=clock.now(),
        cart=cart,
    )
    _, entries, balance = await in_uow(
        engine,
        lambda uow: earning.earn_for_order(uow, ctx(program, customer, clock), order, tiers),
    )
    return entries, balance


async def refund(
    engine, program, customer, clock, order_id: str, scope: RefundScope, refund_id: str = ""
) -> refunds.RefundOutcome:
    wanted = refunds.Refund(order_id, refund_id or f"rf-{next(_refund_ids)}", scope, "Returned")
    return await in_uow(
        engine, lambda uow: refunds.reverse_order(uow, ctx(program, customer, clock), wanted)
    )


async def balance(engine, program, customer) -> Balance:
    return await in_uow(engine, lambda uow: ledger.balance(uow, program.program_id, customer))


def eur(cents: int) -> AmountRefund:
    return AmountRefund(Money("EUR", cents))


def line(line_id: str, quantity: int, cents: int) -> OrderLine:
    return OrderLine(line_id=line_id, quantity=quantity, unit_price=Money("EUR", cents))


# ---------------------------------------------------------------------------- earned points


async def test_a_full_refund_of_a_pending_order_takes_its_pending_points_back(
    engine, clock, tiers, customer
):
    program = await bean_club(engine, clock, RefundPolicy.PENDING_ONLY, pending_days=14)
    await earn(engine, program, customer, clock, tiers, "10042", 4_250)
    assert (await balance(engine, program, customer)).account.pending == 42

    done = await refund(engine, program, customer, clock, "10042", FullRefund())

    assert (done.clawback.taken, done.clawback.not_recovered, done.restored) == (42, 0, 0)
    assert done.order_fully_refunded
    [entry] = done.entries
    assert entry.type is EntryType.REVERSE
    assert (entry.pending_delta, entry.available_delta) == (-42, 0)
    assert (entry.order_id, entry.reason) == ("10042", "Returned")
    account = done.balance.account
    assert (account.pending, account.total, account.lifetime_earned) == (0, 0, 0)
    assert done.balance.next_activation is None
    await assert_ledger_consistent(engine)


async def test_three_partial_refunds_by_amount_take_back_exactly_what_was_earned(
    engine, clock, tiers, customer
):
    program = await bean_club(engine, clock)
    await earn(engine, program, customer, clock, tiers, "o-101", 10_100)  # 101 points

    # A third, another third, then the rest: 33.33 -> 33, 66.66 -> 66, then all 101.
    moved = []
    for scope in (eur(3_333), eur(3_333), eur(3_434)):
        done = await refund(engine, program, customer, clock, "o-101", scope)
        moved.append(done.clawback.taken)
    assert moved == [33, 33, 35]
    assert done.order_fully_refunded
    assert (done.balance.account.available, done.balance.account.lifetime_earned) == (0, 0)
    await assert_ledger_consistent(engine)


async def test_a_refund_by_lines_takes_back_the_lines_share_of_the_order(
    engine, clock, tiers, customer
):
    program = await bean_club(engine, clock, pending_days=14)
    beans, mugs = line("1", 1, 3_000), line("2", 2, 1_000)
    await earn(engine, program, customer, clock, tiers, "o-lines", 5_000, (beans, mugs))

    one_mug = await refund(
        engine, program, customer, clock, "o-lines", LinesRefund((LineRefund("2", 1),))
    )
    assert (one_mug.clawback.from_pending, one_mug.order_fully_refunded) == (10, False)
    rest = await refund(
        engine,
        program,
        customer,
        clock,
        "o-lines",
        LinesRefund((LineRefund("1", 1), LineRefund("2", 1))),
    )
    assert (rest.clawback.from_pending, rest.order_fully_refunded) == (40, True)
    assert rest.balance.account.total == 0
    await assert_ledger_consistent(engine)


async def test_a_partly_refunded_pending_order_activates_what_is_left(
    engine, clock, tiers, customer
):
    program = await bean_club(engine, clock, pending_days=14)
    await earn(engine, program, customer, clock, tiers, "o-half", 8_000)
    await refund(engine, program, customer, clock, "o-half", eur(4_000))
    clock.advance(dt.timedelta(days=14))
    [activated] = await in_uow(
        engine, lambda uow: ledger.activate_due(uow, ctx(program, customer, clock))
    )
    assert activated.available_delta == 40
    account = (await balance(engine, program, customer)).account
    assert (account.available, account.pending, account.lifetime_earned) == (40, 0, 40)
    await assert_ledger_consistent(engine)


async def test_within_available_takes_what_is_left_and_reports_the_rest_not_recovered(
    engine, clock, tiers, customer
):
    program = await bean_club(engine, clock, RefundPolicy.WITHIN_AVAILABLE)
    await earn(engine, program, customer, clock, tiers, "o-spent", 10_000)
    await in_uow(
        engine, lambda uow: ledger.redeem(uow, ctx(program, customer, clock), 70, "Free bag")
    )

    done = await refund(engine, program, customer, clock, "o-spent", FullRefund())

    assert (done.clawback.from_available, done.clawback.not_recovered) == (30, 70)
    account = done.balance.account
    assert (account.available, account.lifetime_earned, account.lifetime_spent) == (0, 70, 70)
    await assert_ledger_consistent(engine)


async def test_pending_only_leaves_activated_points_with_the_customer(
    engine, clock, tiers, customer
):
    program = await bean_club(engine, clock, RefundPolicy.PENDING_ONLY)
    await earn(engine, program, customer, clock, tiers, "o-kept", 2_500)
    done = await refund(engine, program, customer, clock, "o-kept", eur(1_000))
    assert (done.clawback.taken, done.clawback.not_recovered, done.entries) == (0, 10, [])
    assert done.balance.account.available == 25
    await assert_ledger_consistent(engine)


async def test_allow_negative_leaves_a_debt_that_the_next_earning_pays_first(
    engine, clock, tiers, customer
):
    program = await bean_club(engine, clock, RefundPolicy.ALLOW_NEGATIVE)
    await earn(engine, program, customer, clock, tiers, "o-big", 10_000)
    await in_uow(
        engine,
        lambda uow: ledger.redeem(uow, ctx(program, customer, clock), 80, "Espresso machine"),
    )

    done = await refund(engine, program, customer, clock, "o-big", FullRefund())
    assert (done.clawback.from_available, done.clawback.not_recovered) == (100, 0)
    assert done.balance.account.available == -80
    await assert_ledger_consistent(engine)

    _, after = await earn(engine, program, customer, clock, tiers, "o-next", 9_000)
    assert after.account.available == 10
    # Only the 10 points above the debt are backed by a lot, and only they expire.
    assert after.next_expiry is not None
    assert after.next_expiry.points == 10
    await assert_ledger_consistent(engine)


async def test_allow_negative_with_an_active_hold_keeps_the_lots_in_step(
    engine, clock, tiers, customer
):
    program = await bean_club(engine, clock, RefundPolicy.ALLOW_NEGATIVE)
    await earn(engine, program, customer, clock, tiers, "o-held", 5_000)
    hold, _, _ = await in_uow(
        engine,
        lambda uow: ledger.hold_points(
            uow, ctx(program, customer, clock), 30, dt.timedelta(minutes=5), "till 2"
        ),
    )
    done = await refund(engine, program, customer, clock, "o-held", FullRefund())
    assert (done.balance.account.available, done.balance.account.held) == (-30, 30)
    await assert_ledger_consistent(engine)
    await in_uow(
        engine,
        lambda uow: ledger.capture_hold(uow, ctx(program, customer, clock), hold.hold_id, None),
    )
    await assert_ledger_consistent(engine)


# ----------------------------------------------------------------------------- spent points


async def test_points_spent_on_the_order_come_back_with_a_fresh_expiry(
    engine, clock, tiers, customer
):
    program = await bean_club(engine, clock)
    await in_uow(
        engine,
        lambda uow: ledger.adjust(uow, ctx(program, customer, clock), program, 500, "Welcome"),
    )
    await in_uow(
        engine,
        lambda uow: ledger.redeem(uow, ctx(program, customer, clock), 200, "Pay", "o-paid"),
    )
    hold, _, _ = await in_uow(
        engine,
        lambda uow: ledger.hold_points(
            uow, ctx(program, customer, clock), 100, dt.timedelta(minutes=5), "till", "o-paid"
        ),
    )
    await in_uow(
        engine,
        lambda uow: ledger.capture_hold(uow, ctx(program, customer, clock), hold.hold_id, 60),
    )
    clock.advance(dt.timedelta(days=20))

    done = await refund(engine, program, customer, clock, "o-paid", FullRefund())

    assert (done.restored, done.clawback.taken) == (260, 0)
    [entry] = done.entries
    assert (entry.type, entry.available_delta) == (EntryType.REVERSE, 260)
    assert entry.expires_at == clock.now() + dt.timedelta(days=EXPIRY_DAYS)
    account = done.balance.account
    assert (account.available, account.lifetime_spent, account.lifetime_earned) == (500, 0, 0)
    # The 240 welcome points left still expire first, then the restored ones.
    assert done.balance.next_expiry is not None
    assert done.balance.next_expiry.points == 240
    await assert_ledger_consistent(engine)


async def test_a_refund_that_restores_and_claws_back_nets_out(engine, clock, tiers, customer):
    program = await bean_club(engine, clock, RefundPolicy.WITHIN_AVAILABLE)
    await earn(engine, program, customer, clock, tiers, "o-loop", 10_000)
    await in_uow(
        engine,
        lambda uow: ledger.redeem(uow, ctx(program, customer, clock), 100, "Same order", "o-loop"),
    )
    done = await refund(engine, program, customer, clock, "o-loop", FullRefund())
    assert (done.restored, done.clawback.taken, done.clawback.not_recovered) == (100, 100, 0)
    assert [e.points for e in done.entries] == [100, -100]
    assert done.balance.account.total == 0
    await assert_ledger_consistent(engine)


# ---------------------------------------------------------------------------------- refusals


async def refused(engine, program, customer, clock, order_id, scope, refund_id=""):
    with pytest.raises(DomainError) as error:
        await refund(engine, program, customer, clock, order_id, scope, refund_id)
    return error.value


async def test_orders_that_moved_no_points_and_unknown_customers_are_not_found(
    engine, clock, tiers, customer
):
    program = await bean_club(engine, clock)
    await earn(engine, program, customer, clock, tiers, "o-tiny", 50)  # below 1 point
    error = await refused(engine, program, customer, clock, "o-tiny", FullRefund())
    assert (error.reason, error.metadata) == ("ORDER_NOT_FOUND", {"order_id": "o-tiny"})
    error = await refused(engine, program, customer, clock, "o-never", FullRefund())
    assert isinstance(error, NotFound)
    assert error.reason == "ORDER_NOT_FOUND"
    error = await refused(engine, program, "nobody", clock, "o-tiny", FullRefund())
    assert error.reason == "CUSTOMER_NOT_FOUND"


async def test_a_refund_id_is_applied_once(engine, clock, tiers, customer):
    program = await bean_club(engine, clock)
    await earn(engine, program, customer, clock, tiers, "o-once", 2_000)
    await refund(engine, program, customer, clock, "o-once", eur(500), "rf-1")
    error = await refused(engine, program, customer, clock, "o-once", eur(500), "rf-1")
    assert isinstance(error, Aborted)
    assert error.reason == "REFUND_ALREADY_APPLIED"
    assert (await balance(engine, program, customer)).account.available == 15


async def test_an_order_only_spent_on_can_be_refunded_in_full_only(engine, clock, tiers, customer):
    program = await bean_club(engine, clock)
    await in_uow(
        engine,
        lambda uow: ledger.adjust(uow, ctx(program, customer, clock), program, 50, "Welcome"),
    )
    await in_uow(
        engine,
        lambda uow: ledger.redeem(uow, ctx(program, customer, clock), 50, "Pay", "o-pts"),
    )
    error = await refused(engine, program, customer, clock, "o-pts", eur(100))
    assert error.reason == "ORDER_AMOUNT_UNKNOWN"
    done = await refund(engine, program, customer, clock, "o-pts", FullRefund())
    assert (done.restored, done.order_fully_refunded) == (50, True)
    error = await refused(engine, program, customer, clock, "o-pts", FullRefund())
    assert error.reason == "ORDER_FULLY_REFUNDED"
    await assert_ledger_consistent(engine)


# ------------------------------------------------------------------------------ order facts


async def test_an_orders_facts_are_recorded_as_they_happen(engine, clock, tiers, customer):
    program = await bean_club(engine, clock, pending_days=14)
    await in_uow(
        engine,
        lambda uow: ledger.adjust(uow, ctx(program, customer, clock), program, 90, "Welcome"),
    )
    # Spent on before it earned (pay with points at the till, earning sent afterwards).
    await in_uow(
        engine,
        lambda uow: ledger.redeem(uow, ctx(program, customer, clock), 30, "Pay", "o-facts"),
    )
    await earn(engine, program, customer, clock, tiers, "o-facts", 4_000, (line("a", 2, 2_000),))
    await refund(engine, program, customer, clock, "o-facts", eur(1_000))

    stored = await in_uow(
        engine, lambda uow: uow.orders.get(program.program_id, customer, "o-facts")
    )
    assert stored.amount == Money("EUR", 4_000)
    assert [(ln.line_id, ln.quantity, ln.unit_price_minor) for ln in stored.lines] == [
        ("a", 2, 2_000)
    ]
    assert (stored.points_earned, stored.points_spent) == (40, 30)
    pending = [
        lot
        for lot in await in_uow(
            engine, lambda uow: uow.lots.open_lots(program.program_id, customer)
        )
        if lot.available_at is not None
    ]
    assert [lot.lot_id for lot in pending] == [stored.pending_lot_id]
    done = stored.refunded
    assert (done.amount_minor, done.full, done.clawed_back, done.restored) == (1_000, False, 10, 7)
