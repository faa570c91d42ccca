"""The rewards catalog and its redemptions, on the points service's ``metadata``.

What queries filter on or update atomically is a column (kind, stock, prices); what a
kind of reward describes (campaign, SKU, charity) is one JSON document, read whole.
"""

from __future__ import annotations

import sqlalchemy as sa

from services.points.storage.tables import metadata

rewards = sa.Table(
    "rewards",
    metadata,
    sa.Column("reward_id", sa.String(64), primary_key=True),
    sa.Column("program_id", sa.String(64), nullable=False),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("description", sa.String(2000), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("points_cost", sa.BigInteger, nullable=False),
    # The points-plus-cash price; all three NULL when the reward is points only.
    sa.Column("cash_points", sa.BigInteger, nullable=True),
    sa.Column("cash_currency", sa.String(3), nullable=True),
    sa.Column("cash_amount_minor", sa.BigInteger, nullable=True),
    # The per-customer limit; NULL when there is none.
    sa.Column("limit_max_count", sa.Integer, nullable=True),
    sa.Column("limit_period", sa.String(16), nullable=True),
    # Units left of a physical item (NULL for other kinds). Redemptions take a unit with
    # one conditional UPDATE; the check makes overselling impossible even for a bug.
    sa.Column("stock", sa.BigInteger, nullable=True),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("stock >= 0", name="stock_not_negative"),
    sa.Index("ix_rewards_program_created", "program_id", "created_at", "reward_id"),
)

# One row per redemption: the audit trail of who got what, for how much, with which code.
reward_redemptions = sa.Table(
    "reward_redemptions",
    metadata,
    sa.Column("redemption_id", sa.String(64), primary_key=True),
    sa.Column("program_id", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("reward_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("payment_option", sa.String(32), nullable=False),
    sa.Column("points_spent", sa.BigInteger, nullable=False),
    sa.Column("cash_currency", sa.String(3), nullable=False),
    sa.Column("cash_amount_minor", sa.BigInteger, nullable=False),
    sa.Column("voucher_code", sa.String(128), nullable=False),
    sa.Column("entry_id", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(128), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index(
        "ix_reward_redemptions_customer", "program_id", "customer_id", "reward_id", "created_at"
    ),
)

# Per-customer limit counters: redemptions of a reward by a customer in one period (the
# period's UTC start, or "lifetime"). Counting is one upsert that only increments below the
# limit, so concurrent redemptions by one customer can never exceed it.
reward_limit_counts = sa.Table(
    "reward_limit_counts",
    metadata,
    sa.Column("program_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("reward_id", sa.String(64), primary_key=True),
    sa.Column("period", sa.String(40), primary_key=True),
    sa.Column("redeemed", sa.Integer, nullable=False),
)
