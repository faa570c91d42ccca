"""SQL implementations of the points domain's repository protocols. They never commit."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.points.domain.program import (
    ExpiryKind,
    ExpiryPolicy,
    Program,
    RefundPolicy,
    Rounding,
)
from services.points.storage.tables import programs


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _program_row(program: Program) -> dict[str, Any]:
    return {
        "program_id": program.program_id,
        "display_name": program.name,
        "currency_code": program.currency_code,
        "time_zone": program.time_zone,
        "expiry_kind": program.expiry.kind.value,
        "expiry_count": program.expiry.count,
        "pending_seconds": program.pending_seconds,
        "refund_policy": program.refund_policy.value,
        "rounding": program.rounding.value,
        "etag": program.etag,
        "created_at": program.created_at,
        "updated_at": program.updated_at,
    }


def _program(row: sa.Row[Any]) -> Program:
    return Program(
        program_id=row.program_id,
        name=row.display_name,
        currency_code=row.currency_code,
        time_zone=row.time_zone,
        expiry=ExpiryPolicy(ExpiryKind(row.expiry_kind), row.expiry_count),
        pending_seconds=row.pending_seconds,
        refund_policy=RefundPolicy(row.refund_policy),
        rounding=Rounding(row.rounding),
        etag=row.etag,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )


class SqlProgramRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, program: Program) -> None:
        await self._session.execute(sa.insert(programs).values(_program_row(program)))

    async def get(self, program_id: str) -> Program | None:
        query = sa.select(programs).where(programs.c.program_id == program_id)
        row = (await self._session.execute(query)).first()
        return None if row is None else _program(row)

    async def update(self, program: Program) -> None:
        row = _program_row(program)
        del row["program_id"], row["created_at"]
        await self._session.execute(
            sa.update(programs).where(programs.c.program_id == program.program_id).values(row)
        )

    async def list_after(self, after_id: str | None, limit: int) -> list[Program]:
        query = sa.select(programs).order_by(programs.c.program_id).limit(limit)
        if after_id is not None:
            query = query.where(programs.c.program_id > after_id)
        return [_program(row) for row in await self._session.execute(query)]
