"""Running and checking the store's Alembic migrations.

``m2mauth migrate`` calls :func:`migrate`; the server calls :func:`check_schema`
at start and refuses to serve a database whose schema is not exactly the one
this version of m2mauth was written for.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from m2mauth.core.errors import StoreUnavailable
from m2mauth.store.engine import READ_ONLY, create_store_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key serialising concurrent `m2mauth migrate` runs (say,
# one per replica at deploy time): the second waits, then finds nothing to do.
MIGRATION_LOCK_KEY = 0x6D326D_6D6967  # "m2m" "mig"


class SchemaError(Exception):
    """The database schema is not the one this m2mauth needs."""


def alembic_config() -> Config:
    """An Alembic configuration for the migrations shipped in this package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration this m2mauth knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError("no migrations found")
    return head


def current_revision(connection: Connection) -> str | None:
    """The migration the database is at; None if it was never migrated."""
    return MigrationContext.configure(connection).get_current_revision()


def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the newest schema (a no-op if it is there).

    All migrations run in one transaction: on failure nothing is changed.
    Driver errors propagate unchanged, so the operator sees the real cause.
    """
    engine = create_store_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            # On SQLite the BEGIN IMMEDIATE of engine.begin() already serialises.
            config = alembic_config()
            # Handing in the connection (env.py reads it) rather than a URL keeps
            # the URL out of Alembic's ConfigParser, which chokes on "%" in passwords.
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaError` unless the database is at this m2mauth's head revision.

    Raises StoreUnavailable if the database cannot be reached.
    """
    try:
        with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            current = current_revision(connection)
    except DBAPIError as exc:
        raise StoreUnavailable(f"the store is unavailable: {exc.orig}") from exc
    if current == head_revision():
        return
    if current is not None and not _is_known(current):
        raise SchemaError(
            f"database schema is newer than this m2mauth (revision {current}): upgrade m2mauth"
        )
    raise SchemaError("database is not migrated: run `m2mauth migrate`")


def _is_known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False
