"""The token endpoint (RFC 6749 section 3.2) and the JWT access tokens it issues (RFC 9068).

:class:`TokenEndpoint` checks the grant type, authenticates the client through
the :class:`~m2mauth.core.client_auth.ClientAuthentication` seam and hands the
request to the registered :class:`Grant` (client_credentials today, see
:mod:`m2mauth.core.client_credentials`). Every grant mints its token with
:class:`AccessTokens`: claims, signature with the CURRENT key (already parsed,
its header already encoded: :mod:`m2mauth.core.jws`), usage recorded in
memory, one structured log line. Minting writes nothing to the store (see
:mod:`m2mauth.core.usage`); only private_key_jwt authentication does, to
record the assertion it accepted (:mod:`m2mauth.core.assertion_replay`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from m2mauth.core import ids
from m2mauth.core.client_auth import AuthenticatedClient, ClientAuthentication, FailureSink
from m2mauth.core.clock import Clock
from m2mauth.core.errors import InvalidClient, InvalidRequest, UnsupportedGrantType
from m2mauth.core.signing_keys import SigningKeyRing
from m2mauth.core.throttling import FailureThrottle, TokenQuota
from m2mauth.core.token_request import ClientCredentials, TokenRequest
from m2mauth.core.usage import UsageRecorder

log = logging.getLogger("m2mauth.tokens")
ISSUED = "token issued"
# Asked for a check made before a hot line is logged (m2mauth.logs.line_gate): by
# logger name, level and message template, whether it would be written now.
LineGate = Callable[[str, int, str], Callable[[], bool]]


def _always() -> bool:
    return True


TOKEN_TYPE = "Bearer"  # noqa: S105 - RFC 6750, not a secret


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """The RFC 6749 section 5.1 response, plus the claims for the caller's logs/tests."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    claims: dict[str, Any]


class Grant(Protocol):
    """One grant type: what to issue to an authenticated client for a request."""

    # The ``grant_type`` value it serves (RFC 8414 ``grant_types_supported``).
    grant_type: ClassVar[str]

    def issue(self, request: TokenRequest, client: AuthenticatedClient) -> IssuedToken: ...


class AccessTokens:
    """Mints RFC 9068 JWT access tokens."""

    def __init__(
        self,
        ring: SigningKeyRing,
        usage: UsageRecorder,
        clock: Clock,
        *,
        issuer: str,
        line_gate: LineGate | None = None,
    ) -> None:
        self._ring = ring
        self._usage = usage
        self._clock = clock
        self.issuer = issuer
        # The "token issued" line is rate limited where it is written; asked first,
        # a dropped one costs no LogRecord.
        self._log_issued = line_gate(log.name, logging.INFO, ISSUED) if line_gate else _always

    def mint(
        self, client: AuthenticatedClient, scopes: tuple[str, ...], aud: str, ttl: int
    ) -> IssuedToken:
        now = self._clock()
        claims = self._claims(client, scopes, aud, int(now.timestamp()), ttl)
        signer = self._ring.signer()
        token = signer.sign(claims)
        secret_id = client.secret.id if client.secret is not None else ""
        self._usage.record(client.application.id, secret_id, now)
        if self._log_issued():
            self._log(claims, client, secret_id, aud, signer.kid, ttl)
        return IssuedToken(
            access_token=token,
            token_type=TOKEN_TYPE,
            expires_in=ttl,
            scope=" ".join(scopes),
            claims=claims,
        )

    @staticmethod
    def _log(
        claims: dict[str, Any],
        client: AuthenticatedClient,
        secret_id: str,
        aud: str,
        kid: str,
        ttl: int,
    ) -> None:
        log.info(
            ISSUED,
            extra={
                "jti": claims["jti"],
                "client_id": client.application.client_id,
                "application_id": client.application.id,
                "org_id": client.organization.id,
                "secret_id": secret_id,
                "scope": claims.get("scope", ""),
                "aud": aud,
                "kid": kid,
                "expires_in": ttl,
            },
        )

    def _claims(
        self, client: AuthenticatedClient, scopes: tuple[str, ...], aud: str, iat: int, ttl: int
    ) -> dict[str, Any]:
        """RFC 9068 section 2.2 claims (iss, exp, aud, sub, client_id, iat, jti) plus
        org_id and scope. ``sub`` is the client itself: there is no resource owner
        in the client_credentials grant (RFC 9068 section 2.2)."""
        app = client.application
        claims: dict[str, Any] = {
            "iss": self.issuer,
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


class TokenEndpoint:
    """RFC 6749 section 3.2: one request, one grant, one authenticated client."""

    def __init__(
        self,
        clients: ClientAuthentication,
        grants: Sequence[Grant],
        *,
        failure_sink: Callable[[str], FailureSink] | None = None,
        throttle: FailureThrottle | None = None,
        quota: TokenQuota | None = None,
    ) -> None:
        self._clients = clients
        self._grants = {grant.grant_type: grant for grant in grants}
        self._supported = ", ".join(self._grants)  # for the errors below
        self._throttle = throttle
        self._quota = quota
        # Given the caller's address, where to report a failed authentication.
        self._failure_sink = failure_sink

    def issue(self, request: TokenRequest) -> IssuedToken:
        """RFC 6749 section 4.4.2 request -> section 4.4.3 response (no refresh token)."""
        if not request.grant_type:
            raise InvalidRequest("grant_type", f"is required; use {self._supported}")
        grant = self._grants.get(request.grant_type)
        if grant is None:
            raise UnsupportedGrantType(request.grant_type, self._supported)
        # Authenticate before judging scope or audience: an unauthenticated
        # caller learns nothing about what a client may ask for.
        sink = self._failure_sink(request.source) if self._failure_sink else None
        client = authenticate_throttled(
            self._clients, self._throttle, request.credentials, request.source, sink
        )
        if self._quota is not None:
            self._quota.take(client.application)
        return grant.issue(request, client)


def authenticate_throttled(
    clients: ClientAuthentication,
    throttle: FailureThrottle | None,
    credentials: ClientCredentials,
    source: str,
    sink: FailureSink | None,
) -> AuthenticatedClient:
    """Authenticate unless this client or address failed too often lately
    (RateLimited, before any store read); a failure spends from its buckets."""
    if throttle is None:
        return clients.authenticate(credentials, sink)
    # The client_id sent, or the one an assertion claims: either way its
    # failures are counted against that client (and the address).
    client_id = clients.claimed_client_id(credentials)
    throttle.check(client_id, source)
    try:
        return clients.authenticate(credentials, sink)
    except InvalidClient:
        throttle.failed(client_id, source)
        raise
