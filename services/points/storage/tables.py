"""The points service's schema. Customer tables will carry (program_id, customer_id)."""

from __future__ import annotations

import sqlalchemy as sa

from shared.db import new_metadata
from shared.idempotency import idempotency_table
from shared.leader import leases_table
from shared.outbox import outbox_table

metadata = new_metadata()

programs = sa.Table(
    "programs",
    metadata,
    sa.Column("program_id", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("currency_code", sa.String(3), nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("expiry_kind", sa.String(32), nullable=False),
    sa.Column("expiry_count", sa.Integer, nullable=False),
    sa.Column("pending_seconds", sa.Integer, nullable=False),
    sa.Column("refund_policy", sa.String(32), nullable=False),
    sa.Column("rounding", sa.String(16), nullable=False),
    sa.Column("etag", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# One row per (program, customer): the bucket counters every mutation updates first, in a
# single conditional statement — which both enforces "never overdraw" and serializes the
# writers of one account (their lot and entry writes follow under that row lock).
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("program_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("available", sa.BigInteger, nullable=False),
    sa.Column("pending", sa.BigInteger, nullable=False),
    sa.Column("held", sa.BigInteger, nullable=False),
    sa.Column("lifetime_earned", sa.BigInteger, nullable=False),
    sa.Column("lifetime_spent", sa.BigInteger, nullable=False),
    sa.Column("entry_count", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("pending >= 0 AND held >= 0", name="buckets_not_negative"),
)

# Points added together (one earning, credit or restore), spent and expired together.
lots = sa.Table(
    "lots",
    metadata,
    sa.Column("lot_id", sa.String(64), primary_key=True),
    sa.Column("program_id", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("remaining", sa.BigInteger, nullable=False),
    sa.Column("earned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("available_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("order_id", sa.String(128), nullable=False),
    sa.CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_in_range"),
    sa.Index("ix_lots_account_open", "program_id", "customer_id", "remaining"),
    sa.Index("ix_lots_expires_at", "expires_at"),
    sa.Index("ix_lots_available_at", "available_at"),
)

entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("entry_id", sa.String(64), primary_key=True),
    sa.Column("program_id", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("available_delta", sa.BigInteger, nullable=False),
    sa.Column("pending_delta", sa.BigInteger, nullable=False),
    sa.Column("held_delta", sa.BigInteger, nullable=False),
    sa.Column("balance_after", sa.BigInteger, nullable=False),
    sa.Column("available_after", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("order_id", sa.String(128), nullable=False),
    sa.Column("refund_id", sa.String(128), nullable=False),
    sa.Column("rule_id", sa.String(64), nullable=False),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("hold_id", sa.String(64), nullable=False),
    sa.Column("reward_id", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("available_at", sa.DateTime(timezone=True), nullable=True),
    # An account's history is numbered without gaps or duplicates.
    sa.UniqueConstraint("program_id", "customer_id", "sequence", name="uq_entry_sequence"),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("hold_id", sa.String(64), primary_key=True),
    sa.Column("program_id", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("captured_points", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("order_id", sa.String(128), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_holds_active_expiry", "state", "expires_at"),
)

idempotency_keys = idempotency_table(metadata)
outbox = outbox_table(metadata)
leases = leases_table(metadata)
