"""The SQL store: core.interfaces.Store on SQLite or PostgreSQL via SQLAlchemy Core.

The invariant this module exists to keep: a failure of the database is raised
as StoreUnavailable, never returned as "absent" or "false", and a unit of work
is one transaction, so nothing is ever half written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    PrimaryKeyConstraint,
    Row,
    Select,
    Table,
    UniqueConstraint,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

from m2mauth.core.blocking import WouldBlock, check_may_block, may_block
from m2mauth.core.changes import Change, ChangeFeed
from m2mauth.core.errors import AlreadyExists, StoreUnavailable
from m2mauth.core.interfaces import Listener, UnitOfWork
from m2mauth.core.models import (
    AdminKey,
    AdminKeyUsage,
    Application,
    AuditEvent,
    AuditFilter,
    ClientSecret,
    DailyUsage,
    Organization,
    RevokedToken,
    SecretUsage,
    SigningKey,
    TokenState,
)
from m2mauth.database_urls import STORE_TIMEOUT_SECONDS
from m2mauth.store import schema
from m2mauth.store.engine import (
    IDLE_IN_TRANSACTION_BOUNDS,
    READ_ONLY,
    WAIT_BOUND,
    create_store_engine,
    is_sqlite_busy,
)
from m2mauth.store.memory import unstorable
from m2mauth.store.tables import (
    CHANGES_CHANNEL,
    UtcDateTime,
    admin_keys,
    application_daily_usage,
    applications,
    audit_events,
    change_log,
    client_assertions,
    client_secrets,
    metadata,
    organizations,
    revoked_tokens,
    signing_keys,
)

# pg_advisory_xact_lock key of lock_signing_keys: any constant no other code of
# ours uses (schema.MIGRATION_LOCK_KEY is the only other one).
SIGNING_KEYS_LOCK_KEY = 0x6D326D_6B657973  # "m2m" "keys"

# The resource named in AlreadyExists, per table.
RESOURCES = {
    organizations.name: "organization",
    applications.name: "application",
    change_log.name: "change",
    application_daily_usage.name: "application_daily_usage",
    client_secrets.name: "client_secret",
    admin_keys.name: "admin_key",
    signing_keys.name: "signing_key",
    revoked_tokens.name: "revoked_token",
    client_assertions.name: "client_assertion",
    audit_events.name: "audit_event",
}

R = TypeVar("R")


def _unique_constraints() -> dict[str, tuple[str, str]]:
    """(resource, field) of every unique constraint, by the keys drivers report.

    PostgreSQL reports the constraint name (from the naming convention in
    tables.py); SQLite reports "table.column[, table.column]".
    """
    found: dict[str, tuple[str, str]] = {}
    for table in metadata.tables.values():
        for constraint in table.constraints:
            if isinstance(constraint, UniqueConstraint | PrimaryKeyConstraint):
                columns = [column.name for column in constraint.columns]
                meaning = (RESOURCES[table.name], ", ".join(columns))
                found[str(constraint.name)] = meaning
                found[", ".join(f"{table.name}.{column}" for column in columns)] = meaning
    return found


_UNIQUE_CONSTRAINTS = _unique_constraints()


def _unique_violation(exc: sa_exc.IntegrityError) -> tuple[str, str] | None:
    """The (resource, field) a unique violation is about; None for other violations."""
    diag = getattr(exc.orig, "diag", None)  # psycopg
    constraint = getattr(diag, "constraint_name", None)
    if constraint is not None:
        return _UNIQUE_CONSTRAINTS.get(constraint)
    _, marker, columns = str(exc.orig).partition("UNIQUE constraint failed: ")  # sqlite3
    return _UNIQUE_CONSTRAINTS.get(columns.strip()) if marker else None


@contextmanager
def _store_errors() -> Iterator[None]:
    """Translate database failures into the core's errors.

    Unique violations become AlreadyExists. Any other driver error (cannot
    connect, connection lost, database locked, a wait past the bound, disk
    full, not a database...) and an exhausted pool become StoreUnavailable, so
    that no caller can read a failure as "not found". Other integrity errors
    (a foreign key or NOT NULL violation) are bugs or races the core must not
    hide: they propagate.

    Except where blocking is not allowed (an event loop): there SQLite does not
    wait for a lock at all (engine.py), and "database is locked" becomes
    WouldBlock, so that the caller runs the read again on a thread, where it
    may wait for the bound.
    """
    try:
        yield
    except sa_exc.IntegrityError as exc:
        unique = _unique_violation(exc)
        if unique is None:
            raise
        raise AlreadyExists(*unique) from exc
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
        if not may_block() and is_sqlite_busy(exc):
            raise WouldBlock from exc
        raise StoreUnavailable() from exc


def _values(record: Any) -> dict[str, Any]:
    """A record's fields as column values (columns are named after the fields)."""
    return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}


def _record(cls: type[R], row: Row[Any]) -> R:
    return cls(**row._asdict())


def _token_state_statement(revoked_match: ColumnElement[bool]) -> Select[Any]:
    """Introspection's one read: built once, not per call (it runs on every
    introspection, and building and keying a statement costs more than running it)."""
    return (
        select(
            applications.c.id.label("application_id"),
            applications.c.organization_id,
            applications.c.enabled.label("application_enabled"),
            organizations.c.enabled.label("organization_enabled"),
            applications.c.tokens_revoked_before.label("application_tokens_revoked_before"),
            organizations.c.tokens_revoked_before.label("organization_tokens_revoked_before"),
            revoked_tokens.c.jti.is_not(None).label("jti_revoked"),
        )
        .select_from(
            applications.join(
                organizations, applications.c.organization_id == organizations.c.id
            ).outerjoin(revoked_tokens, revoked_match)
        )
        .where(applications.c.client_id == bindparam("client_id"))
    )


_TOKEN_STATE = _token_state_statement(revoked_tokens.c.jti == bindparam("jti"))
_TOKEN_STATE_NO_JTI = _token_state_statement(false())


class SqlStore:
    """The store on ``sqlite:///path/to/file.db`` or ``postgresql://user@host/db``.

    Connections are pooled (``pool_size`` per process). No wait on the database
    (for a pooled connection, to connect, for a lock, for an answer) lasts
    longer than ``timeout`` seconds: past it the call fails with
    StoreUnavailable (engine.py says how). The schema is not checked here: the
    server calls :meth:`check_schema` at start.
    """

    def __init__(
        self, url: str, *, pool_size: int = 10, timeout: float = STORE_TIMEOUT_SECONDS
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._engine = create_store_engine(url, pool_size=pool_size, timeout=timeout)
        # Feeds of this process, told of its own commits at once (see listen).
        self._local_feeds: list[ChangeFeed] = []
        self.reads_block = self._engine.dialect.name != "sqlite"

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """One connection and one transaction: commit on normal exit, else roll back."""
        check_may_block()
        with _store_errors(), self._engine.begin() as connection:
            uow = _SqlUnitOfWork(connection, self.timeout)
            yield uow
        # Committed. This process's own caches learn of its changes now, before
        # the call returns (read your writes); other processes through the feed.
        if uow.announced:
            for feed in list(self._local_feeds):
                feed.deliver(uow.announced)

    @contextmanager
    def reading(self) -> Iterator[UnitOfWork]:
        """A read-only unit of work. On SQLite it opens with a deferred BEGIN, so
        readers never wait for the writer lock that BEGIN IMMEDIATE takes (WAL
        gives each a snapshot); the hot reads (client authentication, token
        state, admin keys) would otherwise queue behind one another.

        An SQLite read is a library call on a local file that waits for no lock
        in WAL mode (tens of microseconds), so it may run where blocking is not
        allowed (m2mauth.core.blocking): handing it to a thread costs more than
        it does. A PostgreSQL read is a network round trip, and may not. Should
        an SQLite read find the database locked all the same (another process
        holds it exclusively, or is recovering it), it raises WouldBlock there
        instead of waiting, and runs again on a thread.
        """
        options: dict[str, Any] = {READ_ONLY: True}
        if self.reads_block:
            check_may_block()
            # PostgreSQL at READ COMMITTED takes a snapshot per statement inside a
            # transaction or not: without one, BEGIN and COMMIT cost no round trips.
            options["isolation_level"] = "AUTOCOMMIT"
        with _store_errors(), self._engine.connect().execution_options(**options) as connection:
            if self.reads_block:
                yield _SqlUnitOfWork(connection, self.timeout)
            else:
                with connection.begin():  # SQLite: one snapshot for the whole read
                    yield _SqlUnitOfWork(connection, self.timeout)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers (a read: it never
        waits for SQLite's writer lock)."""
        check_may_block()
        with (
            _store_errors(),
            self._engine.connect().execution_options(**{READ_ONLY: True}) as connection,
        ):
            connection.exec_driver_sql("SELECT 1").scalar_one()

    def check_schema(self) -> None:
        """Raise schema.SchemaError unless the database is migrated to this version."""
        schema.check_schema(self._engine)

    def listen(self, feed: ChangeFeed) -> Listener:
        """PostgreSQL: LISTEN on its own connection; SQLite: poll the change log."""
        # Imported here: the listeners are only for serving processes.
        from m2mauth.store.feed import PostgresListener, SqliteListener  # noqa: PLC0415

        self._local_feeds.append(feed)
        if self.reads_block:  # PostgreSQL
            return PostgresListener(self.url, feed)
        return SqliteListener(self._engine, feed)

    def migrate(self) -> None:
        """Apply the Alembic migrations (safe to run again, and from several processes)."""
        schema.migrate(self.url)

    def close(self) -> None:
        self._engine.dispose()


class _SqlUnitOfWork:
    """core.interfaces.UnitOfWork on one connection inside one transaction.

    An AlreadyExists ends the unit of work: PostgreSQL aborts the transaction
    on any error, so the caller must let the exception leave the ``with`` block.
    """

    def __init__(self, connection: Connection, timeout: float) -> None:
        self._connection = connection
        self._timeout = timeout
        self._postgres = connection.dialect.name == "postgresql"
        self.announced: list[Change] = []

    # --- statement helpers: every statement runs inside _store_errors ---------
    def _rows(self, statement: Executable) -> Sequence[Row[Any]]:
        with _store_errors():
            return self._connection.execute(statement).all()

    def _scalar(self, statement: Executable) -> Any:
        with _store_errors():
            return self._connection.execute(statement).scalar_one()

    def _run(
        self, statement: Executable, parameters: Sequence[Mapping[str, Any]] | None = None
    ) -> int:
        """Execute a write; return the number of rows it changed."""
        with _store_errors():
            return self._connection.execute(statement, parameters).rowcount

    # --- organizations --------------------------------------------------------
    def add_organization(self, org: Organization) -> None:
        self._run(insert(organizations).values(_values(org)))

    def get_organization(self, org_id: str) -> Organization | None:
        if unstorable(org_id):
            return None
        rows = self._rows(select(organizations).where(organizations.c.id == org_id))
        return _record(Organization, rows[0]) if rows else None

    def list_organizations(
        self, *, after_id: str | None, limit: int, only_id: str | None = None
    ) -> list[Organization]:
        if unstorable(after_id, only_id):
            return []
        query = select(organizations).order_by(organizations.c.id).limit(limit)
        if after_id is not None:
            query = query.where(organizations.c.id > after_id)
        if only_id is not None:
            query = query.where(organizations.c.id == only_id)
        return [_record(Organization, row) for row in self._rows(query)]

    def update_organization(self, org: Organization) -> None:
        self._run(update(organizations).where(organizations.c.id == org.id).values(_values(org)))

    def delete_organization(self, org_id: str) -> None:
        # Deleted explicitly, not only by ON DELETE CASCADE, so that a SQLite
        # connection without the foreign_keys pragma still leaves no orphans.
        org_apps = select(applications.c.id).where(applications.c.organization_id == org_id)
        self._run(delete(client_secrets).where(client_secrets.c.application_id.in_(org_apps)))
        self._run(
            delete(application_daily_usage).where(
                application_daily_usage.c.application_id.in_(org_apps)
            )
        )
        self._run(delete(applications).where(applications.c.organization_id == org_id))
        self._run(delete(organizations).where(organizations.c.id == org_id))

    def count_applications(self, org_id: str) -> int:
        if unstorable(org_id):
            return 0
        count: int = self._scalar(
            select(func.count())
            .select_from(applications)
            .where(applications.c.organization_id == org_id)
        )
        return count

    # --- applications ---------------------------------------------------------
    def add_application(self, app: Application) -> None:
        self._run(insert(applications).values(_values(app)))

    def get_application(self, app_id: str) -> Application | None:
        if unstorable(app_id):
            return None
        rows = self._rows(select(applications).where(applications.c.id == app_id))
        return _record(Application, rows[0]) if rows else None

    def get_application_by_client_id(self, client_id: str) -> Application | None:
        if unstorable(client_id):
            return None
        rows = self._rows(select(applications).where(applications.c.client_id == client_id))
        return _record(Application, rows[0]) if rows else None

    def list_applications(
        self, *, organization_id: str | None, after_id: str | None, limit: int
    ) -> list[Application]:
        if unstorable(organization_id, after_id):
            return []
        query = select(applications).order_by(applications.c.id).limit(limit)
        if organization_id is not None:
            query = query.where(applications.c.organization_id == organization_id)
        if after_id is not None:
            query = query.where(applications.c.id > after_id)
        return [_record(Application, row) for row in self._rows(query)]

    def update_application(self, app: Application) -> None:
        self._run(update(applications).where(applications.c.id == app.id).values(_values(app)))

    def delete_application(self, app_id: str) -> None:
        # Secrets explicitly too: see delete_organization.
        self._run(delete(client_secrets).where(client_secrets.c.application_id == app_id))
        self._run(
            delete(application_daily_usage).where(
                application_daily_usage.c.application_id == app_id
            )
        )
        self._run(delete(applications).where(applications.c.id == app_id))

    def list_daily_usage(self, application_id: str, *, since: date) -> list[DailyUsage]:
        if unstorable(application_id):
            return []
        usage = application_daily_usage.c
        query = (
            select(usage.day, usage.tokens_issued, usage.last_used_at)
            .where(usage.application_id == application_id, usage.day >= since)
            .order_by(usage.day.desc())
        )
        return [_record(DailyUsage, row) for row in self._rows(query)]

    # --- client secrets -------------------------------------------------------
    def add_client_secret(self, secret: ClientSecret) -> None:
        self._run(insert(client_secrets).values(_values(secret)))

    def list_client_secrets(self, application_id: str) -> list[ClientSecret]:
        if unstorable(application_id):
            return []
        query = (
            select(client_secrets)
            .where(client_secrets.c.application_id == application_id)
            .order_by(client_secrets.c.id)
        )
        return [_record(ClientSecret, row) for row in self._rows(query)]

    def delete_client_secret(self, application_id: str, secret_id: str) -> bool:
        if unstorable(application_id, secret_id):
            return False
        deleted = self._run(
            delete(client_secrets).where(
                client_secrets.c.id == secret_id,
                client_secrets.c.application_id == application_id,
            )
        )
        return deleted > 0

    def lock_application(self, app_id: str) -> None:
        self._lock_row(applications, app_id)

    def lock_organization(self, org_id: str) -> None:
        self._lock_row(organizations, org_id)

    def lock_admin_key(self, key_id: str) -> None:
        self._lock_row(admin_keys, key_id)

    def _lock_row(self, table: Table, row_id: str) -> None:
        # On SQLite every unit of work already holds the writer lock (BEGIN
        # IMMEDIATE, see engine.py), which serialises far more than one row.
        if self._postgres and not unstorable(row_id):
            # FOR NO KEY UPDATE, the lock the UPDATE itself takes: it excludes
            # another writer of the row but not the FOR KEY SHARE that inserting
            # a row referencing it takes (an application in the organization,
            # a secret or the day's usage of the application), which FOR UPDATE
            # would make wait.
            query = select(table.c.id).where(table.c.id == row_id)
            self._rows(query.with_for_update(key_share=True))

    def record_secret_usage(self, usages: Sequence[SecretUsage]) -> None:
        if not usages:
            return
        given = bindparam("given_last_used_at", type_=UtcDateTime())
        stored = client_secrets.c.last_used_at
        statement = (
            update(client_secrets)
            .where(
                client_secrets.c.id == bindparam("given_id"),
                client_secrets.c.application_id == bindparam("given_application_id"),
            )
            .values(last_used_at=case((stored.is_(None) | (stored < given), given), else_=stored))
        )
        # One executemany; rows in id order, so that two processes flushing at
        # once lock rows in the same order and cannot deadlock on PostgreSQL.
        self._run(
            statement,
            [
                {
                    "given_id": usage.secret_id,
                    "given_application_id": usage.application_id,
                    "given_last_used_at": usage.last_used_at,
                }
                for usage in sorted(usages, key=lambda u: u.secret_id)
            ],
        )
        self._count_daily_usage(usages)

    def _count_daily_usage(self, usages: Sequence[SecretUsage]) -> None:
        daily: dict[tuple[str, date], tuple[int, datetime]] = {}
        for usage in usages:
            key = (usage.application_id, usage.day)
            count, last = daily.get(key, (0, usage.last_used_at))
            daily[key] = (count + usage.tokens_issued, max(last, usage.last_used_at))
        # Only applications that still exist (one may be deleted between the
        # token and the flush): the foreign key would refuse the whole batch.
        wanted = sorted({app_id for app_id, _ in daily})
        existing = {
            row[0]
            for row in self._rows(select(applications.c.id).where(applications.c.id.in_(wanted)))
        }
        rows = [
            {"application_id": app_id, "day": day, "tokens_issued": count, "last_used_at": last}
            for (app_id, day), (count, last) in sorted(daily.items())
            if app_id in existing
        ]
        if not rows:
            return
        dialect_insert = postgresql.insert if self._postgres else sqlite.insert
        statement = dialect_insert(application_daily_usage)
        stored = application_daily_usage.c
        given = statement.excluded
        self._run(
            statement.on_conflict_do_update(
                index_elements=[stored.application_id, stored.day],
                set_={
                    "tokens_issued": stored.tokens_issued + given.tokens_issued,
                    "last_used_at": case(
                        (stored.last_used_at < given.last_used_at, given.last_used_at),
                        else_=stored.last_used_at,
                    ),
                },
            ),
            rows,
        )

    # --- admin keys -----------------------------------------------------------
    def add_admin_key(self, key: AdminKey) -> None:
        self._run(insert(admin_keys).values(_values(key)))

    def get_admin_key(self, key_id: str) -> AdminKey | None:
        if unstorable(key_id):
            return None
        rows = self._rows(select(admin_keys).where(admin_keys.c.id == key_id))
        return _record(AdminKey, rows[0]) if rows else None

    def get_admin_key_by_hash(self, key_hash: bytes) -> AdminKey | None:
        rows = self._rows(select(admin_keys).where(admin_keys.c.key_hash == key_hash))
        return _record(AdminKey, rows[0]) if rows else None

    def list_admin_keys(
        self,
        *,
        organization_id: str | None,
        include_revoked: bool,
        after_id: str | None,
        limit: int,
    ) -> list[AdminKey]:
        if unstorable(organization_id, after_id):
            return []
        query = select(admin_keys).order_by(admin_keys.c.id).limit(limit)
        if organization_id is not None:
            query = query.where(admin_keys.c.organization_id == organization_id)
        if not include_revoked:
            query = query.where(admin_keys.c.revoked_at.is_(None))
        if after_id is not None:
            query = query.where(admin_keys.c.id > after_id)
        return [_record(AdminKey, row) for row in self._rows(query)]

    def update_admin_key(self, key: AdminKey) -> None:
        self._run(update(admin_keys).where(admin_keys.c.id == key.id).values(_values(key)))

    def record_admin_key_usage(self, usages: Sequence[AdminKeyUsage]) -> None:
        if not usages:
            return
        given = bindparam("given_last_used_at", type_=UtcDateTime())
        stored = admin_keys.c.last_used_at
        statement = (
            update(admin_keys)
            .where(admin_keys.c.id == bindparam("given_id"))
            .values(last_used_at=case((stored.is_(None) | (stored < given), given), else_=stored))
        )
        self._run(
            statement,
            [
                {"given_id": usage.admin_key_id, "given_last_used_at": usage.last_used_at}
                for usage in sorted(usages, key=lambda u: u.admin_key_id)
            ],
        )

    def count_admin_keys(self) -> int:
        count: int = self._scalar(select(func.count()).select_from(admin_keys))
        return count

    # --- audit ----------------------------------------------------------------
    def add_audit_event(self, event: AuditEvent) -> None:
        self._run(insert(audit_events).values(_values(event)))

    def list_audit_events(
        self, flt: AuditFilter, *, before_id: str | None, limit: int
    ) -> list[AuditEvent]:
        if unstorable(flt.organization_id, flt.application_id, flt.action, flt.actor, before_id):
            return []
        conditions: list[ColumnElement[bool]] = []
        if flt.action is not None:
            conditions.append(audit_events.c.action == flt.action)
        if flt.actor is not None:
            conditions.append(audit_events.c.actor == flt.actor)
        if flt.organization_id is not None:
            conditions.append(audit_events.c.organization_id == flt.organization_id)
        if flt.application_id is not None:
            conditions.append(audit_events.c.application_id == flt.application_id)
        if flt.start is not None:
            conditions.append(audit_events.c.time >= flt.start)
        if flt.end is not None:
            conditions.append(audit_events.c.time < flt.end)
        if before_id is not None:
            conditions.append(audit_events.c.id < before_id)
        query = (
            select(audit_events).where(*conditions).order_by(audit_events.c.id.desc()).limit(limit)
        )
        return [_record(AuditEvent, row) for row in self._rows(query)]

    def purge_audit_events(self, before: datetime, *, limit: int) -> int:
        # By id: ids sort by the event's time (core/ids.py), and the primary key
        # orders the oldest first without an index on time.
        oldest = (
            select(audit_events.c.id)
            .where(audit_events.c.time < before)
            .order_by(audit_events.c.id)
            .limit(limit)
        )
        oldest_ids = [row[0] for row in self._rows(oldest)]
        if not oldest_ids:
            return 0
        return self._run(delete(audit_events).where(audit_events.c.id.in_(oldest_ids)))

    # --- changes --------------------------------------------------------------
    def announce(self, change: Change) -> None:
        self.announced.append(change)
        payload = change.encode()
        self._run(
            insert(change_log).values(
                kind=change.kind.value, key=change.key, created_at=datetime.now(UTC)
            )
        )
        if self._postgres:
            # Delivered to every LISTENer when, and only if, this transaction commits.
            self._rows(select(func.pg_notify(CHANGES_CHANNEL, payload)))

    def purge_changes(self, before: datetime) -> int:
        return self._run(delete(change_log).where(change_log.c.created_at < before))

    # --- signing keys ---------------------------------------------------------
    def lock_signing_keys(self) -> None:
        # Transaction-scoped: released by commit or rollback, never leaked. The
        # reads that follow see what the previous holder committed, because
        # PostgreSQL's default READ COMMITTED takes a new snapshot per statement.
        if self._postgres:
            # The holder may be another process generating keys under this lock
            # (RSA: up to a second on a busy host), so the wait gets a longer bound
            # than a request's: the one after which the server ends a holder's
            # transaction that has sent nothing (idle_in_transaction_session_timeout).
            # SET LOCAL: until the end of this transaction only.
            bound = self._timeout * IDLE_IN_TRANSACTION_BOUNDS
            milliseconds = str(round(bound * 1000))
            self._rows(
                select(
                    func.set_config("lock_timeout", milliseconds, True),
                    func.set_config("statement_timeout", milliseconds, True),
                )
            )
            self._rows(
                select(func.pg_advisory_xact_lock(SIGNING_KEYS_LOCK_KEY)).execution_options(
                    **{WAIT_BOUND: bound}
                )
            )

    def list_signing_keys(self) -> list[SigningKey]:
        query = select(signing_keys).order_by(signing_keys.c.id.desc())
        return [_record(SigningKey, row) for row in self._rows(query)]

    def add_signing_key(self, key: SigningKey) -> None:
        self._run(insert(signing_keys).values(_values(key)))

    def update_signing_key(self, key: SigningKey) -> None:
        self._run(update(signing_keys).where(signing_keys.c.id == key.id).values(_values(key)))

    # --- revocation -----------------------------------------------------------
    def add_revoked_token(self, revoked: RevokedToken) -> None:
        dialect_insert = postgresql.insert if self._postgres else sqlite.insert
        self._run(
            dialect_insert(revoked_tokens)
            .values(_values(revoked))
            .on_conflict_do_nothing(index_elements=[revoked_tokens.c.jti])
        )

    def is_token_revoked(self, jti: str) -> bool:
        if unstorable(jti):
            return False
        rows = self._rows(select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti))
        return bool(rows)

    def purge_revoked_tokens(self, expired_before: datetime) -> int:
        return self._run(delete(revoked_tokens).where(revoked_tokens.c.expires_at < expired_before))

    # --- client assertions ----------------------------------------------------
    def use_client_assertion(self, key: str, expires_at: datetime) -> bool:
        dialect_insert = postgresql.insert if self._postgres else sqlite.insert
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
        inserted = self._rows(
            dialect_insert(client_assertions)
            .values(key=key, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=[client_assertions.c.key])
            .returning(client_assertions.c.key)
        )
        return len(inserted) == 1

    def purge_client_assertions(self, expired_before: datetime) -> int:
        return self._run(
            delete(client_assertions).where(client_assertions.c.expires_at < expired_before)
        )

    def get_token_state(self, client_id: str, jti: str) -> TokenState | None:
        if unstorable(client_id):
            return None
        # A jti with NUL was never stored: match it against nothing.
        statement = _TOKEN_STATE_NO_JTI if unstorable(jti) else _TOKEN_STATE
        with _store_errors():
            rows = self._connection.execute(statement, {"client_id": client_id, "jti": jti}).all()
        return _record(TokenState, rows[0]) if rows else None
