"""SQL for orders and refunds. Repositories never commit.

Callers hold the customer's account row lock (see order_tables.py); spending still adds
to ``points_spent`` in the statement itself, so no write depends on an earlier read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.points.domain.refunds import (
    AmountRefund,
    FullRefund,
    OrderedLine,
    OrderRecord,
    Refunded,
    RefundRecord,
)
from services.points.domain.rules import Money
from services.points.storage.order_tables import orders, refunds


def _insert(session: AsyncSession) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else ""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _key(program_id: str, customer_id: str, order_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        orders.c.program_id == program_id,
        orders.c.customer_id == customer_id,
        orders.c.order_id == order_id,
    )


def _lines_json(lines: tuple[OrderedLine, ...] | None) -> list[dict[str, Any]] | None:
    if lines is None:
        return None
    return [
        {
            "line_id": line.line_id,
            "quantity": line.quantity,
            "unit_price_minor": line.unit_price_minor,
        }
        for line in lines
    ]


def _refunded_values(refunded: Refunded) -> dict[str, Any]:
    return {
        "refunded_amount_minor": refunded.amount_minor,
        "refunded_units": dict(refunded.units),
        "fully_refunded": refunded.full,
        "points_clawed_back": refunded.clawed_back,
        "points_not_recovered": refunded.not_recovered,
        "points_restored": refunded.restored,
    }


def _order(row: Any) -> OrderRecord:
    amount = None
    if row.amount_minor is not None:
        amount = Money(row.currency_code, row.amount_minor)
    lines = None
    if row.lines is not None:
        lines = tuple(
            OrderedLine(line["line_id"], line["quantity"], line["unit_price_minor"])
            for line in row.lines
        )
    return OrderRecord(
        program_id=row.program_id,
        customer_id=row.customer_id,
        order_id=row.order_id,
        amount=amount,
        lines=lines,
        points_earned=row.points_earned,
        pending_lot_id=row.pending_lot_id,
        points_spent=row.points_spent,
        refunded=Refunded(
            amount_minor=row.refunded_amount_minor,
            units=row.refunded_units,
            full=row.fully_refunded,
            clawed_back=row.points_clawed_back,
            not_recovered=row.points_not_recovered,
            restored=row.points_restored,
        ),
    )


def _scope_values(refund: RefundRecord) -> dict[str, Any]:
    scope = refund.scope
    if isinstance(scope, FullRefund):
        return {"scope": "full", "amount_minor": None, "lines": None}
    if isinstance(scope, AmountRefund):
        return {"scope": "amount", "amount_minor": scope.amount.amount_minor, "lines": None}
    units = {line.line_id: line.quantity for line in scope.lines}
    return {"scope": "lines", "amount_minor": None, "lines": units}


class SqlOrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, program_id: str, customer_id: str, order_id: str) -> OrderRecord | None:
        query = sa.select(orders).where(_key(program_id, customer_id, order_id))
        row = (await self._session.execute(query)).first()
        return None if row is None else _order(row)

    def _new_row(self, order: OrderRecord, now: dt.datetime) -> dict[str, Any]:
        amount = order.amount
        return {
            "program_id": order.program_id,
            "customer_id": order.customer_id,
            "order_id": order.order_id,
            "currency_code": None if amount is None else amount.currency_code,
            "amount_minor": None if amount is None else amount.amount_minor,
            "lines": _lines_json(order.lines),
            "points_earned": order.points_earned,
            "pending_lot_id": order.pending_lot_id,
            "points_spent": order.points_spent,
            **_refunded_values(order.refunded),
            "created_at": now,
            "updated_at": now,
        }

    async def record_earned(self, order: OrderRecord, now: dt.datetime) -> None:
        """Record what the order earned; points spent on it before are kept."""
        insert = _insert(self._session)(orders).values(self._new_row(order, now))
        earned = {
            name: insert.excluded[name]
            for name in (
                "currency_code",
                "amount_minor",
                "lines",
                "points_earned",
                "pending_lot_id",
                "updated_at",
            )
        }
        await self._session.execute(
            insert.on_conflict_do_update(
                index_elements=[orders.c.program_id, orders.c.customer_id, orders.c.order_id],
                set_=earned,
            )
        )

    async def record_spent(
        self, program_id: str, customer_id: str, order_id: str, points: int, now: dt.datetime
    ) -> None:
        """Add ``points`` spent on the order, recording the order when it is new."""
        new = OrderRecord(program_id, customer_id, order_id, points_spent=points)
        insert = _insert(self._session)(orders).values(self._new_row(new, now))
        await self._session.execute(
            insert.on_conflict_do_update(
                index_elements=[orders.c.program_id, orders.c.customer_id, orders.c.order_id],
                set_={"points_spent": orders.c.points_spent + points, "updated_at": now},
            )
        )

    async def has_refund(
        self, program_id: str, customer_id: str, order_id: str, refund_id: str
    ) -> bool:
        query = sa.select(refunds.c.refund_id).where(
            refunds.c.program_id == program_id,
            refunds.c.customer_id == customer_id,
            refunds.c.order_id == order_id,
            refunds.c.refund_id == refund_id,
        )
        return (await self._session.execute(query)).first() is not None

    async def record_refund(
        self, order: OrderRecord, refund: RefundRecord, now: dt.datetime
    ) -> None:
        """Store the order's refund state after ``refund`` and the refund's audit row."""
        await self._session.execute(
            sa.update(orders)
            .where(_key(order.program_id, order.customer_id, order.order_id))
            .values(**_refunded_values(order.refunded), updated_at=now)
        )
        await self._session.execute(
            sa.insert(refunds).values(
                program_id=order.program_id,
                customer_id=order.customer_id,
                order_id=order.order_id,
                refund_id=refund.refund_id,
                **_scope_values(refund),
                points_clawed_back=refund.clawed_back,
                points_not_recovered=refund.not_recovered,
                points_restored=refund.restored,
                order_fully_refunded=refund.order_fully_refunded,
                reason=refund.reason,
                request_id=refund.request_id,
                created_at=now,
            )
        )
