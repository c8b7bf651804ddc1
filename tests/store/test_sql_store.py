"""What only the SQL store has: its tables, engines and driver errors, on SQLite and PostgreSQL.

The backend-agnostic contract is in test_store_contract.py; these tests use
tests/conftest.py's ``store``, a SqlStore on each SQL backend.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
from sqlalchemy.exc import IntegrityError, StatementError

from m2mauth.core.models import (
    AdminKey,
    Application,
    AuditEvent,
    ClientSecret,
    Organization,
    RevokedToken,
    SigningKey,
)
from m2mauth.store import tables
from m2mauth.store.engine import create_store_engine, normalize_url
from m2mauth.store.sql import SqlStore
from tests.store.support import make_app, make_org


def test_every_table_has_exactly_the_fields_of_its_record() -> None:
    # Rows become records with Record(**row): a drift would break at runtime.
    pairs = {
        tables.organizations: Organization,
        tables.applications: Application,
        tables.client_secrets: ClientSecret,
        tables.admin_keys: AdminKey,
        tables.signing_keys: SigningKey,
        tables.revoked_tokens: RevokedToken,
        tables.audit_events: AuditEvent,
    }
    for table, record in pairs.items():
        assert [c.name for c in table.columns] == [f.name for f in dataclasses.fields(record)], (
            table.name
        )


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_postgresql_urls_use_psycopg(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


def test_unsupported_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        SqlStore("mysql://u@h/db")


def test_sqlite_connections_are_configured_for_concurrency_and_integrity(sqlite_url: str) -> None:
    engine = create_store_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            }
    finally:
        engine.dispose()
    # synchronous 1 = NORMAL.
    assert pragmas == {
        "journal_mode": "wal",
        "busy_timeout": 5000,
        "foreign_keys": 1,
        "synchronous": 1,
    }


def test_naive_datetimes_are_refused(store: SqlStore) -> None:
    with pytest.raises(StatementError, match="naive datetime"), store.unit_of_work() as uow:
        uow.add_organization(make_org(created_at=datetime(2026, 1, 1)))


def test_an_application_needs_an_existing_organization(store: SqlStore) -> None:
    # Foreign keys are enforced on SQLite too (PRAGMA foreign_keys=ON). It is a
    # bug or a race in the caller, neither "exists" nor "unavailable".
    with pytest.raises(IntegrityError), store.unit_of_work() as uow:
        uow.add_application(make_app(make_org()))
