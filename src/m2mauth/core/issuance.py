"""The client_credentials grant (RFC 6749 section 4.4) issuing RFC 9068 JWT access tokens.

One request: check the grant type, authenticate the client (from the cache
most of the time), choose scope, audience and lifetime, sign with the
CURRENT key (already parsed), record usage in memory, log one structured line.
No store write happens here; see :mod:`m2mauth.core.usage`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import jwt

from m2mauth.core import ids
from m2mauth.core.client_auth import AuthenticatedClient, ClientAuthenticator, FailureSink
from m2mauth.core.clock import Clock
from m2mauth.core.errors import InvalidRequest, InvalidScope, InvalidTarget, UnsupportedGrantType
from m2mauth.core.models import Application
from m2mauth.core.signing_keys import SigningKeyRing
from m2mauth.core.usage import UsageRecorder

log = logging.getLogger("m2mauth.tokens")

GRANT_TYPE = "client_credentials"
TOKEN_TYPE = "Bearer"  # noqa: S105 - RFC 6750, not a secret
# RFC 9068 section 2.1: the media type of a JWT access token is application/at+jwt,
# and the "typ" header omits the "application/" prefix (RFC 7515 section 4.1.9).
JWT_TYPE = "at+jwt"
# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")
MAX_SCOPE_PARAMETER = 8192


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """The RFC 6749 section 5.1 response, plus the claims for the caller's logs/tests."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    claims: dict[str, Any]


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
        if not _SCOPE_TOKEN.fullmatch(token):
            raise InvalidScope(
                "scope must be space-separated scope-tokens of printable ASCII without "
                "'\"' or '\\' (RFC 6749 section 3.3)"
            )
        if token not in allowed:
            # Name the scope: the client asked for it, so this reveals nothing new.
            raise InvalidScope(f"scope {token!r} is not allowed for this client")
        if token not in granted:
            granted.append(token)
    return tuple(granted)


def chosen_audience(requested: str, default: str, app: Application) -> str:
    """RFC 8707 section 2: the server default, or one the application may ask for."""
    if requested in ("", default):
        return default
    if requested in app.audiences:
        return requested
    raise InvalidTarget(f"audience {requested!r} is not allowed for this client")


def token_lifetime(app: Application, default_ttl: int, max_ttl: int) -> int:
    """The application's override or the server default, clamped to the maximum."""
    return min(app.token_ttl_seconds or default_ttl, max_ttl)


class TokenIssuer:
    def __init__(
        self,
        clients: ClientAuthenticator,
        ring: SigningKeyRing,
        usage: UsageRecorder,
        clock: Clock,
        *,
        issuer: str,
        default_audience: str,
        default_ttl_seconds: int,
        max_ttl_seconds: int,
        on_auth_failure: FailureSink | None = None,
    ) -> None:
        self._clients = clients
        self._ring = ring
        self._usage = usage
        self._clock = clock
        self._issuer = issuer
        self._audience = default_audience
        self._default_ttl = default_ttl_seconds
        self._max_ttl = max_ttl_seconds
        self._on_auth_failure = on_auth_failure

    def issue(
        self,
        grant_type: str,
        client_id: str,
        client_secret: str,
        scope: str = "",
        audience: str = "",
    ) -> IssuedToken:
        """RFC 6749 section 4.4.2 request -> section 4.4.3 response (no refresh token)."""
        if not grant_type:
            raise InvalidRequest("grant_type", "is required; use client_credentials")
        if grant_type != GRANT_TYPE:
            raise UnsupportedGrantType(grant_type)
        # Authenticate before judging scope or audience: an unauthenticated
        # caller learns nothing about what a client may ask for.
        client = self._clients.authenticate(client_id, client_secret, self._on_auth_failure)
        scopes = granted_scopes(scope, client.application.scopes)
        aud = chosen_audience(audience, self._audience, client.application)
        ttl = token_lifetime(client.application, self._default_ttl, self._max_ttl)
        now = self._clock()
        claims = self._claims(client, scopes, aud, int(now.timestamp()), ttl)
        kid, alg, key = self._ring.current_signer()
        token = jwt.encode(claims, key, algorithm=alg, headers={"typ": JWT_TYPE, "kid": kid})
        self._usage.record(client.secret, now)
        log.info(
            "token issued",
            extra={
                "jti": claims["jti"],
                "client_id": client.application.client_id,
                "application_id": client.application.id,
                "org_id": client.organization.id,
                "secret_id": client.secret.id,
                "scope": claims.get("scope", ""),
                "aud": aud,
                "kid": kid,
                "expires_in": ttl,
            },
        )
        return IssuedToken(
            access_token=token,
            token_type=TOKEN_TYPE,
            expires_in=ttl,
            scope=" ".join(scopes),
            claims=claims,
        )

    def _claims(
        self, client: AuthenticatedClient, scopes: tuple[str, ...], aud: str, iat: int, ttl: int
    ) -> dict[str, Any]:
        """RFC 9068 section 2.2 claims (iss, exp, aud, sub, client_id, iat, jti) plus
        org_id and scope. ``sub`` is the client itself: there is no resource owner
        in the client_credentials grant (RFC 9068 section 2.2)."""
        app = client.application
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": app.client_id,
            "aud": aud,
            "client_id": app.client_id,
            # From the application's stored organization only, never the request.
            "org_id": app.organization_id,
            "iat": iat,
            "exp": iat + ttl,
            "jti": ids.new_id(ids.TOKEN, iat * 1000),
        }
        # RFC 9068 section 2.2.3: scope when any is granted; omitted when none.
        if scopes:
            claims["scope"] = " ".join(scopes)
        return claims
