"""The persistence contract the core depends on (``typing.Protocol``).

One :class:`Store` hands out :class:`UnitOfWork` objects; everything done
through one unit of work commits together when the ``with`` block ends
normally and rolls back on any exception, so a change and its audit event are
never half written. A unit of work is the sum of small interfaces, one per
aggregate (organizations, applications, client secrets, admin keys, audit,
signing keys, revocations): each says what its aggregate needs and nothing
else, and the contract suite (tests/store) checks each on every backend,
the in-memory one included. Implementations raise :class:`~m2mauth.core.errors.
StoreUnavailable` for any failure of the database itself and
:class:`~m2mauth.core.errors.AlreadyExists` for unique violations; they never
return a wrong "absent" because the database was down.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Protocol

from m2mauth.core.changes import Change, ChangeFeed
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


class OrganizationStore(Protocol):
    """Organizations (ids ``org_...``, ``external_id`` unique when set)."""

    def add_organization(self, org: Organization) -> None:
        """Insert. AlreadyExists(field="external_id") if that is taken."""

    def get_organization(self, org_id: str) -> Organization | None: ...

    def list_organizations(
        self, *, after_id: str | None, limit: int, only_id: str | None = None
    ) -> list[Organization]:
        """Ascending by id, ids > after_id; only_id restricts to one org."""
        ...

    def update_organization(self, org: Organization) -> None:
        """Replace the row with this id. AlreadyExists on external_id clash."""

    def lock_organization(self, org_id: str) -> None:
        """Hold the organization's row until commit, before reading it to write it
        back: see lock_application."""

    def delete_organization(self, org_id: str) -> None:
        """Delete the org and (cascading) its applications and their secrets."""

    def count_applications(self, org_id: str) -> int: ...


class ApplicationStore(Protocol):
    """M2M applications (``client_id`` unique), each in one organization."""

    def add_application(self, app: Application) -> None: ...

    def get_application(self, app_id: str) -> Application | None: ...

    def get_application_by_client_id(self, client_id: str) -> Application | None: ...

    def list_applications(
        self, *, organization_id: str | None, after_id: str | None, limit: int
    ) -> list[Application]:
        """Ascending by id, ids > after_id, optionally of one organization."""
        ...

    def update_application(self, app: Application) -> None: ...

    def delete_application(self, app_id: str) -> None:
        """Delete the application, its secrets and its daily usage."""

    def list_daily_usage(self, application_id: str, *, since: date) -> list[DailyUsage]:
        """The application's tokens per day on ``since`` or later, newest day first."""
        ...


class ClientSecretStore(Protocol):
    """Client secrets of an application, stored as keyed hashes."""

    def add_client_secret(self, secret: ClientSecret) -> None: ...

    def list_client_secrets(self, application_id: str) -> list[ClientSecret]:
        """Every stored secret of the application, ascending by id."""
        ...

    def delete_client_secret(self, application_id: str, secret_id: str) -> bool:
        """Delete; False if no such secret of that application."""
        ...

    def lock_application(self, app_id: str) -> None:
        """Hold the application's row until commit (SELECT ... FOR NO KEY UPDATE
        on PostgreSQL; SQLite's writer lock suffices). Taken before reading a row to
        write it back whole: otherwise two units of work at READ COMMITTED read
        the same row and the later write undoes the earlier one (a revocation
        of every token undone by a rename). Also serialises secret creation."""

    def record_secret_usage(self, usages: Sequence[SecretUsage]) -> None:
        """Apply coalesced usage: each secret's last_used_at = max(stored, given),
        and each application's count of tokens on the usage's day += tokens_issued
        (its last_used_at that day = the max). Usage of a secret or application
        that no longer exists is ignored."""


class AdminKeyStore(Protocol):
    """Admin keys of the management plane, looked up by keyed hash."""

    def add_admin_key(self, key: AdminKey) -> None: ...

    def get_admin_key(self, key_id: str) -> AdminKey | None: ...

    def get_admin_key_by_hash(self, key_hash: bytes) -> AdminKey | None: ...

    def list_admin_keys(
        self,
        *,
        organization_id: str | None,
        include_revoked: bool,
        after_id: str | None,
        limit: int,
    ) -> list[AdminKey]:
        """Ascending by id, ids > after_id; organization_id None means every key
        (environment-wide ones included), else that organization's keys only."""
        ...

    def update_admin_key(self, key: AdminKey) -> None:
        """Replace the stored key with this id (its hash never changes)."""

    def lock_admin_key(self, key_id: str) -> None:
        """Hold the admin key's row until commit, before reading it to write it
        back: see lock_application."""

    def record_admin_key_usage(self, usages: Sequence[AdminKeyUsage]) -> None:
        """last_used_at = max(stored, given); unknown ids are ignored."""

    def count_admin_keys(self) -> int: ...


class AuditStore(Protocol):
    """The append-only audit log."""

    def add_audit_event(self, event: AuditEvent) -> None: ...

    def list_audit_events(
        self, flt: AuditFilter, *, before_id: str | None, limit: int
    ) -> list[AuditEvent]:
        """Descending by id (newest first), ids < before_id; every set filter
        field must match (start inclusive, end exclusive)."""
        ...

    def purge_audit_events(self, before: datetime, *, limit: int) -> int:
        """Delete at most ``limit`` of the oldest events whose time is before
        ``before``; return how many."""
        ...


class SigningKeyStore(Protocol):
    """Signing keys (private parts encrypted) and their lifecycle states."""

    def lock_signing_keys(self) -> None:
        """Serialise key lifecycle changes across processes until commit
        (a transaction-scoped advisory lock on PostgreSQL)."""

    def list_signing_keys(self) -> list[SigningKey]:
        """Every key, descending by id (newest first)."""
        ...

    def add_signing_key(self, key: SigningKey) -> None: ...

    def update_signing_key(self, key: SigningKey) -> None: ...


class RevocationStore(Protocol):
    """Revoked token ids, and the one read introspection makes."""

    def add_revoked_token(self, revoked: RevokedToken) -> None:
        """Insert; a second revocation of one jti is a no-op."""

    def is_token_revoked(self, jti: str) -> bool: ...

    def purge_revoked_tokens(self, expired_before: datetime) -> int:
        """Delete revocations of tokens that expired before this; return count."""
        ...

    def get_token_state(self, client_id: str, jti: str) -> TokenState | None:
        """Everything introspection needs to know beyond the JWT, in ONE indexed read
        (applications JOIN organizations LEFT JOIN revoked_tokens on jti).
        None if no application has this client_id."""
        ...


class ClientAssertionStore(Protocol):
    """Client assertions already used (RFC 7523 section 3 item 7), until they
    expire: shared by every process on the database, so a replay is refused
    whichever replica it reaches."""

    def use_client_assertion(self, key: str, expires_at: datetime) -> bool:
        """Remember the assertion ``key`` (a fixed-size digest, see
        core/private_key_jwt.py) until ``expires_at``; False if it was already
        remembered, by this process or any other (INSERT ... ON CONFLICT DO
        NOTHING: of two concurrent uses exactly one gets True)."""
        ...

    def purge_client_assertions(self, expired_before: datetime) -> int:
        """Forget assertions that expired before this; return how many."""
        ...


class ChangeLog(Protocol):
    """What other processes must hear about (see core/changes.py)."""

    def announce(self, change: Change) -> None:
        """Deliver ``change`` to every process's change feed if, and only if,
        this unit of work commits."""

    def purge_changes(self, before: datetime) -> int:
        """Forget announced changes older than this (every listener has them)."""
        ...


class UnitOfWork(
    ChangeLog,
    OrganizationStore,
    ApplicationStore,
    ClientSecretStore,
    AdminKeyStore,
    AuditStore,
    SigningKeyStore,
    RevocationStore,
    ClientAssertionStore,
    Protocol,
):
    """Every aggregate's interface, in one transaction."""


class Store(Protocol):
    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]: ...

    def reading(self) -> AbstractContextManager[UnitOfWork]:
        """A unit of work that only reads and never queues behind a writer. On
        SQLite its statements share one snapshot; on PostgreSQL (READ COMMITTED,
        autocommit) each statement sees the latest commit, as it would inside a
        transaction. Writing through it is a programming error: nothing would
        make the writes atomic."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    def migrate(self) -> None:
        """Bring the schema to this version (a no-op where there is none)."""

    def check_schema(self) -> None:
        """Raise an exception naming the problem (m2mauth.store.schema.SchemaError)
        unless the schema is this version's."""

    def listen(self, feed: ChangeFeed) -> Listener:
        """A listener that delivers every committed change to ``feed`` (not started)."""
        ...

    def close(self) -> None: ...


class Listener(Protocol):
    """Delivers a store's committed changes to a ChangeFeed, in the background."""

    def start(self) -> None: ...

    def close(self) -> None: ...
