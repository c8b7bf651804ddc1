"""Alembic environment: runs migrations on the connection m2mauth.store.schema hands in.

There is no alembic.ini: migrations run programmatically (``m2mauth migrate``),
on an engine made by m2mauth.store.engine, inside one transaction that schema.py
opens (so a failed migration leaves the database as it was, on both backends).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from m2mauth.store.tables import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations with `m2mauth migrate` (m2mauth.store.schema.migrate)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
