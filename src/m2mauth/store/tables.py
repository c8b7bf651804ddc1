"""The store's schema as SQLAlchemy Core tables, one per record in core/models.py.

Column names are the dataclass field names, so a row maps to its record with
``Record(**row)``. Migrations in ``migrations/versions`` are written to match
this metadata exactly; a test compares the two.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

from m2mauth.core.models import (
    AdminKeyRole,
    FederatedCredential,
    SigningKeyState,
    TokenEndpointAuthMethod,
)

# Every constraint and index has a predictable name: Alembic migrations stay
# deterministic, and a unique violation can be traced back to its column.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Ids are ``<prefix>_<ULID>`` (core/ids.py): at most 33 characters, and sorting
# by id sorts by creation time, which keyset pagination relies on.
ID_LENGTH = 64


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (UTC).

    PostgreSQL stores ``TIMESTAMP WITH TIME ZONE``; SQLite has no time zones, so
    the UTC wall time is stored and UTC is reattached on read. Naive datetimes
    are refused: their meaning depends on the machine, a bug waiting to happen.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store needs timezone-aware times")
        utc = value.astimezone(UTC)
        # SQLite's DATETIME format has no offset: store the UTC wall time.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class StringTuple(TypeDecorator[tuple[str, ...]]):
    """A tuple of strings (scopes, audiences) as a JSON array in a text column.

    Only ever read whole, never queried into, so text is simpler than JSON types
    that differ between SQLite and PostgreSQL.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: tuple[str, ...] | None, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(list(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> tuple[str, ...] | None:
        return None if value is None else tuple(json.loads(value))


class StringDict(TypeDecorator[dict[str, str]]):
    """A ``dict[str, str]`` (audit details) as a JSON object in a text column."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: dict[str, str] | None, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def process_result_value(self, value: str | None, dialect: Dialect) -> dict[str, str] | None:
        if value is None:
            return None
        loaded: dict[str, str] = json.loads(value)
        return loaded


class FederatedCredentials(TypeDecorator[tuple[FederatedCredential, ...]]):
    """An application's federated credentials as a JSON array of objects."""

    impl = Text
    cache_ok = True

    def process_bind_param(
        self, value: tuple[FederatedCredential, ...] | None, dialect: Dialect
    ) -> str | None:
        if value is None:
            return None
        return json.dumps(
            [{"issuer": c.issuer, "subject": c.subject, "audience": c.audience} for c in value]
        )

    def process_result_value(
        self, value: str | None, dialect: Dialect
    ) -> tuple[FederatedCredential, ...] | None:
        if value is None:
            return None
        return tuple(FederatedCredential(**item) for item in json.loads(value))


class EnumValue(TypeDecorator[enum.Enum]):
    """An enum stored as its string value (no database enum type to migrate)."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum_class: type[enum.Enum], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.enum_class = enum_class

    def process_bind_param(self, value: enum.Enum | None, dialect: Dialect) -> str | None:
        return None if value is None else str(self.enum_class(value).value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> enum.Enum | None:
        return None if value is None else self.enum_class(value)


metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _id(**kwargs: Any) -> Column[str]:
    return Column("id", String(ID_LENGTH), primary_key=True, **kwargs)


organizations = Table(
    "organizations",
    metadata,
    _id(),
    Column("name", Text, nullable=False),
    # Unique, but many organizations may have none (NULLs never clash).
    Column("external_id", Text, nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("tokens_revoked_before", UtcDateTime, nullable=True),
    UniqueConstraint("external_id"),
)

applications = Table(
    "applications",
    metadata,
    _id(),
    Column("client_id", String(ID_LENGTH), nullable=False),
    Column(
        "organization_id",
        String(ID_LENGTH),
        ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("scopes", StringTuple, nullable=False),
    Column("audiences", StringTuple, nullable=False),
    Column("token_ttl_seconds", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("tokens_revoked_before", UtcDateTime, nullable=True),
    Column("token_quota_per_minute", Integer, nullable=False),
    Column("token_endpoint_auth_method", EnumValue(TokenEndpointAuthMethod), nullable=False),
    Column("jwks", Text, nullable=False),
    Column("jwks_uri", Text, nullable=False),
    Column("federated_credentials", FederatedCredentials, nullable=False),
    UniqueConstraint("client_id"),
    # Listing one organization's applications in id order.
    Index(None, "organization_id", "id"),
)

client_secrets = Table(
    "client_secrets",
    metadata,
    _id(),
    Column(
        "application_id",
        String(ID_LENGTH),
        ForeignKey("applications.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("hint", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
    Index(None, "application_id"),
)

application_daily_usage = Table(
    "application_daily_usage",
    metadata,
    Column(
        "application_id",
        String(ID_LENGTH),
        ForeignKey("applications.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # The UTC day.
    Column("day", Date, primary_key=True),
    Column("tokens_issued", BigInteger, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=False),
)

admin_keys = Table(
    "admin_keys",
    metadata,
    _id(),
    Column("key_hash", LargeBinary, nullable=False),
    Column("hint", Text, nullable=False),
    # No foreign key: a key's scope is checked by the core, and its record
    # (like the audit trail) outlives the organization.
    Column("organization_id", String(ID_LENGTH), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("name", Text, nullable=False),
    Column("role", EnumValue(AdminKeyRole), nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("created_by", Text, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=True),
    # Authentication looks keys up by hash.
    UniqueConstraint("key_hash"),
    # Listing one organization's keys in id order.
    Index(None, "organization_id", "id"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    _id(),
    Column("algorithm", String(16), nullable=False),
    Column("state", EnumValue(SigningKeyState), nullable=False),
    Column("encrypted_private_key", LargeBinary, nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("activated_at", UtcDateTime, nullable=True),
    Column("deactivated_at", UtcDateTime, nullable=True),
    Column("retire_at", UtcDateTime, nullable=True),
)

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(ID_LENGTH), primary_key=True),
    # No foreign key: deleting an application must not un-revoke its tokens.
    Column("application_id", String(ID_LENGTH), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=False),
    # Purging revocations of expired tokens.
    Index(None, "expires_at"),
)

# Client assertions already used (RFC 7523 section 3 item 7: "the authorization
# server MAY ensure that JWTs are not replayed"): one row per (client, jti), kept
# until the assertion expires, so that every process and replica on this
# database refuses a second use. The key is a SHA-256 of client_id and jti: a
# fixed-size identifier, never the caller's text.
client_assertions = Table(
    "client_assertions",
    metadata,
    Column("key", String(ID_LENGTH), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
    # Purging expired ones.
    Index(None, "expires_at"),
)

audit_events = Table(
    "audit_events",
    metadata,
    _id(),
    Column("time", UtcDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    # No foreign keys: the audit trail outlives what it talks about.
    Column("organization_id", String(ID_LENGTH), nullable=True),
    Column("application_id", String(ID_LENGTH), nullable=True),
    Column("target", Text, nullable=True),
    Column("details", StringDict, nullable=False),
    # Newest-first listing of one organization's, application's, action's or
    # actor's events.
    Index(None, "organization_id", "id"),
    Index(None, "application_id", "id"),
    Index(None, "action", "id"),
    Index(None, "actor", "id"),
)

# The transactional outbox of core/changes.py: a change is a row of the unit of
# work that made it, so listeners see it exactly when (and if) it commits.
# SQLite listeners poll it (after PRAGMA data_version says something was
# committed); PostgreSQL also sends it as a NOTIFY. Purged after an hour.
# The PostgreSQL NOTIFY channel that announces change_log rows (payload:
# Change.encode()); the outbox commits them, feed.py listens.
CHANGES_CHANNEL = "m2mauth_changes"

change_log = Table(
    "change_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("kind", String(32), nullable=False),
    Column("key", String(ID_LENGTH), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
