"""Admin keys with a name, role, expiry, creator and last use; tokens per
application and day; audit events listed by action or actor.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Existing admin keys become what they were: environment or organization keys
with the admin role, created by "system", never expiring.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(64)
_ADMIN_KEY_COLUMNS = ("name", "role", "expires_at", "created_by", "last_used_at")


def upgrade() -> None:
    with op.batch_alter_table("admin_keys") as batch:
        batch.add_column(sa.Column("name", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="admin"))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("created_by", sa.Text(), nullable=False, server_default="system")
        )
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_admin_keys_organization_id_id", "admin_keys", ["organization_id", "id"])
    op.create_table(
        "application_daily_usage",
        sa.Column("application_id", ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tokens_issued", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name="fk_application_daily_usage_application_id_applications",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("application_id", "day", name="pk_application_daily_usage"),
    )
    op.create_index("ix_audit_events_action_id", "audit_events", ["action", "id"])
    op.create_index("ix_audit_events_actor_id", "audit_events", ["actor", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_actor_id", "audit_events")
    op.drop_index("ix_audit_events_action_id", "audit_events")
    op.drop_table("application_daily_usage")
    op.drop_index("ix_admin_keys_organization_id_id", "admin_keys")
    with op.batch_alter_table("admin_keys") as batch:
        for column in _ADMIN_KEY_COLUMNS:
            batch.drop_column(column)
