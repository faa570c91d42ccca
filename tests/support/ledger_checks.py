"""Ledger invariants read straight from the tables, independent of the code under test."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.points.storage.tables import accounts, entries, lots


async def assert_ledger_consistent(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.select(accounts))).all()
        for account in rows:
            where_entries = (entries.c.program_id == account.program_id) & (
                entries.c.customer_id == account.customer_id
            )
            where_lots = (lots.c.program_id == account.program_id) & (
                lots.c.customer_id == account.customer_id
            )
            history = (
                await connection.execute(
                    sa.select(entries).where(where_entries).order_by(entries.c.sequence)
                )
            ).all()
            total = account.available + account.pending + account.held
            points = [e.available_delta + e.pending_delta + e.held_delta for e in history]
            name = f"{account.program_id}/{account.customer_id}"
            assert sum(points) == total, f"{name}: entries sum to {sum(points)}, balance is {total}"
            assert [e.sequence for e in history] == list(range(1, len(history) + 1)), (
                f"{name}: gaps"
            )
            assert account.entry_count == len(history), f"{name}: entry count"
            running = 0
            for entry, change in zip(history, points, strict=True):
                running += change
                assert entry.balance_after == running, f"{name}: balance_after of #{entry.sequence}"
            assert account.pending >= 0
            assert account.held >= 0
            pending_lots = (
                await connection.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(lots.c.remaining), 0)).where(
                        where_lots, lots.c.available_at.is_not(None)
                    )
                )
            ).scalar_one()
            spendable_lots = (
                await connection.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(lots.c.remaining), 0)).where(
                        where_lots, lots.c.available_at.is_(None)
                    )
                )
            ).scalar_one()
            assert pending_lots == account.pending, f"{name}: pending lots {pending_lots}"
            backing = max(0, account.available + account.held)
            assert spendable_lots == backing, f"{name}: lots hold {spendable_lots}, need {backing}"
