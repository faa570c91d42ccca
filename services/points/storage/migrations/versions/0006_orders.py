"""Orders (what they earned and spent, what refunds covered) and refunds.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _ts(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _text(name: str, length: int) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length), nullable=False)


def _int(name: str, *, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.BigInteger, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "orders",
        _text("program_id", 64),
        _text("customer_id", 128),
        _text("order_id", 128),
        sa.Column("currency_code", sa.String(3), nullable=True),
        _int("amount_minor", nullable=True),
        sa.Column("lines", sa.JSON, nullable=True),
        _int("points_earned"),
        sa.Column("pending_lot_id", sa.String(64), nullable=True),
        _int("points_spent"),
        _int("refunded_amount_minor"),
        sa.Column("refunded_units", sa.JSON, nullable=False),
        sa.Column("fully_refunded", sa.Boolean, nullable=False),
        _int("points_clawed_back"),
        _int("points_not_recovered"),
        _int("points_restored"),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("program_id", "customer_id", "order_id", name="pk_orders"),
        sa.CheckConstraint(
            "points_clawed_back + points_not_recovered <= points_earned"
            " AND points_restored <= points_spent",
            name="ck_orders_refunds_within_order",
        ),
    )
    op.create_table(
        "refunds",
        _text("program_id", 64),
        _text("customer_id", 128),
        _text("order_id", 128),
        _text("refund_id", 128),
        _text("scope", 16),
        _int("amount_minor", nullable=True),
        sa.Column("lines", sa.JSON, nullable=True),
        _int("points_clawed_back"),
        _int("points_not_recovered"),
        _int("points_restored"),
        sa.Column("order_fully_refunded", sa.Boolean, nullable=False),
        _text("reason", 200),
        _text("request_id", 128),
        _ts("created_at"),
        sa.PrimaryKeyConstraint(
            "program_id", "customer_id", "order_id", "refund_id", name="pk_refunds"
        ),
    )


def downgrade() -> None:
    op.drop_table("refunds")
    op.drop_table("orders")
