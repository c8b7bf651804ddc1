"""Persistence: the SQL implementation of :mod:`m2mauth.core.interfaces` and its schema.

``sql.SqlStore`` is the store (SQLite or PostgreSQL through SQLAlchemy Core),
``engine`` configures the connections of both, ``tables`` is the schema as
SQLAlchemy metadata, and ``schema`` runs and checks the Alembic migrations
shipped in ``migrations/``.
"""
