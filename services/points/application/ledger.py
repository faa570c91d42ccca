"""Ledger use cases. Each runs in the caller's unit of work and starts with one atomic
statement on the account row, which enforces the balance rule and serializes every other
writer of that account until commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from services.points.domain.ledger import (
    Account,
    Balance,
    Delta,
    Entry,
    EntryType,
    Hold,
    HoldState,
    Lot,
    Take,
    allocate,
    before,
    customer_not_found,
    expirable_points,
    insufficient_points,
    spendable_backing,
    summarize,
)
from services.points.domain.ports import PointsUnitOfWork
from services.points.domain.program import Program
from shared.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from shared.ids import IdGenerator


@dataclass(frozen=True)
class Context:
    """Who and when: the parts every ledger call shares."""

    program_id: str
    customer_id: str
    now: dt.datetime
    ids: IdGenerator
    request_id: str = ""


@dataclass(frozen=True)
class Movement:
    """One entry to write: its type, its bucket changes and what it refers to."""

    type: EntryType
    available: int = 0
    pending: int = 0
    held: int = 0
    reason: str = ""
    order_id: str = ""
    rule_id: str = ""
    event_type: str = ""
    hold_id: str = ""
    reward_id: str = ""
    refund_id: str = ""
    occurred_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    available_at: dt.datetime | None = None


def _entries(start: Account, movements: Sequence[Movement], ctx: Context) -> list[Entry]:
    """Number the movements after ``start`` and carry the running balances."""
    written: list[Entry] = []
    total, available = start.total, start.available
    for offset, move in enumerate(movements, start=1):
        total += move.available + move.pending + move.held
        available += move.available
        written.append(
            Entry(
                entry_id=ctx.ids.new_id("ent"),
                program_id=ctx.program_id,
                customer_id=ctx.customer_id,
                sequence=start.entry_count + offset,
                type=move.type,
                available_delta=move.available,
                pending_delta=move.pending,
                held_delta=move.held,
                balance_after=total,
                available_after=available,
                created_at=ctx.now,
                occurred_at=move.occurred_at or ctx.now,
                reason=move.reason,
                order_id=move.order_id,
                refund_id=move.refund_id,
                rule_id=move.rule_id,
                event_type=move.event_type,
                hold_id=move.hold_id,
                reward_id=move.reward_id,
                request_id=ctx.request_id,
                expires_at=move.expires_at,
                available_at=move.available_at,
            )
        )
    return written


async def _write(uow: PointsUnitOfWork, written: list[Entry]) -> list[Entry]:
    """Entries and their events go into the same transaction: none without the other."""
    await uow.entries.add(written)
    await uow.events.entries_appended(written)
    return written


async def _record(
    uow: PointsUnitOfWork, after: Account, delta: Delta, movements: Sequence[Movement], ctx: Context
) -> list[Entry]:
    return await _write(uow, _entries(before(after, delta), movements, ctx))


async def _debit(
    uow: PointsUnitOfWork, ctx: Context, points: int, delta: Delta
) -> tuple[Account, list[Lot]]:
    """Take ``points`` from available (all or nothing) and from the lots, soonest-expiring first."""
    after = await uow.accounts.apply(
        ctx.program_id, ctx.customer_id, delta, ctx.now, min_available=points
    )
    if after is None:
        current = await uow.accounts.get(ctx.program_id, ctx.customer_id)
        if current is None:
            raise customer_not_found(ctx.program_id, ctx.customer_id)
        raise insufficient_points(current.available, points)
    lots = await uow.lots.open_lots(ctx.program_id, ctx.customer_id)
    takes = allocate((lot for lot in lots if lot.available_at is None), points)
    await uow.lots.take(takes)
    return after, _after_takes(lots, takes)


def _after_takes(lots: Sequence[Lot], takes: Sequence[Take]) -> list[Lot]:
    taken = {t.lot_id: t.points for t in takes}
    return [
        Lot(**{**lot.__dict__, "remaining": lot.remaining - taken.get(lot.lot_id, 0)})
        for lot in lots
    ]


async def redeem(
    uow: PointsUnitOfWork,
    ctx: Context,
    points: int,
    reason: str,
    order_id: str = "",
    *,
    reward_id: str = "",
) -> tuple[Entry, Balance]:
    delta = Delta(available=-points, spent=points)
    after, lots = await _debit(uow, ctx, points, delta)
    move = Movement(
        EntryType.REDEEM, available=-points, reason=reason, order_id=order_id, reward_id=reward_id
    )
    [entry] = await _record(uow, after, delta, [move], ctx)
    if order_id:  # a refund of the order restores them
        await uow.orders.record_spent(ctx.program_id, ctx.customer_id, order_id, points, ctx.now)
    return entry, summarize(after, lots)


async def credit(
    uow: PointsUnitOfWork,
    ctx: Context,
    program: Program,
    movements: Sequence[Movement],
    *,
    occurred_at: dt.datetime,
    pending: bool,
    earned: bool,
    order_id: str = "",
    spent: int = 0,
) -> tuple[list[Entry], Account]:
    """Add points (earning, a positive adjustment, a refund's restore) as one lot, pending
    or spendable. ``spent`` changes lifetime_spent (a restore gives spent points back).

    Spendable credits pay off a debt first: the lot holds only what the balance gains.
    """
    points = sum(m.available + m.pending for m in movements)
    available_at = program.spendable_at(occurred_at) if pending else None
    delta = Delta(
        available=0 if pending else points,
        pending=points if pending else 0,
        earned=points if earned else 0,
        spent=spent,
        entries=len(movements),
    )
    after = await uow.accounts.credit(ctx.program_id, ctx.customer_id, delta, ctx.now)
    start = before(after, delta)
    backed = points if pending else spendable_backing(after) - spendable_backing(start)
    if backed > 0:
        # Expiry counts from the business time (an old backlog order may expire at once).
        expires_at = program.expires_at(occurred_at)
        await uow.lots.add(
            [
                Lot(
                    lot_id=ctx.ids.new_id("lot"),
                    program_id=ctx.program_id,
                    customer_id=ctx.customer_id,
                    amount=backed,
                    remaining=backed,
                    earned_at=occurred_at,
                    expires_at=expires_at,
                    available_at=available_at,
                    order_id=order_id,
                )
            ]
        )
    written = await _write(uow, _entries(start, movements, ctx))
    return written, after


async def adjust(
    uow: PointsUnitOfWork, ctx: Context, program: Program, points: int, reason: str
) -> tuple[Entry, Balance]:
    """An administrator's signed correction; debits never make available negative."""
    if points > 0:
        expires_at = program.expires_at(ctx.now)
        move = Movement(EntryType.ADJUST, available=points, reason=reason, expires_at=expires_at)
        [entry], after = await credit(
            uow, ctx, program, [move], occurred_at=ctx.now, pending=False, earned=False
        )
        return entry, summarize(after, await uow.lots.open_lots(ctx.program_id, ctx.customer_id))
    delta = Delta(available=points)
    after, lots = await _debit(uow, ctx, -points, delta)
    [entry] = await _record(
        uow, after, delta, [Movement(EntryType.ADJUST, available=points, reason=reason)], ctx
    )
    return entry, summarize(after, lots)


# -- holds ------------------------------------------------------------------------------


def hold_not_found(hold_id: str) -> NotFound:
    return NotFound(
        f"Hold {hold_id} does not exist for this customer.",
        reason="HOLD_NOT_FOUND",
        metadata={"hold_id": hold_id},
    )


def _refuse_finished(hold: Hold, now: dt.datetime) -> None:
    """Raise the reason a hold can no longer be captured."""
    if hold.state is HoldState.CAPTURED:
        raise FailedPrecondition(
            f"Hold {hold.hold_id} was already captured.",
            reason="HOLD_ALREADY_CAPTURED",
            metadata={"hold_id": hold.hold_id},
        )
    if hold.state is HoldState.RELEASED:
        raise FailedPrecondition(
            f"Hold {hold.hold_id} was released.",
            reason="HOLD_RELEASED",
            metadata={"hold_id": hold.hold_id},
        )
    if hold.state is HoldState.EXPIRED or hold.expires_at <= now:
        raise FailedPrecondition(
            f"Hold {hold.hold_id} expired at {hold.expires_at.isoformat()}.",
            reason="HOLD_EXPIRED",
            metadata={"hold_id": hold.hold_id, "expired_at": hold.expires_at.isoformat()},
        )


async def hold_points(
    uow: PointsUnitOfWork,
    ctx: Context,
    points: int,
    ttl: dt.timedelta,
    reason: str,
    order_id: str = "",
) -> tuple[Hold, Entry, Balance]:
    delta = Delta(available=-points, held=points)
    after = await uow.accounts.apply(
        ctx.program_id, ctx.customer_id, delta, ctx.now, min_available=points
    )
    if after is None:
        current = await uow.accounts.get(ctx.program_id, ctx.customer_id)
        if current is None:
            raise customer_not_found(ctx.program_id, ctx.customer_id)
        raise insufficient_points(current.available, points)
    hold = Hold(
        hold_id=ctx.ids.new_id("hld"),
        program_id=ctx.program_id,
        customer_id=ctx.customer_id,
        points=points,
        state=HoldState.ACTIVE,
        created_at=ctx.now,
        expires_at=ctx.now + ttl,
        order_id=order_id,
        reason=reason,
    )
    await uow.holds.add(hold)
    move = Movement(
        EntryType.HOLD,
        available=-points,
        held=points,
        reason=reason,
        order_id=order_id,
        hold_id=hold.hold_id,
    )
    [entry] = await _record(uow, after, delta, [move], ctx)
    return hold, entry, summarize(after, await uow.lots.open_lots(ctx.program_id, ctx.customer_id))


async def _finish_hold(
    uow: PointsUnitOfWork, ctx: Context, hold: Hold, state: HoldState, captured: int = 0
) -> Hold:
    """Move an active hold to ``state`` or raise why it cannot move."""
    hold_id = hold.hold_id
    if state is HoldState.CAPTURED:
        _refuse_finished(hold, ctx.now)
        if captured > hold.points:
            description = f"exceeds the {hold.points} points held"
            raise InvalidArgument(
                f"points: {description}",
                reason="CAPTURE_EXCEEDS_HOLD",
                violations=[FieldViolation("points", description, "CAPTURE_EXCEEDS_HOLD")],
                metadata={"held": str(hold.points)},
            )
    finished = await uow.holds.finish(
        hold,
        state,
        ctx.now,
        captured=captured,
        active_until_after=ctx.now if state is HoldState.CAPTURED else None,
    )
    if finished is None:  # a concurrent capture or release won: report the state it left
        current = await uow.holds.get(ctx.program_id, ctx.customer_id, hold_id)
        _refuse_finished(current or hold, ctx.now)
        raise hold_not_found(hold_id)  # pragma: no cover - refuse_finished always raises
    return finished


async def capture_hold(
    uow: PointsUnitOfWork, ctx: Context, hold_id: str, points: int | None, order_id: str = ""
) -> tuple[Hold, list[Entry], Balance]:
    """Spend all or part of a hold; the remainder goes back to available at once."""
    hold = await uow.holds.get(ctx.program_id, ctx.customer_id, hold_id)
    if hold is None:
        raise hold_not_found(hold_id)
    if order_id and hold.order_id and order_id != hold.order_id:
        raise InvalidArgument.for_field(
            "order_id", f"must equal the hold's order id {hold.order_id}", "ORDER_MISMATCH"
        )
    captured = hold.points if points is None else points
    finished = await _finish_hold(uow, ctx, hold, HoldState.CAPTURED, captured)
    remainder = finished.points - captured
    delta = Delta(
        available=remainder, held=-finished.points, spent=captured, entries=2 if remainder else 1
    )
    after = await uow.accounts.apply(ctx.program_id, ctx.customer_id, delta, ctx.now)
    if after is None:  # pragma: no cover - a hold implies its account
        raise customer_not_found(ctx.program_id, ctx.customer_id)
    lots = await uow.lots.open_lots(ctx.program_id, ctx.customer_id)
    takes = allocate((lot for lot in lots if lot.available_at is None), captured)
    await uow.lots.take(takes)
    order = order_id or finished.order_id
    moves = [
        Movement(
            EntryType.CAPTURE,
            held=-captured,
            hold_id=hold_id,
            order_id=order,
            reason=finished.reason,
        )
    ]
    if remainder:
        moves.append(
            Movement(
                EntryType.RELEASE,
                available=remainder,
                held=-remainder,
                hold_id=hold_id,
                order_id=order,
                reason="Remainder of a partial capture",
            )
        )
    entries = await _record(uow, after, delta, moves, ctx)
    if order:  # a refund of the order restores them
        await uow.orders.record_spent(ctx.program_id, ctx.customer_id, order, captured, ctx.now)
    return finished, entries, summarize(after, _after_takes(lots, takes))


async def release_hold(
    uow: PointsUnitOfWork, ctx: Context, hold_id: str, reason: str, *, expired: bool = False
) -> tuple[Hold, Entry | None, Balance]:
    """Return held points to available. Releasing a finished (not captured) hold is a no-op."""
    hold = await uow.holds.get(ctx.program_id, ctx.customer_id, hold_id)
    if hold is None:
        raise hold_not_found(hold_id)
    if hold.state is HoldState.CAPTURED:
        _refuse_finished(hold, ctx.now)
    if hold.state is not HoldState.ACTIVE:
        account = await uow.accounts.get(ctx.program_id, ctx.customer_id)
        assert account is not None
        return (
            hold,
            None,
            summarize(account, await uow.lots.open_lots(ctx.program_id, ctx.customer_id)),
        )
    state = HoldState.EXPIRED if expired or hold.expires_at <= ctx.now else HoldState.RELEASED
    finished = await _finish_hold(uow, ctx, hold, state)
    delta = Delta(available=finished.points, held=-finished.points)
    after = await uow.accounts.apply(ctx.program_id, ctx.customer_id, delta, ctx.now)
    assert after is not None, "a hold implies its account"
    move = Movement(
        EntryType.RELEASE,
        available=finished.points,
        held=-finished.points,
        hold_id=hold_id,
        order_id=finished.order_id,
        reason=reason or ("Hold expired" if state is HoldState.EXPIRED else "Released"),
    )
    [entry] = await _record(uow, after, delta, [move], ctx)
    return (
        finished,
        entry,
        summarize(after, await uow.lots.open_lots(ctx.program_id, ctx.customer_id)),
    )


# -- reading ----------------------------------------------------------------------------


async def balance(uow: PointsUnitOfWork, program_id: str, customer_id: str) -> Balance:
    account = await uow.accounts.get(program_id, customer_id)
    if account is None:
        raise customer_not_found(program_id, customer_id)
    return summarize(account, await uow.lots.open_lots(program_id, customer_id))


# -- background work (idempotent: running twice changes nothing more) -------------------


async def expire_due(uow: PointsUnitOfWork, ctx: Context) -> Entry | None:
    """Expire this account's available points whose time has come."""
    lock = Delta(entries=0)
    account = await uow.accounts.apply(ctx.program_id, ctx.customer_id, lock, ctx.now)
    if account is None:
        return None
    lots = await uow.lots.open_lots(ctx.program_id, ctx.customer_id)
    due = [
        lot
        for lot in lots
        if lot.available_at is None and lot.expires_at is not None and lot.expires_at <= ctx.now
    ]
    points = expirable_points(due, account)
    if points <= 0:
        return None
    await uow.lots.take(allocate(due, points))
    delta = Delta(available=-points)
    after = await uow.accounts.apply(ctx.program_id, ctx.customer_id, delta, ctx.now)
    assert after is not None
    first_due = min(lot.expires_at for lot in due if lot.expires_at is not None)
    move = Movement(
        EntryType.EXPIRE, available=-points, reason="Points expired", occurred_at=first_due
    )
    [entry] = await _record(uow, after, delta, [move], ctx)
    return entry


async def activate_due(uow: PointsUnitOfWork, ctx: Context) -> list[Entry]:
    """Make this account's pending points spendable once their pending period is over."""
    lock = Delta(entries=0)
    account = await uow.accounts.apply(ctx.program_id, ctx.customer_id, lock, ctx.now)
    if account is None:
        return []
    due = [
        lot
        for lot in await uow.lots.open_lots(ctx.program_id, ctx.customer_id)
        if lot.available_at is not None and lot.available_at <= ctx.now
    ]
    if not due:
        return []
    points = sum(lot.remaining for lot in due)
    delta = Delta(available=points, pending=-points, entries=len(due))
    after = await uow.accounts.apply(ctx.program_id, ctx.customer_id, delta, ctx.now)
    assert after is not None
    # A debt (negative available) is paid from activated points first.
    backing_gain = spendable_backing(after) - spendable_backing(before(after, delta))
    for lot in due:
        kept = min(lot.remaining, backing_gain)
        backing_gain -= kept
        await uow.lots.activate(lot.lot_id, kept)
    moves = [
        Movement(
            EntryType.ACTIVATE,
            available=lot.remaining,
            pending=-lot.remaining,
            order_id=lot.order_id,
            reason="Pending period over",
            occurred_at=lot.available_at,
            expires_at=lot.expires_at,
        )
        for lot in due
    ]
    return await _record(uow, after, delta, moves, ctx)
