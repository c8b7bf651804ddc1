"""Alembic migrations of the store's schema (a package so that it ships in the wheel)."""
