"""Persistence: implementations of :mod:`m2mauth.core.interfaces`, and :func:`open_store`.

``sql.SqlStore`` is the store on SQLite or PostgreSQL (SQLAlchemy Core),
``engine`` configures the connections of both, ``tables`` is the schema as
SQLAlchemy metadata, ``schema`` runs and checks the Alembic migrations shipped
in ``migrations/``; ``memory.MemoryStore`` keeps everything in the process,
for the unit tests and for trying m2mauth out with nothing on disk.
"""

from __future__ import annotations

from m2mauth.core.interfaces import Store
from m2mauth.database_urls import (
    MEMORY_SCHEME,
    STORE_TIMEOUT_SECONDS,
    UnsupportedDatabaseUrl,
    scheme_of,
)

__all__ = ["UnsupportedDatabaseUrl", "open_store"]


def open_store(url: str, *, pool_size: int = 10, timeout: float = STORE_TIMEOUT_SECONDS) -> Store:
    """The store a URL names. ``memory://NAME``: one in-memory database per name
    and process, shared by every store opened on that name. ``timeout``: the
    longest wait on a SQL database, in seconds (SqlStore)."""
    backend = scheme_of(url)
    if backend == MEMORY_SCHEME:
        from m2mauth.store.memory import MemoryStore, named_database  # noqa: PLC0415

        return MemoryStore(named_database(url.partition("://")[2]))
    if backend in ("sqlite", "postgresql"):
        # Imported here: SQLAlchemy is not needed for a memory store.
        from m2mauth.store.sql import SqlStore  # noqa: PLC0415

        return SqlStore(url, pool_size=pool_size, timeout=timeout)
    raise UnsupportedDatabaseUrl(url)
