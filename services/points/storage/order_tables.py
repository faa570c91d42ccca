"""Orders and their refunds, on the points service's ``metadata``.

An ``orders`` row is written when an order earns or points are spent on it, in the same
transaction, so a refund finds the facts as they were. Every writer of a row holds the
customer's account row lock (it is the first statement of every ledger mutation), so
the row is read and rewritten without a lock of its own.
"""

from __future__ import annotations

import sqlalchemy as sa

from services.points.storage.tables import metadata

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("program_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("order_id", sa.String(128), primary_key=True),
    # The facts EarnForOrder received; NULL when the order only spent points.
    sa.Column("currency_code", sa.String(3), nullable=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=True),
    # [{"line_id", "quantity", "unit_price_minor"}, …]; NULL when earned without lines.
    sa.Column("lines", sa.JSON, nullable=True),
    sa.Column("points_earned", sa.BigInteger, nullable=False),
    # The lot of the order's points while they are pending; NULL when they never were.
    sa.Column("pending_lot_id", sa.String(64), nullable=True),
    sa.Column("points_spent", sa.BigInteger, nullable=False),
    # What the refunds covered, from which the refunded share is derived exactly.
    sa.Column("refunded_amount_minor", sa.BigInteger, nullable=False),
    sa.Column("refunded_units", sa.JSON, nullable=False),  # {line_id: units}
    sa.Column("fully_refunded", sa.Boolean, nullable=False),
    # What the refunds moved so far.
    sa.Column("points_clawed_back", sa.BigInteger, nullable=False),
    sa.Column("points_not_recovered", sa.BigInteger, nullable=False),
    sa.Column("points_restored", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Refunds never give back more than the order earned or restore more than it spent.
    sa.CheckConstraint(
        "points_clawed_back + points_not_recovered <= points_earned"
        " AND points_restored <= points_spent",
        name="refunds_within_order",
    ),
)

# One row per refund of an order: its audit trail, and how a repeated refund id is known.
refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("program_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("order_id", sa.String(128), primary_key=True),
    sa.Column("refund_id", sa.String(128), primary_key=True),
    sa.Column("scope", sa.String(16), nullable=False),  # full, amount or lines
    # The refunded amount (scope "amount") or {line_id: units} (scope "lines"); else NULL.
    sa.Column("amount_minor", sa.BigInteger, nullable=True),
    sa.Column("lines", sa.JSON, nullable=True),
    sa.Column("points_clawed_back", sa.BigInteger, nullable=False),
    sa.Column("points_not_recovered", sa.BigInteger, nullable=False),
    sa.Column("points_restored", sa.BigInteger, nullable=False),
    sa.Column("order_fully_refunded", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
