"""Why a token was not accepted: one small hierarchy, every message safe to show the caller.

Each error carries the RFC 6750 section 3.1 ``error`` code (``None`` where the RFC
says to send none) and a fixed ``description`` chosen here, never text from a
library, a key or a stack trace. Each transport maps the classes to its own
status codes in one table (``grpc_interceptor._GRPC_CODES``, ``asgi._HTTP_STATUS``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar


class TokenError(Exception):
    """Base class: the request is not authorized. ``str(err)`` is safe to return."""

    #: The RFC 6750 section 3.1 error code for ``WWW-Authenticate``; None: send none.
    error_code: ClassVar[str | None] = "invalid_token"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class MissingToken(TokenError):
    """No bearer token at all. RFC 6750 section 3.1: "the resource server SHOULD NOT
    include an error code or other error information" when the request lacks
    authentication information."""

    error_code = None


class InvalidRequest(TokenError):
    """The request is malformed, e.g. two Authorization headers (RFC 6750 section 3.1)."""

    error_code = "invalid_request"


class InvalidToken(TokenError):
    """Expired, revoked, malformed, wrongly signed or not meant for us."""

    error_code = "invalid_token"


class AccessDenied(TokenError):
    """A valid token that may not do this."""

    error_code: ClassVar[str | None] = None


class InsufficientScope(AccessDenied):
    """The token lacks a scope the request needs (RFC 6750 section 3.1)."""

    error_code: ClassVar[str | None] = "insufficient_scope"

    def __init__(self, required_scopes: Iterable[str]) -> None:
        self.required_scopes = frozenset(required_scopes)
        super().__init__("the token lacks a required scope")


class WrongOrganization(AccessDenied):
    """The resource belongs to another organization than the token's ``org_id``.

    RFC 6750 section 3.1 has one code for a valid token that may not do this:
    insufficient_scope, "the request requires higher privileges than provided by
    the access token". Without it a client sees a bare 403 that no OAuth library
    can tell from a proxy's refusal.
    """

    error_code: ClassVar[str | None] = "insufficient_scope"

    def __init__(self) -> None:
        super().__init__("the token's organization may not access this resource")


class VerifierUnavailable(TokenError):
    """We could not check the token (keys or introspection unreachable): retry later.

    Never reported as an invalid token: the fault is ours, not the caller's.
    """

    error_code = None


class JwksUnavailable(VerifierUnavailable):
    """No signing keys could be fetched and none are cached."""

    def __init__(self) -> None:
        super().__init__("the token signing keys are unavailable; retry later")


class IntrospectionUnavailable(VerifierUnavailable):
    """The introspection endpoint did not give a usable answer."""

    def __init__(self) -> None:
        super().__init__("token introspection is unavailable; retry later")
