"""Applications choose their token endpoint authentication method and may carry a
public JWK Set, inline or by URI (private_key_jwt, RFC 7523 section 2.2); used client assertions
are remembered until they expire, so that none is accepted twice.

Existing applications keep authenticating with their client secrets.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("applications") as batch:
        batch.add_column(
            sa.Column(
                "token_endpoint_auth_method",
                sa.String(16),
                nullable=False,
                server_default="client_secret",
            )
        )
        batch.add_column(sa.Column("jwks", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("jwks_uri", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "client_assertions",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_client_assertions"),
    )
    op.create_index("ix_client_assertions_expires_at", "client_assertions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_client_assertions_expires_at", table_name="client_assertions")
    op.drop_table("client_assertions")
    with op.batch_alter_table("applications") as batch:
        batch.drop_column("jwks_uri")
        batch.drop_column("jwks")
        batch.drop_column("token_endpoint_auth_method")
