"""Engines for the store's two databases, configured for safe concurrent use.

Shared by :mod:`m2mauth.store.sql` (serving) and :mod:`m2mauth.store.schema`
(migrating), so a migration runs with the same driver and SQLite settings as
the server.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

# Seconds libpq waits for a TCP connection; its default is forever, which would
# turn an unreachable database into hung requests instead of UNAVAILABLE.
POSTGRES_CONNECT_TIMEOUT = 10
# Milliseconds a SQLite transaction waits for the writer lock before failing
# with "database is locked" (which the store reports as unavailable).
SQLITE_BUSY_TIMEOUT_MS = 5000
# Execution option: this connection only reads (see _begin_sqlite).
READ_ONLY = "m2mauth_read_only"


def normalize_url(url: str) -> URL:
    """Parse a database URL; ``postgresql://`` (and ``postgres://``) mean psycopg 3.

    SQLAlchemy's bare ``postgresql`` scheme picks psycopg2, which we do not ship.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_store_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql://...``)."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(parsed, pool_size=pool_size)
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_sqlite)
        return engine
    if backend == "postgresql":
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT
        # pre_ping: a pooled connection killed by a database restart is replaced
        # instead of failing the next request.
        return create_engine(
            parsed, pool_size=pool_size, pool_pre_ping=True, connect_args=connect_args
        )
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _configure_sqlite(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    assert isinstance(dbapi_connection, sqlite3.Connection)
    # Take transaction control away from the sqlite3 module (it would not BEGIN
    # before SELECT or DDL); _begin_sqlite emits BEGIN itself. This is the recipe
    # from SQLAlchemy's SQLite dialect documentation.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers do not block the writer nor the writer readers.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # Off by default in SQLite; the ON DELETE CASCADE clauses need it.
        cursor.execute("PRAGMA foreign_keys=ON")
        # Durable across application crashes; in WAL mode only a power loss can
        # lose the last commits, never corrupt the database.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _begin_sqlite(conn: Connection) -> None:
    # BEGIN IMMEDIATE takes the writer lock up front. A deferred BEGIN would
    # take it at the first write, and two transactions that both read and then
    # write would deadlock: SQLite fails one with SQLITE_BUSY at once, without
    # waiting busy_timeout. Taking it up front makes units of work queue instead,
    # which is also what serialises lock_application and lock_signing_keys.
    # Pure reads (ping, schema check) use a deferred BEGIN and never queue.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
