"""The client_credentials grant (RFC 6749 section 4.4).

The client is already authenticated when the grant runs (see
:class:`~m2mauth.core.issuance.TokenEndpoint`); the grant chooses scope,
audience and lifetime from what the application allows, and mints the token.
"""

from __future__ import annotations

from typing import ClassVar

from m2mauth.core.client_auth import AuthenticatedClient
from m2mauth.core.echo import shown
from m2mauth.core.errors import InvalidScope, InvalidTarget
from m2mauth.core.issuance import AccessTokens, IssuedToken
from m2mauth.core.models import Application
from m2mauth.core.policy import TokenParts
from m2mauth.core.scopes import is_scope_token
from m2mauth.core.token_request import TokenRequest

GRANT_TYPE = "client_credentials"
MAX_SCOPE_PARAMETER = 8192


def granted_scopes(requested: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The scopes to grant (RFC 6749 section 3.3).

    ``requested`` is space-delimited scope-tokens; empty means every allowed
    scope (our documented default). Each requested scope must be allowed,
    else InvalidScope (RFC 6749 section 5.2). Repeats are granted once, in
    the order asked.
    """
    if len(requested) > MAX_SCOPE_PARAMETER:
        raise InvalidScope(f"scope is longer than {MAX_SCOPE_PARAMETER} characters")
    if requested == "":
        return allowed
    # RFC 6749 section 3.3: scope = scope-token *( SP scope-token ); we tolerate
    # leading, trailing and repeated spaces, nothing else between tokens.
    tokens = [t for t in requested.split(" ") if t]
    if not tokens:
        raise InvalidScope("scope must list space-separated scopes, or be empty for all")
    granted: list[str] = []
    for token in tokens:
        if not is_scope_token(token):
            raise InvalidScope(
                "scope must be space-separated scope-tokens of printable ASCII without "
                "'\"' or '\\' (RFC 6749 section 3.3)"
            )
        if token not in allowed:
            # Name the scope: the client asked for it, so this reveals nothing new.
            raise InvalidScope(f"scope {shown(token)} is not allowed for this client")
        if token not in granted:
            granted.append(token)
    return tuple(granted)


def chosen_audience(requested: str, default: str, app: Application) -> str:
    """RFC 8707 section 2: the server default, or one the application may ask for."""
    if requested in ("", default):
        return default
    if requested in app.audiences:
        return requested
    raise InvalidTarget(f"audience {shown(requested)} is not allowed for this client")


def token_lifetime(app: Application, default_ttl: int, max_ttl: int) -> int:
    """The application's override or the server default, clamped to the maximum."""
    return min(app.token_ttl_seconds or default_ttl, max_ttl)


class ClientCredentialsGrant:
    """RFC 6749 section 4.4: a client asks for a token on its own behalf."""

    grant_type: ClassVar[str] = GRANT_TYPE

    def __init__(
        self,
        tokens: AccessTokens,
        *,
        default_audience: str,
        default_ttl_seconds: int,
        max_ttl_seconds: int,
    ) -> None:
        self._tokens = tokens
        self._audience = default_audience
        self._default_ttl = default_ttl_seconds
        self._max_ttl = max_ttl_seconds

    @classmethod
    def from_parts(cls, parts: TokenParts) -> ClientCredentialsGrant:
        policy = parts.policy
        return cls(
            parts.tokens,
            default_audience=policy.default_audience,
            default_ttl_seconds=policy.token_ttl_seconds,
            max_ttl_seconds=policy.max_token_ttl_seconds,
        )

    def issue(self, request: TokenRequest, client: AuthenticatedClient) -> IssuedToken:
        """RFC 6749 section 4.4.3: an access token, no refresh token."""
        app = client.application
        scopes = granted_scopes(request.scope, app.scopes)
        aud = chosen_audience(request.audience, self._audience, app)
        ttl = token_lifetime(app, self._default_ttl, self._max_ttl)
        return self._tokens.mint(client, scopes, aud, ttl)
