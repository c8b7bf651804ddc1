"""Domain errors. Each transport maps these to its wire form in one table.

The reasons match ``m2mauth.v1.ErrorReason`` names without the prefix.
"""

from __future__ import annotations

from m2mauth.core.echo import shown


class DomainError(Exception):
    """Base of every error the core raises on purpose."""

    reason: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def metadata(self) -> dict[str, str]:
        """Facts for ErrorInfo.metadata (AIP-193); never a secret."""
        return {}


class InvalidField(DomainError):
    """A request field is malformed or out of range."""

    reason = "INVALID_FIELD"

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class InvalidPageToken(DomainError):
    """A page token was not issued by us, was altered, or belongs to other filters."""

    reason = "INVALID_PAGE_TOKEN"

    def __init__(self) -> None:
        super().__init__("page_token is invalid: pass back the next_page_token unchanged")
        self.field = "page_token"


class NotFound(DomainError):
    """Missing, or not visible to the caller: on purpose the same (AIP-193)."""

    reason = "NOT_FOUND"

    def __init__(self, resource: str, resource_id: str) -> None:
        super().__init__(f"{resource} {shown(resource_id)} not found")
        self.resource = resource
        self.resource_id = resource_id


class AlreadyExists(DomainError):
    """A value that must be unique is taken."""

    reason = "ALREADY_EXISTS"

    def __init__(self, resource: str, field: str) -> None:
        super().__init__(f"{resource} with this {field} already exists")
        self.resource = resource
        self.field = field


class FailedPrecondition(DomainError):
    """The resource is not in a state that allows the call."""

    reason = "FAILED_PRECONDITION"


class SecretLimitReached(FailedPrecondition):
    """The application already has the maximum number of live secrets."""

    reason = "SECRET_LIMIT_REACHED"


class AdminKeyInvalid(DomainError):
    """No admin key, or an unknown or revoked one."""

    reason = "ADMIN_KEY_INVALID"


class PermissionDenied(DomainError):
    """A valid admin key that may not make this call; names the missing permission."""

    reason = "PERMISSION_DENIED"

    def __init__(self, message: str, *, permission: str) -> None:
        super().__init__(message)
        self.permission = permission

    @property
    def metadata(self) -> dict[str, str]:
        return {"permission": self.permission}


class InvalidClient(DomainError):
    """Client authentication failed (RFC 6749 section 5.2 ``invalid_client``).

    Unknown client, wrong/revoked/expired secret, disabled or deleted
    application or organization all raise this one error with one message, so
    that a caller learns nothing about which it was.
    """

    reason = "INVALID_CLIENT"

    def __init__(self) -> None:
        super().__init__("client authentication failed")


class InvalidRequest(DomainError):
    """RFC 6749 section 5.2 ``invalid_request``."""

    reason = "INVALID_REQUEST"

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field


class UnsupportedGrantType(DomainError):
    """RFC 6749 section 5.2 ``unsupported_grant_type``."""

    reason = "UNSUPPORTED_GRANT_TYPE"

    def __init__(self, grant_type: str, supported: str) -> None:
        super().__init__(f"grant_type {shown(grant_type)} is not supported; use {supported}")
        self.field = "grant_type"


class InvalidScope(DomainError):
    """RFC 6749 section 5.2 ``invalid_scope``."""

    reason = "INVALID_SCOPE"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.field = "scope"


class InvalidTarget(DomainError):
    """RFC 8707 section 2 ``invalid_target``."""

    reason = "INVALID_TARGET"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.field = "audience"


class UnauthorizedClient(DomainError):
    """The client may not act on this token (RFC 7009 section 2.1)."""

    reason = "UNAUTHORIZED_CLIENT"


class IssuerMismatch(DomainError):
    """A token signed with one of this deployment's keys names another issuer.

    Only a replica of this deployment can sign one, so the replicas run with
    different issuers (RFC 9068 section 2.2): revoking it here would record
    nothing that the other replica checks, and "inactive" would hide the
    misconfiguration. The caller is told instead.
    """

    reason = "ISSUER_MISMATCH"

    def __init__(self, token_issuer: str, issuer: str) -> None:
        super().__init__(
            f"the token was issued by {token_issuer!r}, not by this server's issuer "
            f"{issuer!r}: every replica must run with the same --issuer"
        )
        self.field = "token"


class EtagMismatch(DomainError):
    """An update was conditional on an etag the resource no longer has (AIP-154)."""

    reason = "ETAG_MISMATCH"

    def __init__(self, resource: str) -> None:
        super().__init__(
            f"the {resource} changed since its etag was read: read it again and redo the change"
        )
        self.resource = resource

    @property
    def metadata(self) -> dict[str, str]:
        return {"resource": self.resource}


class StoreUnavailable(DomainError):
    """The store failed or is unreachable. Never to be turned into a wrong answer."""

    reason = "STORE_UNAVAILABLE"

    def __init__(self, message: str = "the store is unavailable; retry later") -> None:
        super().__init__(message)


class RateLimited(DomainError):
    """Too many failed authentications from this caller lately: retry later.

    RFC 6585 section 4 / RFC 9110 section 10.2.3 over HTTP (429 with
    Retry-After); RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure over gRPC.
    """

    reason = "RATE_LIMITED"

    def __init__(
        self, message: str, *, retry_after_seconds: int, subject: str, description: str
    ) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        # The QuotaFailure violation: what is limited and how. Never a secret.
        self.subject = subject
        self.description = description


class QuotaExceeded(RateLimited):
    """The application's tokens-per-minute quota is used up until the minute ends."""

    reason = "TOKEN_QUOTA_EXCEEDED"
