"""Domain records. Plain, immutable dataclasses shared by the core and the store."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, date, datetime


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    external_id: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime
    # Kill switch: tokens issued at or before this instant are revoked.
    tokens_revoked_before: datetime | None = None


class TokenEndpointAuthMethod(enum.Enum):
    """How an application authenticates at the token endpoint: exactly one way
    (the RFC 7591 section 2 ``token_endpoint_auth_method`` of the application)."""

    # client_secret_basic or client_secret_post (RFC 6749 section 2.3.1).
    CLIENT_SECRET = "client_secret"  # noqa: S105 - a method name, not a secret
    # A JWT signed with a key of the application's JWK Set (RFC 7523 section 2.2).
    PRIVATE_KEY_JWT = "private_key_jwt"
    # A token its workload's own platform issued (Kubernetes, GitHub Actions...),
    # matching one of its federated credentials (workload identity federation).
    FEDERATED = "federated"


@dataclass(frozen=True, slots=True)
class FederatedCredential:
    """An external identity an application trusts: tokens from ``issuer`` (an
    OpenID Connect issuer) for ``audience`` whose ``sub`` is ``subject``, or
    starts with it when it ends with "*"."""

    issuer: str
    subject: str
    audience: str


@dataclass(frozen=True, slots=True)
class Application:
    id: str
    client_id: str
    organization_id: str
    name: str
    description: str
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    token_ttl_seconds: int  # 0 = server default
    enabled: bool
    created_at: datetime
    updated_at: datetime
    tokens_revoked_before: datetime | None = None
    # At most this many tokens per minute; 0: no quota.
    token_quota_per_minute: int = 0
    token_endpoint_auth_method: TokenEndpointAuthMethod = TokenEndpointAuthMethod.CLIENT_SECRET
    # The public JWK Set (RFC 7517 section 5) its assertions are signed with,
    # as normalised JSON (public members only); "" unless PRIVATE_KEY_JWT.
    jwks: str = ""
    # Or where to fetch that JWK Set (https); "" when jwks is inline or unused.
    jwks_uri: str = ""
    # The external identities it trusts; empty unless FEDERATED.
    federated_credentials: tuple[FederatedCredential, ...] = ()


@dataclass(frozen=True, slots=True)
class ClientSecret:
    id: str
    application_id: str
    # Keyed hash (HMAC-SHA-256) of the secret; the plaintext is never stored.
    secret_hash: bytes
    hint: str  # last 4 characters
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


class AdminKeyRole(enum.Enum):
    """What an admin key may do; the permissions of each are in core/permissions.py."""

    ADMIN = "admin"
    TOKEN_VERIFIER = "token-verifier"  # noqa: S105 - a role name, not a secret
    AUDITOR = "auditor"


@dataclass(frozen=True, slots=True)
class AdminKey:
    id: str
    key_hash: bytes
    hint: str
    # None: environment key; else scoped to one organization.
    organization_id: str | None
    created_at: datetime
    revoked_at: datetime | None = None
    name: str = ""
    role: AdminKeyRole = AdminKeyRole.ADMIN
    expires_at: datetime | None = None
    # The admin key id that created it, or "system" (the local bootstrap command).
    created_by: str = "system"
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AdminKeyUsage:
    """The latest use of one admin key, flushed in the background."""

    admin_key_id: str
    last_used_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling a management RPC: the admin key that authenticated."""

    admin_key_id: str
    organization_id: str | None
    role: AdminKeyRole = AdminKeyRole.ADMIN

    @property
    def is_environment(self) -> bool:
        return self.organization_id is None

    def can_see(self, organization_id: str) -> bool:
        return self.organization_id is None or self.organization_id == organization_id


class SigningKeyState(enum.Enum):
    NEXT = "next"
    CURRENT = "current"
    PREVIOUS = "previous"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class SigningKey:
    id: str  # also the JWK kid
    algorithm: str  # "RS256" | "ES256" | "EdDSA"
    state: SigningKeyState
    # AES-GCM ciphertext of the PKCS#8 private key (nonce || ciphertext).
    encrypted_private_key: bytes
    # The public JWK as a JSON string (public members only).
    public_jwk: str
    created_at: datetime
    activated_at: datetime | None = None
    deactivated_at: datetime | None = None
    retire_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: str
    time: datetime
    actor: str
    action: str
    organization_id: str | None = None
    application_id: str | None = None
    target: str | None = None
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    organization_id: str | None = None
    application_id: str | None = None
    action: str | None = None
    actor: str | None = None
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class RevokedToken:
    jti: str
    application_id: str
    expires_at: datetime
    revoked_at: datetime


@dataclass(frozen=True, slots=True)
class SecretUsage:
    """Coalesced usage of one client secret on one day (UTC), flushed in the background."""

    secret_id: str
    application_id: str
    last_used_at: datetime
    tokens_issued: int

    @property
    def day(self) -> date:
        """The UTC day the tokens counted here were issued on."""
        return self.last_used_at.astimezone(UTC).date()


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """Tokens issued to one application on one UTC day, and the last of them."""

    day: date
    tokens_issued: int
    last_used_at: datetime


@dataclass(frozen=True, slots=True)
class TokenState:
    """The stored facts that decide whether a signed, unexpired token is active."""

    application_id: str
    organization_id: str
    application_enabled: bool
    organization_enabled: bool
    application_tokens_revoked_before: datetime | None
    organization_tokens_revoked_before: datetime | None
    jti_revoked: bool
