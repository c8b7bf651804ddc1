"""The one table from service errors to OAuth HTTP errors (RFC 6749 section 5.2).

Keys are ``m2mauth.v1.ErrorReason`` names (the ErrorInfo reason every service
error carries), so the in-process and the remote backend map identically.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 6749 section 5.1 (and 5.2 by extension): token endpoint answers must not
# be cached. Pragma for HTTP/1.0 caches, as the RFC's examples send it.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True, slots=True)
class OAuthError(Exception):
    """An error rendered as ``{"error": ..., "error_description": ...}``."""

    status: int
    error: str
    description: str
    # Seconds for a Retry-After header (RFC 9110 section 10.2.3), when known.
    retry_after: int | None = None

    def __str__(self) -> str:
        return f"{self.error}: {self.description}"


# reason -> (HTTP status, RFC 6749 section 5.2 / RFC 7009 / RFC 8707 error code)
HTTP_ERRORS: dict[str, tuple[int, str]] = {
    "INVALID_CLIENT": (401, "invalid_client"),
    "ADMIN_KEY_INVALID": (401, "invalid_client"),
    "INVALID_REQUEST": (400, "invalid_request"),
    "INVALID_FIELD": (400, "invalid_request"),
    "INVALID_PAGE_TOKEN": (400, "invalid_request"),
    "UNSUPPORTED_GRANT_TYPE": (400, "unsupported_grant_type"),
    "INVALID_SCOPE": (400, "invalid_scope"),
    "INVALID_TARGET": (400, "invalid_target"),  # RFC 8707 section 2
    "UNAUTHORIZED_CLIENT": (400, "unauthorized_client"),  # RFC 7009 section 2.2.1
    "PERMISSION_DENIED": (400, "unauthorized_client"),
    "STORE_UNAVAILABLE": (503, "temporarily_unavailable"),
    # A sibling replica's token under another --issuer: the caller must hear of it
    # (never a silent 200 that revoked nothing), with the description kept.
    "ISSUER_MISMATCH": (400, "invalid_request"),
    # RFC 6585 section 4. RFC 6749 has no code for it; these name the cause.
    "RATE_LIMITED": (429, "rate_limited"),
    "TOKEN_QUOTA_EXCEEDED": (429, "quota_exceeded"),
    # Management-plane reasons cannot come from the token endpoints; if one
    # ever does, it is our bug, and the caller learns nothing more than that.
    "NOT_FOUND": (500, "server_error"),
    "ALREADY_EXISTS": (500, "server_error"),
    "FAILED_PRECONDITION": (500, "server_error"),
    "SECRET_LIMIT_REACHED": (500, "server_error"),
    "ETAG_MISMATCH": (500, "server_error"),
    "INTERNAL": (500, "server_error"),
}

SERVER_ERROR = (500, "server_error")


def from_reason(reason: str, message: str, retry_after: int | None = None) -> OAuthError:
    status, code = HTTP_ERRORS.get(reason, SERVER_ERROR)
    if status >= 500:
        message = (
            "the service is temporarily unavailable; retry later"
            if status == 503
            else "internal error"
        )
    return OAuthError(status, code, message, retry_after if status == 429 else None)


def unavailable() -> OAuthError:
    """The service (or, for serve-http, the upstream) cannot be reached."""
    return OAuthError(503, "temporarily_unavailable", "the service is unavailable; retry later")


def invalid_request(description: str) -> OAuthError:
    return OAuthError(400, "invalid_request", description)
