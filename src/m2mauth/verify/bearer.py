"""RFC 6750 on the wire, shared by the gRPC interceptor and the ASGI middleware.

Reading ``Authorization: Bearer <token>`` (section 2.1) and writing the
``WWW-Authenticate`` challenge (section 3).
"""

from __future__ import annotations

from collections.abc import Sequence

from m2mauth.verify.errors import (
    AccessDenied,
    InsufficientScope,
    InvalidRequest,
    MissingToken,
    TokenError,
    VerifierUnavailable,
)


def bearer_token(authorization: Sequence[str]) -> str:
    """The token from the request's Authorization values (header or metadata entries).

    Raises MissingToken when there is no bearer token (another scheme counts as
    none, RFC 6750 section 3.1) and InvalidRequest when there is more than one
    Authorization value (section 3.1: "uses more than one method").
    """
    if not authorization:
        raise MissingToken("a bearer token is required")
    if len(authorization) > 1:
        raise InvalidRequest("send exactly one Authorization value")
    scheme, _, credentials = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken("a bearer token is required")
    credentials = credentials.strip()
    if not credentials:
        raise InvalidRequest("the bearer token is empty")
    return credentials


def www_authenticate(error: TokenError, realm: str | None = None) -> str | None:
    """The ``WWW-Authenticate`` challenge for ``error``, or None when none belongs.

    401s always get one (RFC 7235 section 3.1); a 403 gets one only for
    insufficient_scope (RFC 6750 section 3.1: a missing scope or another
    organization's resource); an outage (503) gets none.
    """
    if isinstance(error, VerifierUnavailable) or (
        isinstance(error, AccessDenied) and error.error_code is None
    ):
        return None
    params: list[str] = []
    if realm:
        params.append(f'realm="{_quoted(realm)}"')
    if error.error_code is not None:
        params.append(f'error="{error.error_code}"')
        params.append(f'error_description="{_quoted(error.description)}"')
    if isinstance(error, InsufficientScope) and error.required_scopes:
        params.append(f'scope="{_quoted(" ".join(sorted(error.required_scopes)))}"')
    return "Bearer " + ", ".join(params) if params else "Bearer"


def _quoted(text: str) -> str:
    # RFC 6750 section 3: error_description and scope values use %x20-21 / %x23-5B /
    # %x5D-7E, i.e. printable ASCII without '"' and '\'.
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)
