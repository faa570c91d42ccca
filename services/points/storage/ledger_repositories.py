"""SQL for the ledger. Account changes are single conditional statements (see tables.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.points.domain.ledger import (
    Account,
    Delta,
    Entry,
    EntryType,
    Hold,
    HoldState,
    Lot,
    Take,
)
from services.points.storage.tables import accounts, entries, holds, lots


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _account(row: Any) -> Account:
    return Account(
        program_id=row.program_id,
        customer_id=row.customer_id,
        available=row.available,
        pending=row.pending,
        held=row.held,
        lifetime_earned=row.lifetime_earned,
        lifetime_spent=row.lifetime_spent,
        entry_count=row.entry_count,
    )


def _increments(delta: Delta, now: dt.datetime, table: Any) -> dict[str, Any]:
    return {
        "available": table.c.available + delta.available,
        "pending": table.c.pending + delta.pending,
        "held": table.c.held + delta.held,
        "lifetime_earned": table.c.lifetime_earned + delta.earned,
        "lifetime_spent": table.c.lifetime_spent + delta.spent,
        "entry_count": table.c.entry_count + delta.entries,
        "updated_at": now,
    }


class SqlAccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, program_id: str, customer_id: str) -> Account | None:
        query = sa.select(accounts).where(
            accounts.c.program_id == program_id, accounts.c.customer_id == customer_id
        )
        row = (await self._session.execute(query)).first()
        return None if row is None else _account(row)

    async def apply(
        self,
        program_id: str,
        customer_id: str,
        delta: Delta,
        now: dt.datetime,
        *,
        min_available: int | None = None,
    ) -> Account | None:
        """Apply ``delta`` if the account exists (and has ``min_available``); the new state."""
        statement = (
            sa.update(accounts)
            .where(accounts.c.program_id == program_id, accounts.c.customer_id == customer_id)
            .values(_increments(delta, now, accounts))
            .returning(*accounts.c)
        )
        if min_available is not None:
            statement = statement.where(accounts.c.available >= min_available)
        row = (await self._session.execute(statement)).first()
        return None if row is None else _account(row)

    async def credit(
        self, program_id: str, customer_id: str, delta: Delta, now: dt.datetime
    ) -> Account:
        """Apply ``delta``, creating the account on first use; the new state."""
        dialect = self._session.bind.dialect.name if self._session.bind is not None else ""
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        values = insert(accounts).values(
            program_id=program_id,
            customer_id=customer_id,
            available=delta.available,
            pending=delta.pending,
            held=delta.held,
            lifetime_earned=delta.earned,
            lifetime_spent=delta.spent,
            entry_count=delta.entries,
            created_at=now,
            updated_at=now,
        )
        statement = values.on_conflict_do_update(
            index_elements=[accounts.c.program_id, accounts.c.customer_id],
            set_=_increments(delta, now, accounts),
        ).returning(*accounts.c)
        row = (await self._session.execute(statement)).one()
        return _account(row)

    async def with_due_expiry(self, now: dt.datetime, limit: int) -> list[tuple[str, str]]:
        # Only accounts with available points: what backs holds or debts cannot expire,
        # so this set shrinks with every pass and the job always terminates.
        query = (
            sa.select(lots.c.program_id, lots.c.customer_id)
            .join(
                accounts,
                sa.and_(
                    accounts.c.program_id == lots.c.program_id,
                    accounts.c.customer_id == lots.c.customer_id,
                ),
            )
            .where(
                lots.c.expires_at <= now,
                lots.c.remaining > 0,
                lots.c.available_at.is_(None),
                accounts.c.available > 0,
            )
            .distinct()
            .limit(limit)
        )
        return [(row.program_id, row.customer_id) for row in await self._session.execute(query)]

    async def with_due_activation(self, now: dt.datetime, limit: int) -> list[tuple[str, str]]:
        query = (
            sa.select(lots.c.program_id, lots.c.customer_id)
            .where(lots.c.available_at <= now)
            .distinct()
            .limit(limit)
        )
        return [(row.program_id, row.customer_id) for row in await self._session.execute(query)]


def _lot(row: Any) -> Lot:
    return Lot(
        lot_id=row.lot_id,
        program_id=row.program_id,
        customer_id=row.customer_id,
        amount=row.amount,
        remaining=row.remaining,
        earned_at=_utc(row.earned_at),  # type: ignore[arg-type]
        expires_at=_utc(row.expires_at),
        available_at=_utc(row.available_at),
        order_id=row.order_id,
    )


class SqlLotRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, new_lots: Sequence[Lot]) -> None:
        if not new_lots:
            return
        await self._session.execute(
            sa.insert(lots),
            [
                {
                    "lot_id": lot.lot_id,
                    "program_id": lot.program_id,
                    "customer_id": lot.customer_id,
                    "amount": lot.amount,
                    "remaining": lot.remaining,
                    "earned_at": lot.earned_at,
                    "expires_at": lot.expires_at,
                    "available_at": lot.available_at,
                    "order_id": lot.order_id,
                }
                for lot in new_lots
            ],
        )

    def _open(self, program_id: str, customer_id: str) -> sa.Select[Any]:
        return sa.select(lots).where(
            lots.c.program_id == program_id,
            lots.c.customer_id == customer_id,
            lots.c.remaining > 0,
        )

    async def open_lots(self, program_id: str, customer_id: str) -> list[Lot]:
        return [
            _lot(row) for row in await self._session.execute(self._open(program_id, customer_id))
        ]

    async def take(self, takes: Sequence[Take]) -> None:
        if not takes:
            return
        statement = (
            sa.update(lots)
            .where(lots.c.lot_id == sa.bindparam("lot"))
            .values(remaining=lots.c.remaining - sa.bindparam("points"))
        )
        await self._session.execute(
            statement, [{"lot": t.lot_id, "points": t.points} for t in takes]
        )

    async def activate(self, lot_id: str, remaining: int) -> None:
        """End a lot's pending period; ``remaining`` is less when it paid off a debt."""
        await self._session.execute(
            sa.update(lots)
            .where(lots.c.lot_id == lot_id)
            .values(available_at=None, remaining=remaining)
        )


def _entry_row(entry: Entry) -> dict[str, Any]:
    return {
        "entry_id": entry.entry_id,
        "program_id": entry.program_id,
        "customer_id": entry.customer_id,
        "sequence": entry.sequence,
        "type": entry.type.value,
        "available_delta": entry.available_delta,
        "pending_delta": entry.pending_delta,
        "held_delta": entry.held_delta,
        "balance_after": entry.balance_after,
        "available_after": entry.available_after,
        "reason": entry.reason,
        "order_id": entry.order_id,
        "refund_id": entry.refund_id,
        "rule_id": entry.rule_id,
        "event_type": entry.event_type,
        "hold_id": entry.hold_id,
        "reward_id": entry.reward_id,
        "request_id": entry.request_id,
        "created_at": entry.created_at,
        "occurred_at": entry.occurred_at,
        "expires_at": entry.expires_at,
        "available_at": entry.available_at,
    }


def _entry(row: Any) -> Entry:
    values = dict(row._mapping)
    values["type"] = EntryType(values["type"])
    for key in ("created_at", "occurred_at", "expires_at", "available_at"):
        values[key] = _utc(values[key])
    return Entry(**values)


class SqlEntryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, new_entries: Sequence[Entry]) -> None:
        if new_entries:
            await self._session.execute(sa.insert(entries), [_entry_row(e) for e in new_entries])

    async def history(
        self,
        program_id: str,
        customer_id: str,
        *,
        before_sequence: int | None,
        limit: int,
        types: frozenset[EntryType] = frozenset(),
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        order_id: str = "",
    ) -> list[Entry]:
        """Newest first, strictly before ``before_sequence`` when given."""
        query = (
            sa.select(entries)
            .where(entries.c.program_id == program_id, entries.c.customer_id == customer_id)
            .order_by(entries.c.sequence.desc())
            .limit(limit)
        )
        if before_sequence is not None:
            query = query.where(entries.c.sequence < before_sequence)
        if types:
            query = query.where(entries.c.type.in_([t.value for t in types]))
        if created_after is not None:
            query = query.where(entries.c.created_at >= created_after)
        if created_before is not None:
            query = query.where(entries.c.created_at < created_before)
        if order_id:
            query = query.where(entries.c.order_id == order_id)
        return [_entry(row) for row in await self._session.execute(query)]


def _hold(row: Any) -> Hold:
    return Hold(
        hold_id=row.hold_id,
        program_id=row.program_id,
        customer_id=row.customer_id,
        points=row.points,
        captured_points=row.captured_points,
        state=HoldState(row.state),
        order_id=row.order_id,
        reason=row.reason,
        created_at=_utc(row.created_at),  # type: ignore[arg-type]
        expires_at=_utc(row.expires_at),  # type: ignore[arg-type]
        finished_at=_utc(row.finished_at),
    )


class SqlHoldRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, hold: Hold) -> None:
        await self._session.execute(
            sa.insert(holds).values(
                hold_id=hold.hold_id,
                program_id=hold.program_id,
                customer_id=hold.customer_id,
                points=hold.points,
                captured_points=hold.captured_points,
                state=hold.state.value,
                order_id=hold.order_id,
                reason=hold.reason,
                created_at=hold.created_at,
                expires_at=hold.expires_at,
                finished_at=hold.finished_at,
            )
        )

    async def get(self, program_id: str, customer_id: str, hold_id: str) -> Hold | None:
        query = sa.select(holds).where(
            holds.c.hold_id == hold_id,
            holds.c.program_id == program_id,
            holds.c.customer_id == customer_id,
        )
        row = (await self._session.execute(query)).first()
        return None if row is None else _hold(row)

    async def finish(
        self,
        hold: Hold,
        state: HoldState,
        now: dt.datetime,
        *,
        captured: int = 0,
        active_until_after: dt.datetime | None = None,
    ) -> Hold | None:
        """Move an ACTIVE hold to ``state``; None if it is no longer active (lost a race)."""
        statement = (
            sa.update(holds)
            .where(holds.c.hold_id == hold.hold_id, holds.c.state == HoldState.ACTIVE.value)
            .values(state=state.value, captured_points=captured, finished_at=now)
            .returning(*holds.c)
        )
        if active_until_after is not None:
            statement = statement.where(holds.c.expires_at > active_until_after)
        row = (await self._session.execute(statement)).first()
        return None if row is None else _hold(row)

    async def expired_active(self, now: dt.datetime, limit: int) -> list[Hold]:
        query = (
            sa.select(holds)
            .where(holds.c.state == HoldState.ACTIVE.value, holds.c.expires_at <= now)
            .order_by(holds.c.expires_at)
            .limit(limit)
        )
        return [_hold(row) for row in await self._session.execute(query)]
