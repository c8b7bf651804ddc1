"""Initial schema: organizations, applications, secrets, admin and signing keys, revocations, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Written by hand to match m2mauth/store/tables.py; the custom column types there
are stored as the plain types used here (UtcDateTime is a timezone-aware
DateTime, StringTuple and StringDict are JSON text, EnumValue a short string).
Migrations never import the live table definitions: they must keep describing
the schema as it was at this revision.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(64)


def _timestamp(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        _timestamp("tokens_revoked_before", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
        sa.UniqueConstraint("external_id", name="uq_organizations_external_id"),
    )
    op.create_table(
        "applications",
        sa.Column("id", ID, nullable=False),
        sa.Column("client_id", ID, nullable=False),
        sa.Column("organization_id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("audiences", sa.Text(), nullable=False),
        sa.Column("token_ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        _timestamp("tokens_revoked_before", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_applications"),
        sa.UniqueConstraint("client_id", name="uq_applications_client_id"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_applications_organization_id_organizations",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_applications_organization_id_id", "applications", ["organization_id", "id"])
    op.create_table(
        "client_secrets",
        sa.Column("id", ID, nullable=False),
        sa.Column("application_id", ID, nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hint", sa.Text(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("expires_at", nullable=True),
        _timestamp("last_used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_client_secrets"),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name="fk_client_secrets_application_id_applications",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_client_secrets_application_id", "client_secrets", ["application_id"])
    op.create_table(
        "admin_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("key_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hint", sa.Text(), nullable=False),
        sa.Column("organization_id", ID, nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_admin_keys"),
        sa.UniqueConstraint("key_hash", name="uq_admin_keys_key_hash"),
    )
    op.create_table(
        "signing_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("encrypted_private_key", sa.LargeBinary(), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("activated_at", nullable=True),
        _timestamp("deactivated_at", nullable=True),
        _timestamp("retire_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_signing_keys"),
    )
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", ID, nullable=False),
        sa.Column("application_id", ID, nullable=False),
        _timestamp("expires_at", nullable=False),
        _timestamp("revoked_at", nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_revoked_tokens"),
    )
    op.create_index("ix_revoked_tokens_expires_at", "revoked_tokens", ["expires_at"])
    op.create_table(
        "audit_events",
        sa.Column("id", ID, nullable=False),
        _timestamp("time", nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("organization_id", ID, nullable=True),
        sa.Column("application_id", ID, nullable=True),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_organization_id_id", "audit_events", ["organization_id", "id"])
    op.create_index("ix_audit_events_application_id_id", "audit_events", ["application_id", "id"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("revoked_tokens")
    op.drop_table("signing_keys")
    op.drop_table("admin_keys")
    op.drop_table("client_secrets")
    op.drop_table("applications")
    op.drop_table("organizations")
