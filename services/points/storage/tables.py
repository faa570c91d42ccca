"""The points service's schema. Customer tables will carry (program_id, customer_id)."""

from __future__ import annotations

import sqlalchemy as sa

from shared.db import new_metadata
from shared.idempotency import idempotency_table

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

idempotency_keys = idempotency_table(metadata)
