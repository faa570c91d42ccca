"""Earning rules and custom-event awards in storage, on PostgreSQL and SQLite."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.points.app import SPEC, unit_of_work_factory
from services.points.application import earning, ledger, programs
from services.points.clients.tiers import GrpcTierBenefits
from services.points.domain.earning import CustomEvent, Order
from services.points.domain.ledger import EntryType
from services.points.domain.program import ExpiryKind, ExpiryPolicy, Program, RefundPolicy, Rounding
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
    archive,
    revise,
)
from services.points.storage.uow import SqlPointsUnitOfWork
from shared import migrations
from shared.clock import ManualClock
from shared.db import create_engine
from shared.ids import SequentialIds

START = dt.datetime(2026, 3, 14, 10, 0, tzinfo=dt.UTC)
IDS = SequentialIds()

ORDER_RULE = OrderRule(
    points_per_unit=10**12,
    spend_unit=Money("EUR", 10**15),
    minimum_order_amount=Money("EUR", 1_000),
    line_multipliers=(
        LineMultiplier(sku="COFFEE-1KG", multiplier_bps=30_000),
        LineMultiplier(category="café ☕", multiplier_bps=0),
    ),
    excluded_skus=("GIFT-CARD",),
    excluded_categories=("tobacco",),
)
REVIEW_RULE = CustomEventRule(
    event_type="review_submitted",
    points=50,
    frequency_cap=Limit(1, LimitPeriod.DAY),
    cooldown=dt.timedelta(hours=1, microseconds=7),
)
WEEKEND_RULE = TimeWindowMultiplierRule(
    starts_at=dt.datetime(2026, 4, 10, 22, 0, tzinfo=dt.UTC),
    ends_at=dt.datetime(2026, 4, 12, 22, 0, tzinfo=dt.UTC),
    multiplier_bps=20_000,
    scope=MultiplierScope.ORDERS_AND_EVENTS,
    event_types=("review_submitted",),
)
TIER_RULE = TierMultiplierRule(scope=MultiplierScope.ORDERS)


@pytest.fixture(scope="module")
async def engine(db_url):
    await migrations.upgrade_async(db_url, SPEC.migrations_dir, SPEC.metadata)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


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
        expiry=ExpiryPolicy(ExpiryKind.DAYS_AFTER_EARNING, 30),
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


def a_rule(
    program: Program, definition: RuleDefinition, *, minutes: int = 0, name: str = "Rule"
) -> EarningRule:
    created = START + dt.timedelta(minutes=minutes)
    return EarningRule(
        rule_id=IDS.new_id("rul"),
        program_id=program.program_id,
        display_name=name,
        description="Für Stammkunden — 2000 chars max",
        definition=definition,
        created_at=created,
        updated_at=created,
    )


async def add(engine, rule: EarningRule) -> bool:
    return await in_uow(engine, lambda uow: uow.rules.add(rule))


async def archive_stored(engine, rule: EarningRule) -> None:
    await in_uow(engine, lambda uow: uow.rules.update(archive(rule, START)))


# ---------------------------------------------------------------------------------- rules


@pytest.mark.parametrize("definition", [ORDER_RULE, REVIEW_RULE, WEEKEND_RULE, TIER_RULE])
async def test_every_kind_of_rule_reads_back_exactly_as_written(engine, program, definition):
    rule = a_rule(program, definition)
    assert await add(engine, rule)
    stored = await in_uow(engine, lambda uow: uow.rules.get(program.program_id, rule.rule_id))
    assert stored == rule


async def test_a_rule_is_found_only_in_its_own_program(engine, program):
    rule = a_rule(program, REVIEW_RULE)
    await add(engine, rule)
    assert await in_uow(engine, lambda uow: uow.rules.get("prg_other", rule.rule_id)) is None


async def test_revisions_and_archiving_are_stored(engine, program):
    rule = a_rule(program, REVIEW_RULE)
    await add(engine, rule)
    later = START + dt.timedelta(days=1)
    revised = revise(rule, later, display_name="Review bonus", definition=REVIEW_RULE)
    archived = archive(revised, later + dt.timedelta(hours=1))

    async def save_both(uow: SqlPointsUnitOfWork) -> EarningRule | None:
        locked = await uow.rules.get(program.program_id, rule.rule_id, for_update=True)
        assert locked == rule
        await uow.rules.update(revised)
        await uow.rules.update(archived)
        return await uow.rules.get(program.program_id, rule.rule_id)

    stored = await in_uow(engine, save_both)
    assert stored == archived
    assert (stored.revision, stored.state) == (2, RuleState.ARCHIVED)
    assert stored.archived_at == later + dt.timedelta(hours=1)


async def test_orders_and_events_load_only_the_rules_that_can_apply(engine, program):
    order_rule = a_rule(program, ORDER_RULE, minutes=1)
    review = a_rule(program, REVIEW_RULE, minutes=2)
    old_review = a_rule(program, REVIEW_RULE, minutes=3)
    signup = a_rule(
        program, dataclasses.replace(REVIEW_RULE, event_type="newsletter_signup"), minutes=4
    )
    weekend = a_rule(program, WEEKEND_RULE, minutes=5)
    old_weekend = a_rule(program, WEEKEND_RULE, minutes=6)
    for rule in (order_rule, review, old_review, signup, weekend, old_weekend):
        await add(engine, rule)
    for rule in (old_review, old_weekend):
        await archive_stored(engine, rule)

    for_orders = await in_uow(engine, lambda uow: uow.rules.for_orders(program.program_id))
    assert {r.rule_id for r in for_orders} == {order_rule.rule_id, weekend.rule_id}
    for_reviews = await in_uow(
        engine, lambda uow: uow.rules.for_event(program.program_id, "review_submitted")
    )
    # Archived rules of the event type come along, so a response can say they stopped.
    assert {r.rule_id for r in for_reviews} == {
        review.rule_id,
        old_review.rule_id,
        weekend.rule_id,
    }


async def test_a_program_has_one_active_tier_multiplier_rule(engine, program):
    first = a_rule(program, TIER_RULE, minutes=1)
    second = a_rule(program, dataclasses.replace(TIER_RULE, scope=MultiplierScope.EVENTS))
    assert await add(engine, first)

    async def refused_then_read(uow: SqlPointsUnitOfWork) -> tuple[bool, EarningRule | None]:
        added = await uow.rules.add(second)
        # The refusal leaves the transaction usable.
        return added, await uow.rules.active_tier_multiplier(program.program_id)

    added, existing = await in_uow(engine, refused_then_read)
    assert not added
    assert existing == first
    await archive_stored(engine, first)
    assert await add(engine, second)


async def test_pages_are_oldest_first_and_filtered(engine, program):
    rules = [
        a_rule(program, ORDER_RULE if index % 2 else REVIEW_RULE, minutes=index)
        for index in range(5)
    ]
    rules.append(a_rule(program, REVIEW_RULE, minutes=2))  # same instant as rules[2]
    for rule in rules:
        await add(engine, rule)
    await archive_stored(engine, rules[0])

    async def page(after, *, kinds=frozenset(), include_archived=True, limit=10):
        return await in_uow(
            engine,
            lambda uow: uow.rules.page(
                program.program_id,
                after=after,
                limit=limit,
                kinds=kinds,
                include_archived=include_archived,
            ),
        )

    everything = await page(None)
    expected = sorted(rules, key=lambda r: (r.created_at, r.rule_id))
    assert [r.rule_id for r in everything] == [r.rule_id for r in expected]
    cursor = (everything[2].created_at, everything[2].rule_id)
    assert [r.rule_id for r in await page(cursor, limit=2)] == [r.rule_id for r in expected[3:5]]
    events = await page(None, kinds=frozenset({RuleKind.CUSTOM_EVENT}), include_archived=False)
    assert [r.rule_id for r in events] == [
        r.rule_id for r in expected if r.kind is RuleKind.CUSTOM_EVENT and r is not rules[0]
    ]


# --------------------------------------------------------------------------------- awards


async def record_review(
    engine, program: Program, customer: str, at: dt.datetime, tiers: GrpcTierBenefits
) -> None:
    event = CustomEvent(customer_id=customer, event_type="review_submitted", occurred_at=at)
    context = ledger.Context(program.program_id, customer, at, IDS)
    await in_uow(engine, lambda uow: earning.record_event(uow, context, event, tiers))


async def test_award_history_covers_the_asked_rules_customer_and_window(engine, program):
    review, second_bonus = a_rule(program, REVIEW_RULE), a_rule(program, REVIEW_RULE)
    customer = f"cust-{IDS.new_id('c')}"
    tiers = GrpcTierBenefits.connect("dns:///127.0.0.1:1", api_key="unused", timeout_seconds=1)
    try:
        for rule in (review, second_bonus):
            await add(engine, rule)
        for hours in (0, 2, 26):
            await record_review(engine, program, customer, START + dt.timedelta(hours=hours), tiers)
    finally:
        await tiers.close()

    async def history(rule_ids, since, until, who=customer):
        return await in_uow(
            engine,
            lambda uow: uow.awards.history(
                program.program_id, who, rule_ids, since=since, until=until
            ),
        )

    # Each rule is capped at once per Berlin day: the event 2 hours later earned nothing.
    everything = await history([review.rule_id, second_bonus.rule_id], None, None)
    day_two = START + dt.timedelta(hours=26)
    assert everything.of_rule(review.rule_id) == [START, day_two]
    assert everything.of_rule(second_bonus.rule_id) == [START, day_two]
    window = await history([review.rule_id], START + dt.timedelta(hours=1), day_two)
    assert window.awards == {}
    window = await history([review.rule_id], START, day_two)
    assert dict(window.awards) == {review.rule_id: [START]}
    assert (await history([review.rule_id], None, None, who="someone-else")).awards == {}


async def test_earning_writes_entries_summing_to_the_balance_on_both_databases(engine, program):
    rule = a_rule(program, OrderRule(points_per_unit=1, spend_unit=Money("EUR", 100)))
    await add(engine, rule)
    halved = a_rule(
        program,
        TimeWindowMultiplierRule(
            starts_at=START - dt.timedelta(days=1),
            ends_at=START + dt.timedelta(days=1),
            multiplier_bps=5_000,
            scope=MultiplierScope.ORDERS,
        ),
        minutes=1,
    )
    await add(engine, halved)
    order = Order(
        order_id="10042",
        customer_id="cust-halved",
        amount=Money("EUR", 4_250),
        occurred_at=START,
    )
    context = ledger.Context(program.program_id, "cust-halved", START, IDS, "r-1")
    tiers = GrpcTierBenefits.connect("dns:///127.0.0.1:1", api_key="unused", timeout_seconds=1)
    try:
        result, entries, balance = await in_uow(
            engine, lambda uow: earning.earn_for_order(uow, context, order, tiers)
        )
    finally:
        await tiers.close()
    # A 0.5x multiplier is an EARN entry with negative points: entries sum to the total.
    assert [(e.type, e.rule_id, e.points) for e in entries] == [
        (EntryType.EARN, rule.rule_id, 42),
        (EntryType.EARN, halved.rule_id, -21),
    ]
    assert result.points == balance.account.available == sum(e.points for e in entries) == 21
