"""Ledger: accounts, lots, entries, holds.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, length: int) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length), nullable=False)


def _int(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.BigInteger, nullable=False)


def upgrade() -> None:
    op.create_table(
        "accounts",
        _text("program_id", 64),
        _text("customer_id", 128),
        *(
            _int(n)
            for n in (
                "available",
                "pending",
                "held",
                "lifetime_earned",
                "lifetime_spent",
                "entry_count",
            )
        ),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("program_id", "customer_id", name="pk_accounts"),
        sa.CheckConstraint("pending >= 0 AND held >= 0", name="ck_accounts_buckets_not_negative"),
    )
    op.create_table(
        "lots",
        _text("lot_id", 64),
        _text("program_id", 64),
        _text("customer_id", 128),
        _int("amount"),
        _int("remaining"),
        _ts("earned_at"),
        _ts("expires_at", nullable=True),
        _ts("available_at", nullable=True),
        _text("order_id", 128),
        sa.PrimaryKeyConstraint("lot_id", name="pk_lots"),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= amount", name="ck_lots_remaining_in_range"
        ),
    )
    op.create_index("ix_lots_account_open", "lots", ["program_id", "customer_id", "remaining"])
    op.create_index("ix_lots_expires_at", "lots", ["expires_at"])
    op.create_index("ix_lots_available_at", "lots", ["available_at"])
    op.create_table(
        "ledger_entries",
        _text("entry_id", 64),
        _text("program_id", 64),
        _text("customer_id", 128),
        _int("sequence"),
        _text("type", 16),
        *(
            _int(n)
            for n in (
                "available_delta",
                "pending_delta",
                "held_delta",
                "balance_after",
                "available_after",
            )
        ),
        _text("reason", 500),
        _text("order_id", 128),
        _text("refund_id", 128),
        _text("rule_id", 64),
        _text("event_type", 128),
        _text("hold_id", 64),
        _text("reward_id", 64),
        _text("request_id", 128),
        _ts("created_at"),
        _ts("occurred_at"),
        _ts("expires_at", nullable=True),
        _ts("available_at", nullable=True),
        sa.PrimaryKeyConstraint("entry_id", name="pk_ledger_entries"),
        sa.UniqueConstraint("program_id", "customer_id", "sequence", name="uq_entry_sequence"),
    )
    op.create_table(
        "holds",
        _text("hold_id", 64),
        _text("program_id", 64),
        _text("customer_id", 128),
        _int("points"),
        _int("captured_points"),
        _text("state", 16),
        _text("order_id", 128),
        _text("reason", 500),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("hold_id", name="pk_holds"),
    )
    op.create_index("ix_holds_active_expiry", "holds", ["state", "expires_at"])


def downgrade() -> None:
    for table in ("holds", "ledger_entries", "lots", "accounts"):
        op.drop_table(table)
