"""The in-memory store: core.interfaces.Store without a database, for tests and development.

It keeps the SQL store's contract (tests/store runs one suite on both): the
same ordering, paging, unique fields, cascades and time zones. A unit of work
is atomic by copy-on-write: it changes private copies of the tables, which
replace the shared ones only when the ``with`` block ends normally. Nothing is
persisted; two :class:`MemoryStore` objects on one :class:`MemoryDatabase`
share data, which is how tests stand for a restarted process or a replica.

Pure standard library on purpose: a core test that uses it needs no SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from m2mauth.core.blocking import check_may_block
from m2mauth.core.changes import Change, ChangeFeed
from m2mauth.core.errors import AlreadyExists, StoreUnavailable
from m2mauth.core.interfaces import UnitOfWork
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

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R")
D = TypeVar("D", bound="DataclassInstance")


class IntegrityError(Exception):
    """A write that would break a foreign key (an application of a missing
    organization, a secret of a missing application).

    Like the driver's IntegrityError the SQL store lets through, it is a bug or
    a race in the caller: neither AlreadyExists nor StoreUnavailable.
    """


@dataclasses.dataclass(slots=True)
class _Tables:
    """One version of every table, plus the unique indexes the SQL schema has.

    Rows are frozen dataclasses, so a shallow copy of each dict is a full copy
    of the data; audit details, the only mutable field, are never handed out
    (see _stored and _handed_out).
    """

    organizations: dict[str, Organization] = dataclasses.field(default_factory=dict)
    applications: dict[str, Application] = dataclasses.field(default_factory=dict)
    client_secrets: dict[str, ClientSecret] = dataclasses.field(default_factory=dict)
    admin_keys: dict[str, AdminKey] = dataclasses.field(default_factory=dict)
    signing_keys: dict[str, SigningKey] = dataclasses.field(default_factory=dict)
    revoked_tokens: dict[str, RevokedToken] = dataclasses.field(default_factory=dict)
    # Used client assertions: key -> expiry (client_assertions).
    client_assertions: dict[str, datetime] = dataclasses.field(default_factory=dict)
    audit_events: dict[str, AuditEvent] = dataclasses.field(default_factory=dict)
    # (application_id, day) -> that day's usage (application_daily_usage).
    daily_usage: dict[tuple[str, date], DailyUsage] = dataclasses.field(default_factory=dict)
    # Unique columns -> id of the row holding the value (uq_* in tables.py). They
    # also make the hot lookups (client authentication, introspection, admin
    # keys) constant time, as the SQL indexes do.
    org_by_external_id: dict[str, str] = dataclasses.field(default_factory=dict)
    app_by_client_id: dict[str, str] = dataclasses.field(default_factory=dict)
    admin_key_by_hash: dict[bytes, str] = dataclasses.field(default_factory=dict)

    def copy(self) -> _Tables:
        return _Tables(*(dict(getattr(self, f.name)) for f in dataclasses.fields(self)))


class MemoryDatabase:
    """The data of one in-memory "database", shareable by several MemoryStores.

    Writers are serialised by one lock held for a whole unit of work: that is
    what makes lock_application and lock_signing_keys hold trivially (a far
    coarser lock than either, like SQLite's writer lock). Readers never take
    it: they take the reference to the last committed version under a second
    lock that is only ever held to read or swap that reference.
    """

    def __init__(self) -> None:
        self._tables = _Tables()
        self._writer = threading.Lock()
        self._writer_thread: int | None = None
        self._feeds: list[ChangeFeed] = []
        self._published = threading.Lock()

    @contextmanager
    def writing(self) -> Iterator[_Tables]:
        """Hold the writer lock; yield the committed version it protects.

        A unit of work opened inside another on the same thread would wait for
        itself forever (SQLite would fail it after its busy timeout): refuse it.
        """
        me = threading.get_ident()
        # Only this thread ever sets it to its own id: the unlocked read is safe.
        if self._writer_thread == me:
            raise RuntimeError("a unit of work inside another one on the same thread")
        with self._writer:
            self._writer_thread = me
            try:
                yield self.snapshot()
            finally:
                self._writer_thread = None

    def snapshot(self) -> _Tables:
        """The last committed version. Never changed in place: commits replace it."""
        with self._published:
            return self._tables

    def publish(self, tables: _Tables) -> None:
        """Make a unit of work's tables the committed version (writer lock held)."""
        with self._published:
            self._tables = tables

    def subscribe(self, feed: ChangeFeed) -> None:
        with self._published:
            self._feeds.append(feed)

    def unsubscribe(self, feed: ChangeFeed) -> None:
        with self._published:
            if feed in self._feeds:
                self._feeds.remove(feed)

    def announce(self, changes: Sequence[Change]) -> None:
        """Deliver a committed unit of work's changes to every listening feed, as
        PostgreSQL's NOTIFY does at commit (here synchronously, writer lock held)."""
        with self._published:
            feeds = list(self._feeds)
        for feed in feeds:
            feed.deliver(changes)


def _utc(value: datetime) -> datetime:
    """The instant in UTC, as the SQL store reads it back (tables.UtcDateTime)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the store needs timezone-aware times")
    return value.astimezone(UTC)


def _stored(record: D) -> D:
    """The record as stored: times in UTC and nothing the caller could still mutate.

    The SQL store gets the same for free from its round trip through columns.
    """
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if isinstance(value, datetime):
            changes[field.name] = _utc(value)
        elif isinstance(value, dict):
            changes[field.name] = dict(value)
        elif isinstance(value, list):
            changes[field.name] = tuple(value)
        elif isinstance(value, bytearray | memoryview):
            changes[field.name] = bytes(value)
    return dataclasses.replace(record, **changes)


def _handed_out(event: AuditEvent) -> AuditEvent:
    # Its details dict is the one mutable value in any record: a caller's
    # change to it must not reach the stored event.
    return dataclasses.replace(event, details=dict(event.details))


def unstorable(*keys: str | None) -> bool:
    """Whether a lookup key can never have been stored.

    PostgreSQL refuses NUL characters in text, even as a query parameter, with
    an error that would read as "store unavailable". A key containing one
    (say, a client_id sent by a caller) can only be absent: every store answers
    that without asking, so they all agree.
    """
    return any(key is not None and "\x00" in key for key in keys)


def _first(
    rows: Iterable[R], key: Callable[[R], str], limit: int, *, reverse: bool = False
) -> list[R]:
    if limit < 0:
        raise ValueError(f"limit must not be negative: {limit}")
    return sorted(rows, key=key, reverse=reverse)[:limit]


_NAMED: dict[str, MemoryDatabase] = {}
_NAMED_LOCK = threading.Lock()


def named_database(name: str) -> MemoryDatabase:
    """The process's in-memory database called ``name`` (``memory://NAME``), made
    on first use: every store opened on one name shares its data, as stores
    opened on one SQL URL share a database. It lives as long as the process."""
    with _NAMED_LOCK:
        return _NAMED.setdefault(name, MemoryDatabase())


class MemoryStore:
    """The store in memory: on its own :class:`MemoryDatabase`, or on a shared one.

    For tests of the core, :meth:`fail_with` makes it behave like a database
    that is down.
    """

    # Reads wait for no lock and do no I/O, like SQLite's (see SqlStore.reading):
    # they may run where blocking is not allowed.
    reads_block = False

    def __init__(self, database: MemoryDatabase | None = None) -> None:
        self.database = database if database is not None else MemoryDatabase()
        self._failure: Exception | None = None
        self._closed = False

    def fail_with(self, exc: Exception | None) -> None:
        """While set, every call (entering a unit of work, each of its methods,
        its commit, ping) raises StoreUnavailable caused by ``exc``; None heals.

        Per store, not per database: another MemoryStore on the same
        MemoryDatabase is unaffected, as another process would be by a broken
        connection.
        """
        self._failure = exc

    def check_available(self) -> None:
        """Raise StoreUnavailable if failing or closed, as a broken database would."""
        if self._closed:
            raise StoreUnavailable()
        failure = self._failure
        if failure is not None:
            raise StoreUnavailable() from failure

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """Serialised with every other writer; commit on normal exit, else discard."""
        check_may_block()  # it may wait for another writer's whole unit of work
        self.check_available()
        with self.database.writing() as committed:
            uow = _MemoryUnitOfWork(self, committed, writable=True)
            try:
                yield uow
            finally:
                changed = uow.finish()
            # Reached on normal exit only. A commit to a failed database fails
            # and writes nothing; so does one whose statement failed.
            self.check_available()
            uow.check_not_aborted()
            if changed is not None:
                self.database.publish(changed)
            if uow.announced:
                self.database.announce(uow.announced)

    @contextmanager
    def reading(self) -> Iterator[UnitOfWork]:
        """A read-only unit of work on the last committed version: one consistent
        snapshot that waits for no writer. Its write methods raise RuntimeError."""
        self.check_available()
        uow = _MemoryUnitOfWork(self, self.database.snapshot(), writable=False)
        try:
            yield uow
        finally:
            uow.finish()

    def ping(self) -> None:
        """Raise StoreUnavailable if failing or closed (it never waits for a writer)."""
        self.check_available()

    def migrate(self) -> None:
        """Nothing to migrate: the schema is the code."""

    def check_schema(self) -> None:
        """Nothing to check: the schema is the code."""

    def listen(self, feed: ChangeFeed) -> MemoryListener:
        return MemoryListener(self.database, feed)

    def close(self) -> None:
        """Later calls raise StoreUnavailable; the data stays in the MemoryDatabase."""
        self._closed = True


class MemoryListener:
    """Changes committed through any store on one MemoryDatabase, delivered at commit."""

    def __init__(self, database: MemoryDatabase, feed: ChangeFeed) -> None:
        self._database = database
        self._feed = feed

    def start(self) -> None:
        self._database.subscribe(self._feed)
        self._feed.connected()

    def close(self) -> None:
        self._database.unsubscribe(self._feed)
        self._feed.disconnected()


class _MemoryUnitOfWork:
    """core.interfaces.UnitOfWork on one version of the tables.

    Reads see the version it started on plus its own writes. The first write
    copies the tables (copy-on-write), so the committed version, which readers
    may hold, is never changed in place. Every write checks all its constraints
    before it changes anything: a write that raises leaves no trace, as a
    failed SQL statement does.
    """

    def __init__(self, store: MemoryStore, tables: _Tables, *, writable: bool) -> None:
        self._store = store
        self._tables = tables
        self._writable = writable
        self._copied = False
        self._open = True
        # Delivered to the change feeds if, and only if, this unit of work commits.
        self.announced: list[Change] = []
        # PostgreSQL refuses every statement of a transaction after one failed
        # (and SQLite does not): the strictest, so code that swallows a store
        # error and carries on fails here, in the unit tier, too.
        self._aborted: BaseException | None = None

    def check_not_aborted(self) -> None:
        if self._aborted is not None:
            raise RuntimeError(
                "a statement of this unit of work failed; it can neither go on nor commit "
                "(PostgreSQL refuses it too)"
            ) from self._aborted

    def finish(self) -> _Tables | None:
        """End it; return the changed tables, or None if nothing was written."""
        self._open = False
        return self._tables if self._copied else None

    # --- access helpers: every method starts with one of these ----------------
    def _read(self) -> _Tables:
        if not self._open:
            raise RuntimeError("this unit of work has ended")
        self.check_not_aborted()
        self._store.check_available()
        return self._tables

    def _write(self) -> _Tables:
        if not self._writable:
            # interfaces.Store.reading: a programming error, nothing would make
            # the writes atomic.
            raise RuntimeError("a reading() unit of work cannot write; use unit_of_work()")
        tables = self._read()
        if not self._copied:
            tables = self._tables = tables.copy()
            self._copied = True
        return tables

    # --- organizations --------------------------------------------------------
    def add_organization(self, org: Organization) -> None:
        org = _stored(org)
        t = self._write()
        if org.id in t.organizations:
            raise AlreadyExists("organization", "id")
        if org.external_id is not None and org.external_id in t.org_by_external_id:
            raise AlreadyExists("organization", "external_id")
        t.organizations[org.id] = org
        if org.external_id is not None:
            t.org_by_external_id[org.external_id] = org.id

    def get_organization(self, org_id: str) -> Organization | None:
        t = self._read()
        return None if unstorable(org_id) else t.organizations.get(org_id)

    def list_organizations(
        self, *, after_id: str | None, limit: int, only_id: str | None = None
    ) -> list[Organization]:
        t = self._read()
        if unstorable(after_id, only_id):
            return []
        rows = (
            org
            for org in t.organizations.values()
            if (after_id is None or org.id > after_id) and (only_id is None or org.id == only_id)
        )
        return _first(rows, lambda org: org.id, limit)

    def update_organization(self, org: Organization) -> None:
        org = _stored(org)
        t = self._write()
        old = t.organizations.get(org.id)
        if old is None:
            return  # UPDATE ... WHERE id = ... matched no row
        if (
            org.external_id is not None
            and t.org_by_external_id.get(org.external_id, org.id) != org.id
        ):
            raise AlreadyExists("organization", "external_id")
        if old.external_id is not None:
            del t.org_by_external_id[old.external_id]
        if org.external_id is not None:
            t.org_by_external_id[org.external_id] = org.id
        t.organizations[org.id] = org

    def delete_organization(self, org_id: str) -> None:
        t = self._write()
        for app in [a for a in t.applications.values() if a.organization_id == org_id]:
            self._delete_application(t, app)
        org = t.organizations.pop(org_id, None)
        if org is not None and org.external_id is not None:
            del t.org_by_external_id[org.external_id]

    def count_applications(self, org_id: str) -> int:
        t = self._read()
        if unstorable(org_id):
            return 0
        return sum(1 for app in t.applications.values() if app.organization_id == org_id)

    # --- applications ---------------------------------------------------------
    def add_application(self, app: Application) -> None:
        app = _stored(app)
        t = self._write()
        if app.id in t.applications:
            raise AlreadyExists("application", "id")
        if app.client_id in t.app_by_client_id:
            raise AlreadyExists("application", "client_id")
        # Unique constraints before foreign keys, in the order the databases check.
        self._check_organization(t, app)
        t.applications[app.id] = app
        t.app_by_client_id[app.client_id] = app.id

    def get_application(self, app_id: str) -> Application | None:
        t = self._read()
        return None if unstorable(app_id) else t.applications.get(app_id)

    def get_application_by_client_id(self, client_id: str) -> Application | None:
        t = self._read()
        if unstorable(client_id):
            return None
        app_id = t.app_by_client_id.get(client_id)
        return None if app_id is None else t.applications[app_id]

    def list_applications(
        self, *, organization_id: str | None, after_id: str | None, limit: int
    ) -> list[Application]:
        t = self._read()
        if unstorable(organization_id, after_id):
            return []
        rows = (
            app
            for app in t.applications.values()
            if (organization_id is None or app.organization_id == organization_id)
            and (after_id is None or app.id > after_id)
        )
        return _first(rows, lambda app: app.id, limit)

    def update_application(self, app: Application) -> None:
        app = _stored(app)
        t = self._write()
        old = t.applications.get(app.id)
        if old is None:
            return
        if t.app_by_client_id.get(app.client_id, app.id) != app.id:
            raise AlreadyExists("application", "client_id")
        self._check_organization(t, app)
        del t.app_by_client_id[old.client_id]
        t.app_by_client_id[app.client_id] = app.id
        t.applications[app.id] = app

    def delete_application(self, app_id: str) -> None:
        t = self._write()
        app = t.applications.get(app_id)
        if app is not None:
            self._delete_application(t, app)

    @staticmethod
    def _check_organization(t: _Tables, app: Application) -> None:
        if app.organization_id not in t.organizations:
            raise IntegrityError(f"application {app.id!r}: no organization {app.organization_id!r}")

    @staticmethod
    def _delete_application(t: _Tables, app: Application) -> None:
        """The application, its secrets and its usage (ON DELETE CASCADE in tables.py)."""
        for secret_id in [s.id for s in t.client_secrets.values() if s.application_id == app.id]:
            del t.client_secrets[secret_id]
        for key in [k for k in t.daily_usage if k[0] == app.id]:
            del t.daily_usage[key]
        del t.app_by_client_id[app.client_id]
        del t.applications[app.id]

    # --- client secrets -------------------------------------------------------
    def add_client_secret(self, secret: ClientSecret) -> None:
        secret = _stored(secret)
        t = self._write()
        if secret.id in t.client_secrets:
            raise AlreadyExists("client_secret", "id")
        if secret.application_id not in t.applications:
            raise IntegrityError(
                f"client secret {secret.id!r}: no application {secret.application_id!r}"
            )
        t.client_secrets[secret.id] = secret

    def list_client_secrets(self, application_id: str) -> list[ClientSecret]:
        t = self._read()
        if unstorable(application_id):
            return []
        rows = (s for s in t.client_secrets.values() if s.application_id == application_id)
        return sorted(rows, key=lambda s: s.id)

    def delete_client_secret(self, application_id: str, secret_id: str) -> bool:
        t = self._write()
        if unstorable(application_id, secret_id):
            return False
        secret = t.client_secrets.get(secret_id)
        if secret is None or secret.application_id != application_id:
            return False
        del t.client_secrets[secret_id]
        return True

    def lock_application(self, app_id: str) -> None:
        # Every unit of work already holds the database's writer lock.
        self._read()

    def lock_organization(self, org_id: str) -> None:
        self._read()  # as lock_application

    def lock_admin_key(self, key_id: str) -> None:
        self._read()  # as lock_application

    def record_secret_usage(self, usages: Sequence[SecretUsage]) -> None:
        given = [(usage, _utc(usage.last_used_at)) for usage in usages]
        t = self._write()
        for usage, last_used_at in given:
            secret = t.client_secrets.get(usage.secret_id)
            # A secret deleted meanwhile, or named with another application: no row.
            if secret is None or secret.application_id != usage.application_id:
                continue
            if secret.last_used_at is None or secret.last_used_at < last_used_at:
                t.client_secrets[secret.id] = dataclasses.replace(secret, last_used_at=last_used_at)
        for usage, last_used_at in given:
            # Counted for the application even if the secret is gone, as long
            # as the application exists (the foreign key of the SQL table).
            if usage.application_id not in t.applications:
                continue
            key = (usage.application_id, usage.day)
            seen = t.daily_usage.get(key)
            t.daily_usage[key] = (
                DailyUsage(usage.day, usage.tokens_issued, last_used_at)
                if seen is None
                else DailyUsage(
                    usage.day,
                    seen.tokens_issued + usage.tokens_issued,
                    max(seen.last_used_at, last_used_at),
                )
            )

    def list_daily_usage(self, application_id: str, *, since: date) -> list[DailyUsage]:
        t = self._read()
        rows = [u for (app_id, day), u in t.daily_usage.items() if app_id == application_id]
        return sorted((u for u in rows if u.day >= since), key=lambda u: u.day, reverse=True)

    # --- admin keys -----------------------------------------------------------
    def add_admin_key(self, key: AdminKey) -> None:
        key = _stored(key)
        t = self._write()
        if key.id in t.admin_keys:
            raise AlreadyExists("admin_key", "id")
        if key.key_hash in t.admin_key_by_hash:
            raise AlreadyExists("admin_key", "key_hash")
        t.admin_keys[key.id] = key
        t.admin_key_by_hash[key.key_hash] = key.id

    def get_admin_key(self, key_id: str) -> AdminKey | None:
        return self._read().admin_keys.get(key_id)

    def get_admin_key_by_hash(self, key_hash: bytes) -> AdminKey | None:
        t = self._read()
        key_id = t.admin_key_by_hash.get(bytes(key_hash))
        return None if key_id is None else t.admin_keys[key_id]

    def list_admin_keys(
        self,
        *,
        organization_id: str | None,
        include_revoked: bool,
        after_id: str | None,
        limit: int,
    ) -> list[AdminKey]:
        t = self._read()
        if unstorable(organization_id, after_id):
            return []
        rows = (
            key
            for key in t.admin_keys.values()
            if (organization_id is None or key.organization_id == organization_id)
            and (include_revoked or key.revoked_at is None)
            and (after_id is None or key.id > after_id)
        )
        return _first(rows, lambda k: k.id, limit)

    def update_admin_key(self, key: AdminKey) -> None:
        key = _stored(key)
        t = self._write()
        old = t.admin_keys.get(key.id)
        if old is None:
            return
        if t.admin_key_by_hash.get(key.key_hash, key.id) != key.id:
            raise AlreadyExists("admin_key", "key_hash")
        del t.admin_key_by_hash[old.key_hash]
        t.admin_key_by_hash[key.key_hash] = key.id
        t.admin_keys[key.id] = key

    def record_admin_key_usage(self, usages: Sequence[AdminKeyUsage]) -> None:
        given = [(usage.admin_key_id, _utc(usage.last_used_at)) for usage in usages]
        t = self._write()
        for key_id, last_used_at in given:
            key = t.admin_keys.get(key_id)
            if key is not None and (key.last_used_at is None or key.last_used_at < last_used_at):
                t.admin_keys[key_id] = dataclasses.replace(key, last_used_at=last_used_at)

    def count_admin_keys(self) -> int:
        return len(self._read().admin_keys)

    # --- audit ----------------------------------------------------------------
    def add_audit_event(self, event: AuditEvent) -> None:
        event = _stored(event)
        t = self._write()
        if event.id in t.audit_events:
            raise AlreadyExists("audit_event", "id")
        t.audit_events[event.id] = event

    def list_audit_events(
        self, flt: AuditFilter, *, before_id: str | None, limit: int
    ) -> list[AuditEvent]:
        start = None if flt.start is None else _utc(flt.start)
        end = None if flt.end is None else _utc(flt.end)
        t = self._read()
        if unstorable(flt.organization_id, flt.application_id, flt.action, flt.actor, before_id):
            return []
        rows = (
            event
            for event in t.audit_events.values()
            if (flt.organization_id is None or event.organization_id == flt.organization_id)
            and (flt.action is None or event.action == flt.action)
            and (flt.actor is None or event.actor == flt.actor)
            and (flt.application_id is None or event.application_id == flt.application_id)
            and (start is None or event.time >= start)
            and (end is None or event.time < end)
            and (before_id is None or event.id < before_id)
        )
        return [_handed_out(e) for e in _first(rows, lambda e: e.id, limit, reverse=True)]

    def purge_audit_events(self, before: datetime, *, limit: int) -> int:
        before = _utc(before)
        t = self._write()
        old = _first((e for e in t.audit_events.values() if e.time < before), lambda e: e.id, limit)
        for event in old:
            del t.audit_events[event.id]
        return len(old)

    # --- changes --------------------------------------------------------------
    def announce(self, change: Change) -> None:
        self._write()
        self.announced.append(change)

    def purge_changes(self, before: datetime) -> int:
        self._write()
        return 0  # delivered at commit: nothing is kept to purge

    # --- signing keys ---------------------------------------------------------
    def lock_signing_keys(self) -> None:
        # Every unit of work already holds the database's writer lock.
        self._read()

    def list_signing_keys(self) -> list[SigningKey]:
        return sorted(self._read().signing_keys.values(), key=lambda k: k.id, reverse=True)

    def add_signing_key(self, key: SigningKey) -> None:
        key = _stored(key)
        t = self._write()
        if key.id in t.signing_keys:
            raise AlreadyExists("signing_key", "id")
        t.signing_keys[key.id] = key

    def update_signing_key(self, key: SigningKey) -> None:
        key = _stored(key)
        t = self._write()
        if key.id in t.signing_keys:
            t.signing_keys[key.id] = key

    # --- revocation -----------------------------------------------------------
    def add_revoked_token(self, revoked: RevokedToken) -> None:
        revoked = _stored(revoked)
        t = self._write()
        # ON CONFLICT DO NOTHING: the first revocation is kept.
        t.revoked_tokens.setdefault(revoked.jti, revoked)

    def is_token_revoked(self, jti: str) -> bool:
        t = self._read()
        return not unstorable(jti) and jti in t.revoked_tokens

    def purge_revoked_tokens(self, expired_before: datetime) -> int:
        cutoff = _utc(expired_before)
        t = self._write()
        expired = [r.jti for r in t.revoked_tokens.values() if r.expires_at < cutoff]
        for jti in expired:
            del t.revoked_tokens[jti]
        return len(expired)

    # --- client assertions ----------------------------------------------------
    def use_client_assertion(self, key: str, expires_at: datetime) -> bool:
        expires_at = _utc(expires_at)
        t = self._write()
        # ON CONFLICT DO NOTHING: the first use is kept, and only it is "new".
        if key in t.client_assertions:
            return False
        t.client_assertions[key] = expires_at
        return True

    def purge_client_assertions(self, expired_before: datetime) -> int:
        cutoff = _utc(expired_before)
        t = self._write()
        expired = [key for key, expires in t.client_assertions.items() if expires < cutoff]
        for key in expired:
            del t.client_assertions[key]
        return len(expired)

    def get_token_state(self, client_id: str, jti: str) -> TokenState | None:
        t = self._read()
        if unstorable(client_id):
            return None
        app_id = t.app_by_client_id.get(client_id)
        if app_id is None:
            return None
        app = t.applications[app_id]
        org = t.organizations.get(app.organization_id)
        if org is None:  # an inner join; the foreign key makes it unreachable
            return None
        return TokenState(
            application_id=app.id,
            organization_id=org.id,
            application_enabled=app.enabled,
            organization_enabled=org.enabled,
            application_tokens_revoked_before=app.tokens_revoked_before,
            organization_tokens_revoked_before=org.tokens_revoked_before,
            # Any application's revocation of this jti, as the LEFT JOIN on jti.
            jti_revoked=not unstorable(jti) and jti in t.revoked_tokens,
        )


def _aborting(method: Callable[..., R]) -> Callable[..., R]:
    """A unit-of-work method whose failure aborts the unit of work (see _aborted)."""

    @functools.wraps(method)
    def run(self: _MemoryUnitOfWork, *args: Any, **kwargs: Any) -> R:
        try:
            return method(self, *args, **kwargs)
        except (AlreadyExists, IntegrityError, ValueError) as exc:
            self._aborted = exc
            raise

    return run


for _name, _member in list(vars(_MemoryUnitOfWork).items()):
    if (
        not _name.startswith("_")
        and callable(_member)
        and _name not in ("finish", "check_not_aborted")
    ):
        setattr(_MemoryUnitOfWork, _name, _aborting(_member))
