"""Failures: a broken database raises StoreUnavailable, never a wrong answer. Schema checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from m2mauth.core.changes import Change, Kind
from m2mauth.core.errors import StoreUnavailable
from m2mauth.core.interfaces import UnitOfWork
from m2mauth.core.models import (
    AdminKey,
    AdminKeyUsage,
    Application,
    AuditEvent,
    AuditFilter,
    ClientSecret,
    Organization,
    RevokedToken,
    SecretUsage,
    SigningKey,
    SigningKeyState,
)
from m2mauth.store.engine import create_store_engine
from m2mauth.store.schema import (
    SchemaError,
    alembic_config,
    check_schema,
    current_revision,
    head_revision,
    migrate,
)
from m2mauth.store.sql import SqlStore
from m2mauth.store.tables import metadata

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ORG = Organization("org_1", "Acme", None, True, NOW, NOW)
APP = Application("app_1", "client_1", "org_1", "a", "", (), (), 0, True, NOW, NOW)

# Every UnitOfWork method, with arguments. On a broken database each must raise
# StoreUnavailable: returning None, False, 0 or [] would be a lie.
CALLS: dict[str, Callable[[UnitOfWork], Any]] = {
    "add_organization": lambda u: u.add_organization(ORG),
    "get_organization": lambda u: u.get_organization("org_1"),
    "list_organizations": lambda u: u.list_organizations(after_id=None, limit=10),
    "update_organization": lambda u: u.update_organization(ORG),
    "lock_organization": lambda u: u.lock_organization("org_1"),
    "delete_organization": lambda u: u.delete_organization("org_1"),
    "count_applications": lambda u: u.count_applications("org_1"),
    "add_application": lambda u: u.add_application(APP),
    "get_application": lambda u: u.get_application("app_1"),
    "get_application_by_client_id": lambda u: u.get_application_by_client_id("client_1"),
    "list_applications": lambda u: u.list_applications(
        organization_id=None, after_id=None, limit=10
    ),
    "update_application": lambda u: u.update_application(APP),
    "delete_application": lambda u: u.delete_application("app_1"),
    "add_client_secret": lambda u: u.add_client_secret(
        ClientSecret("secret_1", "app_1", b"h", "abcd", NOW)
    ),
    "list_client_secrets": lambda u: u.list_client_secrets("app_1"),
    "delete_client_secret": lambda u: u.delete_client_secret("app_1", "secret_1"),
    "lock_application": lambda u: u.lock_application("app_1"),
    "record_secret_usage": lambda u: u.record_secret_usage(
        [SecretUsage("secret_1", "app_1", NOW, 1)]
    ),
    "add_admin_key": lambda u: u.add_admin_key(AdminKey("ak_1", b"h", "abcd", None, NOW)),
    "get_admin_key_by_hash": lambda u: u.get_admin_key_by_hash(b"h"),
    "get_admin_key": lambda u: u.get_admin_key("ak_1"),
    "list_admin_keys": lambda u: u.list_admin_keys(
        organization_id=None, include_revoked=True, after_id=None, limit=10
    ),
    "update_admin_key": lambda u: u.update_admin_key(AdminKey("ak_1", b"h", "abcd", None, NOW)),
    "lock_admin_key": lambda u: u.lock_admin_key("ak_1"),
    "record_admin_key_usage": lambda u: u.record_admin_key_usage([AdminKeyUsage("ak_1", NOW)]),
    "list_daily_usage": lambda u: u.list_daily_usage("app_1", since=NOW.date()),
    "purge_audit_events": lambda u: u.purge_audit_events(NOW, limit=10),
    "announce": lambda u: u.announce(Change(Kind.TOKEN, "tok_1")),
    "purge_changes": lambda u: u.purge_changes(NOW),
    "count_admin_keys": lambda u: u.count_admin_keys(),
    "add_audit_event": lambda u: u.add_audit_event(AuditEvent("evt_1", NOW, "ak_1", "x")),
    "list_audit_events": lambda u: u.list_audit_events(AuditFilter(), before_id=None, limit=10),
    "lock_signing_keys": lambda u: u.lock_signing_keys(),
    "list_signing_keys": lambda u: u.list_signing_keys(),
    "add_signing_key": lambda u: u.add_signing_key(
        SigningKey("key_1", "ES256", SigningKeyState.NEXT, b"k", "{}", NOW)
    ),
    "update_signing_key": lambda u: u.update_signing_key(
        SigningKey("key_1", "ES256", SigningKeyState.NEXT, b"k", "{}", NOW)
    ),
    "add_revoked_token": lambda u: u.add_revoked_token(RevokedToken("tok_1", "app_1", NOW, NOW)),
    "is_token_revoked": lambda u: u.is_token_revoked("tok_1"),
    "purge_revoked_tokens": lambda u: u.purge_revoked_tokens(NOW),
    "get_token_state": lambda u: u.get_token_state("client_1", "tok_1"),
    "use_client_assertion": lambda u: u.use_client_assertion("a" * 64, NOW),
    "purge_client_assertions": lambda u: u.purge_client_assertions(NOW),
}

# The locks touch no table on SQLite (its writer lock is taken at BEGIN), nor
# lock_signing_keys on PostgreSQL (an advisory lock): a database without tables
# cannot make them fail, so the test below leaves them out.
ROW_LOCKS = ("lock_application", "lock_organization", "lock_admin_key")
LOCKS = {*ROW_LOCKS, "lock_signing_keys"}


def test_calls_cover_every_unit_of_work_method() -> None:
    protocol_methods = {
        name
        for name in dir(UnitOfWork)  # the sum of the per-aggregate interfaces
        if not name.startswith("_") and callable(getattr(UnitOfWork, name))
    }
    assert set(CALLS) == protocol_methods


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest) -> str:
    """A reachable database that was never migrated, once on each backend."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def unreachable_urls(tmp_path: Path) -> dict[str, str]:
    garbage = tmp_path / "not-a-database.db"
    garbage.write_bytes(b"this is not an SQLite database, just some text. " * 100)
    return {
        "sqlite-missing-directory": f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'm2m.db'}",
        "sqlite-not-a-database": f"sqlite:///{garbage}",
        # Port 1: nothing listens there, the connection is refused at once.
        "postgres-nothing-listening": "postgresql://postgres@127.0.0.1:1/m2mauth",
    }


# Every method fails at the same place (connecting) on an unreachable database;
# these are the answers a caller could mistake for "no such thing".
LOOKUPS = [
    "get_application_by_client_id",
    "get_token_state",
    "get_admin_key_by_hash",
    "is_token_revoked",
    "get_organization",
    "get_application",
    "list_client_secrets",
    "list_signing_keys",
    "count_admin_keys",
    "add_organization",
]


@pytest.mark.parametrize(
    "kind", ["sqlite-missing-directory", "sqlite-not-a-database", "postgres-nothing-listening"]
)
@pytest.mark.parametrize("method", LOOKUPS)
def test_unreachable_database_raises_store_unavailable(
    tmp_path: Path, kind: str, method: str
) -> None:
    store = SqlStore(unreachable_urls(tmp_path)[kind])
    try:
        with pytest.raises(StoreUnavailable) as info, store.unit_of_work() as uow:
            CALLS[method](uow)
        # The driver's error is kept as the cause, for the logs.
        assert isinstance(info.value.__cause__, DBAPIError)
    finally:
        store.close()


@pytest.mark.parametrize(
    "kind", ["sqlite-missing-directory", "sqlite-not-a-database", "postgres-nothing-listening"]
)
def test_ping_raises_store_unavailable_when_the_database_is_unreachable(
    tmp_path: Path, kind: str
) -> None:
    store = SqlStore(unreachable_urls(tmp_path)[kind])
    try:
        with pytest.raises(StoreUnavailable):
            store.ping()
        with pytest.raises(StoreUnavailable):
            store.check_schema()
    finally:
        store.close()


def test_ping_succeeds_on_a_working_store(store: SqlStore) -> None:
    store.ping()  # raises on failure
    store.check_schema()


@pytest.mark.parametrize("method", sorted(set(CALLS) - LOCKS))
def test_every_method_raises_store_unavailable_when_statements_fail(
    empty_url: str, method: str
) -> None:
    # The database answers but every statement fails (its tables are missing):
    # the failure surfaces from inside an open unit of work, method by method.
    store = SqlStore(empty_url)
    try:
        with pytest.raises(StoreUnavailable), store.unit_of_work() as uow:
            CALLS[method](uow)
    finally:
        store.close()


@pytest.mark.parametrize("method", ROW_LOCKS)
def test_row_locks_raise_store_unavailable_when_they_fail(postgres_url: str, method: str) -> None:
    store = SqlStore(postgres_url)  # no tables: SELECT ... FOR UPDATE fails
    try:
        with pytest.raises(StoreUnavailable), store.unit_of_work() as uow:
            CALLS[method](uow)
    finally:
        store.close()


# --- schema checks ---------------------------------------------------------------


def test_check_schema_refuses_an_unmigrated_database(empty_url: str) -> None:
    store = SqlStore(empty_url)
    try:
        with pytest.raises(SchemaError, match="database is not migrated: run `m2mauth migrate`"):
            store.check_schema()
    finally:
        store.close()


def test_check_schema_refuses_a_database_from_a_newer_m2mauth(empty_url: str) -> None:
    migrate(empty_url)
    engine = create_store_engine(empty_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        with pytest.raises(SchemaError) as info:
            check_schema(engine)
        assert str(info.value) == (
            "database schema is newer than this m2mauth (revision 9999_future): upgrade m2mauth"
        )
    finally:
        engine.dispose()


def test_migrate_is_idempotent_and_reaches_head(empty_url: str) -> None:
    migrate(empty_url)
    migrate(empty_url)
    engine = create_store_engine(empty_url)
    try:
        with engine.connect() as connection:
            assert current_revision(connection) == head_revision()
        check_schema(engine)
    finally:
        engine.dispose()


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        diff: list[Any] = compare_metadata(MigrationContext.configure(connection), metadata)
    return diff


def test_migrations_from_scratch_produce_exactly_the_table_metadata(empty_url: str) -> None:
    migrate(empty_url)
    engine = create_store_engine(empty_url)
    try:
        assert schema_diff(engine) == []
        # The comparison is not vacuous: every table was reflected.
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_schema_diff_notices_a_drift(empty_url: str) -> None:
    # Proves the comparison above can fail: drop an index behind Alembic's back.
    migrate(empty_url)
    engine = create_store_engine(empty_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP INDEX ix_revoked_tokens_expires_at"))
        assert [change[0] for change in schema_diff(engine)] == ["add_index"]
    finally:
        engine.dispose()


def test_migrations_downgrade_to_nothing_and_up_again(empty_url: str) -> None:
    migrate(empty_url)
    engine = create_store_engine(empty_url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate(empty_url)
        assert schema_diff(engine) == []
    finally:
        engine.dispose()
