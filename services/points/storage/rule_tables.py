"""Earning rules and custom-event awards, on the points service's ``metadata``.

A rule's identity, kind and lifecycle are columns (what queries filter on); what it does
is one JSON document (``definition``), written and read whole, as the API replaces it.
"""

from __future__ import annotations

import sqlalchemy as sa

from services.points.storage.tables import metadata

earning_rules = sa.Table(
    "earning_rules",
    metadata,
    sa.Column("rule_id", sa.String(64), primary_key=True),
    sa.Column("program_id", sa.String(64), nullable=False),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("description", sa.String(2000), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    # The custom-event rule's event type ("" for other kinds): RecordEvent loads a
    # program's rules for one event type, not all of them.
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_earning_rules_program_state", "program_id", "state", "created_at"),
    # "At most one active tier multiplier rule per program", kept by the database so two
    # concurrent creations cannot both succeed.
    sa.Index(
        "ux_earning_rules_active_tier_multiplier",
        "program_id",
        unique=True,
        postgresql_where=sa.text("kind = 'tier_multiplier_rule' AND state = 'active'"),
        sqlite_where=sa.text("kind = 'tier_multiplier_rule' AND state = 'active'"),
    ),
)

# One row per custom-event rule award, keyed by the EARN entry that paid it: frequency
# caps and cooldowns count these, per customer and rule, around the event's occurred_at.
event_awards = sa.Table(
    "event_awards",
    metadata,
    sa.Column("entry_id", sa.String(64), primary_key=True),
    sa.Column("program_id", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("rule_id", sa.String(64), nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index(
        "ix_event_awards_customer_rule", "program_id", "customer_id", "rule_id", "occurred_at"
    ),
)
