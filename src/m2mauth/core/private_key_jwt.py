"""private_key_jwt: a client proves itself with a JWT signed by its own private key
(RFC 7523 section 2.2, RFC 7521 section 4.2, OpenID Connect Core section 9).

The request carries ``client_assertion_type`` =
``urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and the JWT as
``client_assertion`` (``client_id`` is optional; when sent it must be the
assertion's subject). The assertion is accepted only if (RFC 7523 section 3):

* its ``alg`` is RS256, PS256, ES256 or EdDSA (never ``none``, never an HMAC)
  and its signature verifies with the key of the application's JWK Set that its
  ``kid`` names, or without a kid the only key fitting the algorithm;
* ``iss`` and ``sub`` are both the client_id of an application whose
  ``token_endpoint_auth_method`` is private_key_jwt (a secret application
  cannot use an assertion, nor a key application a secret: never both);
* ``aud`` is the token endpoint URL or the issuer (RFC 7523 section 3 item 3,
  draft-ietf-oauth-rfc7523bis);
* ``exp`` is present, not past, and at most the configured maximum lifetime
  ahead (a short-lived assertion bounds what a stolen one is worth); ``nbf`` and
  ``iat``, when present, are not in the future (all with the clock leeway);
* ``jti`` is present and was never used before (section 3 item 7): the store
  remembers every used (client, jti) until the assertion expires, so a replay is
  refused by every process and replica on the database.

Every failure is the one InvalidClient (RFC 6749 section 5.2), its reason for
the audit log only; a store failure is StoreUnavailable, never InvalidClient.
Nothing is cached: each assertion is checked against the store's current
application, so a disabled application, a removed key or a changed method takes
effect at once (the replay record is a store write per assertion anyway).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import jwt

from m2mauth.core import ids
from m2mauth.core.assertion_replay import UsedAssertions
from m2mauth.core.blocking import check_may_block
from m2mauth.core.changes import Change
from m2mauth.core.client_auth import (
    MAX_CLIENT_ID_LENGTH,
    AuthenticatedClient,
    FailureSink,
    failed,
)
from m2mauth.core.client_keys import (
    ASSERTION_ALGORITHMS,
    RemoteJwks,
    fetched_key,
    verification_key,
)
from m2mauth.core.clock import Clock
from m2mauth.core.errors import InvalidRequest
from m2mauth.core.interfaces import Store
from m2mauth.core.models import Application, Organization, TokenEndpointAuthMethod
from m2mauth.core.policy import TokenParts
from m2mauth.core.token_request import ClientCredentials

# RFC 7523 section 2.2.
JWT_BEARER_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Longer than any assertion a client needs (an RS256 JWT is under 1 KiB), short
# enough that parsing one costs nothing.
MAX_ASSERTION_LENGTH = 8 * 1024
MAX_JTI_LENGTH = 256


@functools.lru_cache(maxsize=256)
def unverified_parts(assertion: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Header and claims, signature NOT checked: only to find who claims to be
    calling and which key to check with. Read them, never change them.

    Remembered for the few requests in flight: one request asks up to five times
    (routing, throttling, parsing), and pyjwt's decoding of a segment is most of
    an assertion's cost after the store (measured: 5 decodings took half of the
    ~0.9 ms of an issuance)."""
    if len(assertion) > MAX_ASSERTION_LENGTH:
        return None
    try:
        decoded = jwt.api_jwt.decode_complete(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    return decoded["header"], decoded["payload"]


class PrivateKeyJwtAuth:
    """The ClientAuthMethod of RFC 7523 client assertions."""

    names: ClassVar[tuple[str, ...]] = ("private_key_jwt",)

    def __init__(
        self,
        store: Store,
        clock: Clock,
        used: UsedAssertions,
        *,
        audiences: tuple[str, ...],
        max_lifetime_seconds: int,
        leeway_seconds: int,
        remote_jwks: RemoteJwks | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._used = used
        self._audiences = audiences
        self._max_lifetime = max_lifetime_seconds
        self._leeway = leeway_seconds
        # Where the JWK Sets of applications with a jwks_uri come from; without
        # one (tools, some tests) such applications cannot authenticate.
        self._remote = remote_jwks

    @classmethod
    def from_parts(cls, parts: TokenParts) -> PrivateKeyJwtAuth:
        policy = parts.policy
        return cls(
            parts.store,
            parts.clock,
            parts.used_assertions or UsedAssertions(parts.store, parts.clock),
            audiences=(policy.token_endpoint_url, policy.issuer),
            max_lifetime_seconds=policy.client_assertion_max_lifetime_seconds,
            leeway_seconds=policy.clock_leeway_seconds,
            remote_jwks=parts.remote_jwks,
        )

    def presented(self, credentials: ClientCredentials) -> bool:
        # A workload's platform token is the federated method's (iss is not sub).
        sent = bool(credentials.client_assertion or credentials.client_assertion_type)
        return sent and not federated_shape(credentials)

    def claimed_client_id(self, credentials: ClientCredentials) -> str:
        """The client_id sent, else the assertion's unverified ``sub``: what the
        failure throttle counts against (RFC 7523 section 3 item 2)."""
        if credentials.client_id:
            return credentials.client_id
        parts = unverified_parts(credentials.client_assertion)
        sub = parts[1].get("sub") if parts is not None else None
        return sub[:MAX_CLIENT_ID_LENGTH] if isinstance(sub, str) else ""

    def authenticate(
        self, credentials: ClientCredentials, on_failure: FailureSink | None = None
    ) -> AuthenticatedClient:
        """The authenticated client, or InvalidClient (StoreUnavailable propagates)."""
        if credentials.client_assertion_type != JWT_BEARER_ASSERTION_TYPE:
            # RFC 7521 section 4.2: the one type this server understands.
            raise InvalidRequest("client_assertion_type", f"must be {JWT_BEARER_ASSERTION_TYPE}")
        if not credentials.client_assertion:
            raise InvalidRequest("client_assertion", "is required with client_assertion_type")
        # Accepting an assertion writes its jti (below), which never happens on the
        # event loop: go to a thread now, rather than read and verify here only to
        # do it all again there (core/blocking.py).
        check_may_block()
        parsed = _parse(credentials)
        if isinstance(parsed, str):
            raise failed(self.claimed_client_id(credentials), parsed, None, on_failure)
        app, org = load_client(self._store, parsed.client_id)
        reason = self._check(credentials.client_assertion, parsed, app, org)
        if reason or app is None or org is None:
            raise failed(parsed.client_id, reason, app, on_failure)
        # Last, once everything else holds: a refused assertion spends no jti.
        # Remembered until it can no longer be accepted: exp plus the leeway.
        until = datetime.fromtimestamp(parsed.claims["exp"], UTC) + timedelta(seconds=self._leeway)
        if not self._used.first_use(parsed.client_id, parsed.claims["jti"], until):
            raise failed(parsed.client_id, "replayed_assertion", app, on_failure)
        return AuthenticatedClient(app, org, None)

    def _check(
        self,
        assertion: str,
        parsed: _Parsed,
        app: Application | None,
        org: Organization | None,
    ) -> str:
        """ "" if the application may authenticate with this assertion, else why not."""
        if app is None:
            return "unknown_client"
        if app.token_endpoint_auth_method is not TokenEndpointAuthMethod.PRIVATE_KEY_JWT:
            return "auth_method_not_allowed"
        key = self._key(app, parsed)
        if key is None:
            return "unknown_key"
        return self._verify(assertion, key, parsed) or state_problem(app, org)

    def _key(self, app: Application, parsed: _Parsed) -> Any | None:
        """The key to check the assertion with: from the inline JWK Set, or from
        the one at the application's jwks_uri, fetched again once when the
        assertion names a kid the cached set lacks (the partner rotated)."""
        if not app.jwks_uri:
            return verification_key(app.jwks, parsed.alg, parsed.kid)
        if self._remote is None:
            return None
        fetch = functools.partial(self._remote.get, app.jwks_uri)
        return fetched_key(fetch, parsed.alg, parsed.kid)

    def _verify(self, assertion: str, key: Any, parsed: _Parsed) -> str:
        """ "" if the signature and the claims hold, else the reason for the audit log."""
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=[parsed.alg],
                audience=list(self._audiences),
                issuer=parsed.client_id,
                # Times are checked below against our clock (tests move it).
                options={
                    "require": ["exp", "iss", "sub", "aud", "jti"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            return f"missing_{exc.claim}"
        except jwt.InvalidTokenError as exc:
            return next(reason for kind, reason in _DECODE_FAILURES if isinstance(exc, kind))
        return time_problem(
            claims, self._clock().timestamp(), self._max_lifetime, self._leeway
        ) or _jti(claims)

    # Nothing is cached (see the module docstring): nothing to forget.
    def invalidate(self, client_id: str | None = None) -> None:
        pass

    def changed(self, change: Change) -> None:
        pass

    def reset(self) -> None:
        pass


def load_client(store: Store, client_id: str) -> tuple[Application | None, Organization | None]:
    """The application with this client_id and its organization, read fresh."""
    # A client_id that cannot be ours is unknown without asking the store.
    if len(client_id) > MAX_CLIENT_ID_LENGTH or not ids.is_id(client_id, ids.CLIENT):
        return None, None
    with store.reading() as uow:
        app = uow.get_application_by_client_id(client_id)
        org = uow.get_organization(app.organization_id) if app is not None else None
    return app, org


@dataclass(frozen=True, slots=True)
class _Parsed:
    """What an assertion claims, before its signature is checked."""

    alg: str
    kid: str | None
    client_id: str  # its sub (and iss)
    claims: dict[str, Any]


# The first matching exception class wins: subclasses come before InvalidTokenError.
_DECODE_FAILURES: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "invalid_signature"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "issuer_subject_mismatch"),
    (jwt.InvalidTokenError, "invalid_assertion"),
)


def _parse(credentials: ClientCredentials) -> _Parsed | str:
    """Who the assertion says it is and which key it names, or why it cannot be one."""
    parts = unverified_parts(credentials.client_assertion)
    if parts is None:
        return "malformed_assertion"
    header, claims = parts
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ASSERTION_ALGORITHMS:
        return "algorithm_not_allowed"
    if kid is not None and not isinstance(kid, str):
        return "malformed_assertion"
    sub, iss = claims.get("sub"), claims.get("iss")
    # RFC 7523 section 3 items 1 and 2: for client authentication both are the
    # client_id (and so is a client_id sent alongside, RFC 7521 section 4.2).
    if not isinstance(sub, str) or not sub or iss != sub:
        return "issuer_subject_mismatch"
    if credentials.client_id and credentials.client_id != sub:
        return "client_id_mismatch"
    return _Parsed(alg, kid, sub, claims)


def state_problem(app: Application, org: Organization | None) -> str:
    if not app.enabled:
        return "application_disabled"
    if org is None:
        return "organization_missing"
    if not org.enabled:
        return "organization_disabled"
    return ""


def _jti(claims: dict[str, Any]) -> str:
    jti = claims["jti"]
    if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI_LENGTH:
        return "invalid_jti"
    return ""


def time_problem(claims: dict[str, Any], now: float, max_lifetime: int, leeway: int) -> str:
    """RFC 7523 section 3 items 4 to 6 (exp required, nbf and iat optional), with
    the leeway; "" if they hold, else the reason for the audit log."""
    exp, nbf, iat = claims["exp"], claims.get("nbf"), claims.get("iat")
    if not _is_time(exp) or any(t is not None and not _is_time(t) for t in (nbf, iat)):
        return "invalid_assertion"
    if exp < now - leeway:
        return "expired_assertion"
    if exp > now + max_lifetime + leeway:
        return "assertion_lifetime_too_long"
    if any(t is not None and t > now + leeway for t in (nbf, iat)):
        return "assertion_not_yet_valid"
    return ""


def federated_shape(credentials: ClientCredentials) -> bool:
    """Whether the assertion looks like a workload's platform token rather than a
    client's own assertion: its iss is not its sub (RFC 7523 section 3 makes
    both the client_id for the latter). Unverified: it only routes the request
    to the method that checks it (core/federated_auth.py)."""
    parts = unverified_parts(credentials.client_assertion)
    if parts is None:
        return False
    iss, sub = parts[1].get("iss"), parts[1].get("sub")
    return isinstance(iss, str) and isinstance(sub, str) and bool(sub) and iss != sub


def _is_time(value: Any) -> bool:
    # RFC 7519 section 2 NumericDate; bool is an int in Python but not a time,
    # and Python's JSON reads NaN and Infinity, which are not either.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
