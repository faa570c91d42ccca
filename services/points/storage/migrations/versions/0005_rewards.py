"""Rewards catalog: rewards with stock, redemptions, per-customer limit counters.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
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
        "rewards",
        _text("reward_id", 64),
        _text("program_id", 64),
        _text("display_name", 200),
        _text("description", 2000),
        _text("kind", 32),
        _int("points_cost"),
        _int("cash_points", nullable=True),
        sa.Column("cash_currency", sa.String(3), nullable=True),
        _int("cash_amount_minor", nullable=True),
        sa.Column("limit_max_count", sa.Integer, nullable=True),
        sa.Column("limit_period", sa.String(16), nullable=True),
        _int("stock", nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("reward_id", name="pk_rewards"),
        sa.CheckConstraint("stock >= 0", name="ck_rewards_stock_not_negative"),
    )
    op.create_index(
        "ix_rewards_program_created", "rewards", ["program_id", "created_at", "reward_id"]
    )
    op.create_table(
        "reward_redemptions",
        _text("redemption_id", 64),
        _text("program_id", 64),
        _text("customer_id", 128),
        _text("reward_id", 64),
        _text("kind", 32),
        _text("payment_option", 32),
        _int("points_spent"),
        _text("cash_currency", 3),
        _int("cash_amount_minor"),
        _text("voucher_code", 128),
        _text("entry_id", 64),
        _text("order_id", 128),
        _text("request_id", 128),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("redemption_id", name="pk_reward_redemptions"),
    )
    op.create_index(
        "ix_reward_redemptions_customer",
        "reward_redemptions",
        ["program_id", "customer_id", "reward_id", "created_at"],
    )
    op.create_table(
        "reward_limit_counts",
        _text("program_id", 64),
        _text("customer_id", 128),
        _text("reward_id", 64),
        _text("period", 40),
        sa.Column("redeemed", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint(
            "program_id", "customer_id", "reward_id", "period", name="pk_reward_limit_counts"
        ),
    )


def downgrade() -> None:
    op.drop_table("reward_limit_counts")
    op.drop_table("reward_redemptions")
    op.drop_table("rewards")
