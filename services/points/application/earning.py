"""Earning-rule and earning use cases, each inside the caller's unit of work.

Earning writes one EARN entry per contribution with a non-zero number of points, all in
one lot through ``ledger.credit``. A multiplier below 1x contributes *negative* points:
it is written as an EARN entry with negative points too, so the entries of an order or
event always sum to what the customer gained (the total, never negative) and each entry
still names the rule that caused it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from services.points.application import ledger
from services.points.application.programs import program_not_found
from services.points.domain import earning as domain
from services.points.domain.earning import (
    AwardHistory,
    Contribution,
    CustomEvent,
    EventEarning,
    Order,
    OrderEarning,
    TierBenefits,
    needs_tier_benefits,
)
from services.points.domain.ledger import (
    Account,
    Balance,
    Delta,
    Entry,
    EntryType,
    Lot,
    TierActivity,
    summarize,
)
from services.points.domain.ports import PointsUnitOfWork, TierBenefitsSource
from services.points.domain.program import Program
from services.points.domain.refunds import OrderedLine, OrderRecord
from services.points.domain.rules import (
    CustomEventRule,
    EarningRule,
    RuleDefinition,
    RuleKind,
    RuleState,
    TierMultiplierRule,
    TimeWindowMultiplierRule,
    archive,
    revise,
    validate_rule,
    validate_rule_currency,
)
from shared.clock import Clock
from shared.errors import FailedPrecondition, InvalidArgument, NotFound
from shared.ids import IdGenerator
from shared.validation import Violations

MAX_REASON_LENGTH = 500  # ledger_entries.reason
NO_CHANGE = Delta(entries=0)


def rule_not_found(rule_id: str) -> NotFound:
    return NotFound(
        f"Earning rule {rule_id} does not exist in this program.",
        reason="RULE_NOT_FOUND",
        metadata={"rule_id": rule_id},
    )


def tier_multiplier_rule_exists(existing: EarningRule | None) -> FailedPrecondition:
    # ``existing`` is None only if the winner of a creation race was archived at once.
    return FailedPrecondition(
        "The program already has an active tier multiplier rule; update or archive it.",
        reason="TIER_MULTIPLIER_RULE_EXISTS",
        metadata={"rule_id": existing.rule_id} if existing is not None else {},
    )


async def _program(uow: PointsUnitOfWork, program_id: str) -> Program:
    program = await uow.programs.get(program_id)
    if program is None:
        raise program_not_found(program_id)
    return program


def _check_rule(rule: EarningRule, program: Program) -> None:
    """Every violation of the rule at once; CURRENCY_MISMATCH names the program's currency."""
    violations = Violations()
    validate_rule(rule, violations)
    validate_rule_currency(rule, program.currency_code, violations)
    mismatch = next((v for v in violations.items if v.reason == "CURRENCY_MISMATCH"), None)
    if mismatch is not None:
        raise InvalidArgument(
            f"{mismatch.field}: {mismatch.description}",
            violations=violations.items,
            reason="CURRENCY_MISMATCH",
            metadata={"program_currency": program.currency_code},
        )
    violations.raise_if_any()


# ---------------------------------------------------------------------------- rule admin


async def create_rule(
    uow: PointsUnitOfWork, draft: EarningRule, *, clock: Clock, ids: IdGenerator
) -> EarningRule:
    program = await _program(uow, draft.program_id)
    now = clock.now()
    rule = replace(
        draft,
        rule_id=ids.new_id("rul"),
        display_name=draft.display_name.strip(),
        state=RuleState.ACTIVE,
        revision=1,
        created_at=now,
        updated_at=now,
        archived_at=None,
    )
    _check_rule(rule, program)
    if not await uow.rules.add(rule):
        raise tier_multiplier_rule_exists(
            await uow.rules.active_tier_multiplier(program.program_id)
        )
    return rule


@dataclass(frozen=True)
class RuleChanges:
    """New values of the fields named in the update mask; None leaves a field as it is."""

    display_name: str | None = None
    description: str | None = None
    definition: RuleDefinition | None = None


async def _locked_rule(uow: PointsUnitOfWork, program_id: str, rule_id: str) -> EarningRule:
    rule = await uow.rules.get(program_id, rule_id, for_update=True)
    if rule is None:
        raise rule_not_found(rule_id)
    return rule


async def update_rule(
    uow: PointsUnitOfWork, program_id: str, rule_id: str, changes: RuleChanges, *, clock: Clock
) -> EarningRule:
    program = await _program(uow, program_id)
    # Locked until commit, so two concurrent updates make two revisions, not one lost.
    current = await _locked_rule(uow, program_id, rule_id)
    revised = revise(
        current,
        clock.now(),
        display_name=None if changes.display_name is None else changes.display_name.strip(),
        description=changes.description,
        definition=changes.definition,
    )
    _check_rule(revised, program)
    await uow.rules.update(revised)
    return revised


async def archive_rule(
    uow: PointsUnitOfWork, program_id: str, rule_id: str, *, clock: Clock
) -> EarningRule:
    await _program(uow, program_id)
    current = await _locked_rule(uow, program_id, rule_id)
    archived = archive(current, clock.now())
    if archived is not current:  # archiving an archived rule changes nothing
        await uow.rules.update(archived)
    return archived


@dataclass(frozen=True)
class RuleFilter:
    kinds: frozenset[RuleKind] = frozenset()  # empty: every kind
    include_archived: bool = False
    event_type: str = ""  # custom-event rules for it and multipliers covering it

    def matches_event_type(self, rule: EarningRule) -> bool:
        if not self.event_type:
            return True
        terms = rule.definition
        if isinstance(terms, CustomEventRule):
            return terms.event_type == self.event_type
        if isinstance(terms, TimeWindowMultiplierRule | TierMultiplierRule):
            return terms.covers(self.event_type)
        return False  # order rules never apply to events


async def list_rules(
    uow: PointsUnitOfWork,
    program_id: str,
    rule_filter: RuleFilter,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> tuple[list[EarningRule], bool]:
    """One page of the program's rules, oldest first, and whether more follow."""
    await _program(uow, program_id)
    visible: list[EarningRule] = []
    cursor = after
    # The event-type filter looks inside definitions, so it runs here; a program has
    # tens of rules, so the rescans stay short.
    while len(visible) <= limit:
        batch = await uow.rules.page(
            program_id,
            after=cursor,
            limit=limit + 1,
            kinds=rule_filter.kinds,
            include_archived=rule_filter.include_archived,
        )
        visible.extend(rule for rule in batch if rule_filter.matches_event_type(rule))
        if len(batch) <= limit:
            break
        cursor = (batch[-1].created_at, batch[-1].rule_id)
    return visible[:limit], len(visible) > limit


# -------------------------------------------------------------------------------- earning


async def earn_for_order(
    uow: PointsUnitOfWork, ctx: ledger.Context, order: Order, tiers: TierBenefitsSource
) -> tuple[OrderEarning, list[Entry], Balance]:
    """Award the order's points (pending through the program's return window)."""
    program = await _program(uow, ctx.program_id)
    rules = await uow.rules.for_orders(program.program_id)
    benefits = await _tier_benefits(tiers, rules, ctx, None)
    earning = domain.earn_for_order(program, rules, order, tier_benefits=benefits, now=ctx.now)
    pending = earning.available_at is not None
    moves = _earn_movements(
        program, earning.contributions, order.occurred_at, pending=pending, order_id=order.order_id
    )
    entries: list[Entry] = []
    if moves:
        entries, account = await ledger.credit(
            uow,
            ctx,
            program,
            moves,
            occurred_at=order.occurred_at,
            pending=pending,
            earned=True,
            order_id=order.order_id,
        )
    else:
        account = await _open_account(uow, ctx)
    lots = await uow.lots.open_lots(ctx.program_id, ctx.customer_id)
    # Recorded even when nothing was earned: points spent on the order may be restored
    # later, and partial refunds need the amount and the lines.
    await uow.orders.record_earned(_order_record(ctx, order, entries, lots), ctx.now)
    await uow.events.tier_activity(
        TierActivity(
            program_id=ctx.program_id,
            customer_id=ctx.customer_id,
            source_id=f"order:{order.order_id}",
            occurred_at=order.occurred_at,
            points=sum(entry.points for entry in entries),
            spend_minor=order.amount.amount_minor,
            currency_code=order.amount.currency_code,
        )
    )
    return earning, entries, summarize(account, lots)


def _order_record(
    ctx: ledger.Context, order: Order, entries: Sequence[Entry], lots: Sequence[Lot]
) -> OrderRecord:
    # The order earns once per program, so a pending lot of this order is its earning's.
    pending_lot = next(
        (lot for lot in lots if lot.order_id == order.order_id and lot.available_at is not None),
        None,
    )
    return OrderRecord(
        program_id=ctx.program_id,
        customer_id=ctx.customer_id,
        order_id=order.order_id,
        amount=order.amount,
        lines=tuple(
            OrderedLine(line.line_id, line.quantity, line.unit_price.amount_minor)
            for line in order.lines
        )
        or None,
        points_earned=sum(entry.points for entry in entries),
        pending_lot_id=None if pending_lot is None else pending_lot.lot_id,
    )


async def record_event(
    uow: PointsUnitOfWork, ctx: ledger.Context, event: CustomEvent, tiers: TierBenefitsSource
) -> tuple[EventEarning, list[Entry], Balance]:
    """Apply the custom-event rules for the event type; points are available at once."""
    program = await _program(uow, ctx.program_id)
    rules = await uow.rules.for_event(program.program_id, event.event_type)
    # Asked before any lock is taken: no row stays locked across the remote call.
    benefits = await _tier_benefits(tiers, rules, ctx, event.event_type)
    # Locking the account before reading the award history serializes this customer's
    # events: a concurrent event waits here and then sees our award, so caps and
    # cooldowns hold however many events arrive at once.
    account = await _open_account(uow, ctx)
    history = await _award_history(uow, ctx, program, rules, event)
    earning = domain.apply_event(
        program, rules, event, history, tier_benefits=benefits, now=ctx.now
    )
    moves = _earn_movements(
        program, earning.contributions, event.occurred_at, event_type=event.event_type
    )
    if not moves:
        return earning, [], await _balance(uow, account)
    entries, account = await ledger.credit(
        uow, ctx, program, moves, occurred_at=event.occurred_at, pending=False, earned=True
    )
    awarded = {c.rule_id for c in earning.contributions if c.kind is RuleKind.CUSTOM_EVENT}
    await uow.awards.add([entry for entry in entries if entry.rule_id in awarded])
    await uow.events.tier_activity(
        TierActivity(
            program_id=ctx.program_id,
            customer_id=ctx.customer_id,
            # The first entry's id is unique to this event's earning (request ids are
            # only unique per program and per retention window).
            source_id=f"event:{entries[0].entry_id}",
            occurred_at=event.occurred_at,
            points=sum(entry.points for entry in entries),
        )
    )
    return earning, entries, await _balance(uow, account)


async def _tier_benefits(
    tiers: TierBenefitsSource,
    rules: Sequence[EarningRule],
    ctx: ledger.Context,
    event_type: str | None,
) -> TierBenefits | None:
    # Without an applicable tier rule the tiers service is neither called nor needed:
    # earning keeps working while it is down.
    if not needs_tier_benefits(rules, event_type):
        return None
    return await tiers.benefits(ctx.program_id, ctx.customer_id)


async def _open_account(uow: PointsUnitOfWork, ctx: ledger.Context) -> Account:
    """The customer's account, created on first use, row-locked until commit."""
    return await uow.accounts.credit(ctx.program_id, ctx.customer_id, NO_CHANGE, ctx.now)


async def _balance(uow: PointsUnitOfWork, account: Account) -> Balance:
    return summarize(account, await uow.lots.open_lots(account.program_id, account.customer_id))


def _earn_movements(
    program: Program,
    contributions: Sequence[Contribution],
    occurred_at: dt.datetime,
    *,
    pending: bool = False,
    order_id: str = "",
    event_type: str = "",
) -> list[ledger.Movement]:
    """One EARN movement per contribution that added (or, below 1x, took) points."""
    available_at = program.spendable_at(occurred_at) if pending else None
    return [
        ledger.Movement(
            EntryType.EARN,
            available=0 if pending else c.points,
            pending=c.points if pending else 0,
            reason=_clip(c.explanation),
            order_id=order_id,
            rule_id=c.rule_id,
            event_type=event_type,
            occurred_at=occurred_at,
            expires_at=program.expires_at(occurred_at),
            available_at=available_at,
        )
        for c in contributions
        if c.points
    ]


def _clip(text: str) -> str:
    # Explanations list matched SKUs and categories, which have no length limit.
    return text if len(text) <= MAX_REASON_LENGTH else text[: MAX_REASON_LENGTH - 1] + "…"


async def _award_history(
    uow: PointsUnitOfWork,
    ctx: ledger.Context,
    program: Program,
    rules: Sequence[EarningRule],
    event: CustomEvent,
) -> AwardHistory:
    """The customer's awards that the event's caps and cooldowns can count: only rules
    that have either, only within the widest period or cooldown around the event."""
    at = event.occurred_at
    rule_ids: list[str] = []
    windows: list[tuple[dt.datetime | None, dt.datetime | None]] = []
    for rule in rules:
        terms = rule.definition
        if not (
            rule.is_active
            and isinstance(terms, CustomEventRule)
            and terms.event_type == event.event_type
        ):
            continue
        limits = _history_windows(terms, at, program)
        if limits:
            rule_ids.append(rule.rule_id)
            windows.extend(limits)
    if not rule_ids:
        return AwardHistory()
    starts = [start for start, _ in windows]
    ends = [end for _, end in windows]
    return await uow.awards.history(
        ctx.program_id,
        ctx.customer_id,
        rule_ids,
        since=None if None in starts else min(s for s in starts if s is not None),
        until=None if None in ends else max(e for e in ends if e is not None),
    )


def _history_windows(
    terms: CustomEventRule, at: dt.datetime, program: Program
) -> list[tuple[dt.datetime | None, dt.datetime | None]]:
    """[start, end) of the awards each limit of the rule counts; None is open-ended."""
    windows = []
    if terms.frequency_cap is not None:
        windows.append(terms.frequency_cap.period.bounds(at, program.zone))
    if terms.cooldown:
        # An award closer than the cooldown on either side blocks (late offline uploads).
        windows.append((at - terms.cooldown, at + terms.cooldown))
    return windows
