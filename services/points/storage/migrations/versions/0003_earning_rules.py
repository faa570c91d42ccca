"""Earning rules and custom-event awards.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ACTIVE_TIER_RULE = sa.text("kind = 'tier_multiplier_rule' AND state = 'active'")


def upgrade() -> None:
    op.create_table(
        "earning_rules",
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("program_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("rule_id", name="pk_earning_rules"),
    )
    op.create_index(
        "ix_earning_rules_program_state",
        "earning_rules",
        ["program_id", "state", "created_at"],
    )
    op.create_index(
        "ux_earning_rules_active_tier_multiplier",
        "earning_rules",
        ["program_id"],
        unique=True,
        postgresql_where=_ACTIVE_TIER_RULE,
        sqlite_where=_ACTIVE_TIER_RULE,
    )
    op.create_table(
        "event_awards",
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("program_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name="pk_event_awards"),
    )
    op.create_index(
        "ix_event_awards_customer_rule",
        "event_awards",
        ["program_id", "customer_id", "rule_id", "occurred_at"],
    )


def downgrade() -> None:
    op.drop_table("event_awards")
    op.drop_table("earning_rules")
