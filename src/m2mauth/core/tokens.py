"""The token side of the server, assembled: the token endpoint, introspection,
revocation, JWKS and signing keys, and the periodic work they need.

:func:`build_token_components` wires the parts from a :class:`~m2mauth.core.
policy.TokenPolicy` and the registered methods and grants (see
:mod:`m2mauth.core.registry`). The core owns no threads: the composition root
runs :meth:`TokenComponents.flush` and :meth:`TokenComponents.maintenance`
periodically (see :mod:`m2mauth.background`):

* flush (every 2 s by default): coalesced secret usage and queued failure
  audit events are written to the store;
* maintenance (every 30 s by default): the key ring refreshes from the store
  (so another replica's rotation is seen within that period), retires expired
  PREVIOUS keys, rotates when due, and expired revocations are purged.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from m2mauth.core import ids
from m2mauth.core.assertion_replay import UsedAssertions
from m2mauth.core.changes import Freshness, Subscriber
from m2mauth.core.client_auth import (
    AuthenticatedClient,
    AuthFailure,
    ClientAuthentication,
    FailureSink,
)
from m2mauth.core.client_keys import RemoteJwks
from m2mauth.core.clock import Clock
from m2mauth.core.credentials import CredentialHasher
from m2mauth.core.failures import FailedAttempts, presented_actor
from m2mauth.core.interfaces import Store
from m2mauth.core.introspection import Caller, Introspector, TokenStates
from m2mauth.core.issuance import (
    AccessTokens,
    IssuedToken,
    LineGate,
    TokenEndpoint,
    authenticate_throttled,
)
from m2mauth.core.key_management import SigningKeyAdmin
from m2mauth.core.pagination import PageTokenCodec
from m2mauth.core.policy import DEFAULT_CLIENT_CACHE_TTL_SECONDS, TokenParts, TokenPolicy
from m2mauth.core.registry import CLIENT_AUTH_METHODS, GRANTS
from m2mauth.core.revocation import Revoker
from m2mauth.core.signing_keys import DEFAULT_REFRESH_INTERVAL_SECONDS, SigningKeyRing
from m2mauth.core.throttling import FailureThrottle, TokenQuota
from m2mauth.core.token_request import ClientCredentials, TokenRequest
from m2mauth.core.usage import UsageRecorder
from m2mauth.core.verification import SignedTokens

log = logging.getLogger("m2mauth.tokens")

ISSUE_FAILED = "token.issue_failed"
INTROSPECT_FAILED = "token.introspect_failed"
REVOKE_FAILED = "token.revoke_failed"


def failure_recorder(
    attempts: FailedAttempts, fingerprint: Callable[[str], str], action: str, source: str
) -> FailureSink:
    """Report a failed client authentication to the aggregated audit trail, and log it."""

    def record(failure: AuthFailure) -> None:
        app = failure.application
        # The presented client_id only if it has the shape of one: a secret
        # typed into the client_id field must not be stored or logged.
        actor = presented_actor(failure.client_id, ids.CLIENT, fingerprint)
        attempts.record(
            actor=actor,
            action=action,
            reason=failure.reason,
            source=source,
            organization_id=app.organization_id if app else None,
            application_id=app.id if app else None,
        )
        log.info(
            "client authentication failed",
            extra={"actor": actor, "reason": failure.reason, "action": action, "source": source},
        )

    return record


@dataclass
class TokenComponents:
    policy: TokenPolicy
    ring: SigningKeyRing
    clients: ClientAuthentication
    usage: UsageRecorder
    failures: FailedAttempts
    fingerprint: Callable[[str], str]
    throttle: FailureThrottle | None
    endpoint: TokenEndpoint
    introspector: Introspector
    revoker: Revoker
    keys: SigningKeyAdmin
    clock: Clock
    used_assertions: UsedAssertions

    # --- the operations the transports call ---------------------------------
    def issue_token(self, request: TokenRequest) -> IssuedToken:
        return self.endpoint.issue(request)

    def authenticate_client(
        self, credentials: ClientCredentials, action: str = INTROSPECT_FAILED, source: str = ""
    ) -> AuthenticatedClient:
        """For introspection and revocation callers; failures are audited as ``action``."""
        return authenticate_throttled(
            self.clients,
            self.throttle,
            credentials,
            source,
            failure_recorder(self.failures, self.fingerprint, action, source),
        )

    def caller(
        self,
        credentials: ClientCredentials,
        action: str,
        source: str,
        otherwise: Callable[[], Caller],
    ) -> Caller:
        """Who asks to introspect or revoke: a request with client credentials (of any
        registered method) is the client's own; one without is authorized by
        ``otherwise`` (an admin key). RFC 7662 section 2.1, RFC 7009 section 2.1."""
        if self.clients.presented(credentials):
            return self.authenticate_client(credentials, action, source)
        return otherwise()

    def introspect(self, token: str, caller: Caller) -> dict[str, Any]:
        return self.introspector.introspect(token, caller)

    def revoke(self, token: str, caller: Caller) -> bool:
        return self.revoker.revoke(token, caller)

    def jwks(self) -> list[dict[str, str]]:
        return self.ring.jwks()

    @property
    def jwks_max_age_seconds(self) -> int:
        return self.policy.jwks_max_age_seconds

    @property
    def subscribers(self) -> list[Subscriber]:
        """What the change feed keeps exact: client lookups, token states, keys."""
        return [self.clients, self.introspector.states, self.ring]

    # --- periodic work, run by the composition root ---------------------------
    def flush(self, *, final: bool = False) -> None:
        """Write coalesced usage and the failed attempts of minutes that are over
        (of every minute if ``final``); both are attempted."""
        try:
            self.usage.flush()
        finally:
            self.failures.flush(final=final)

    def maintenance(self) -> None:
        """Key refresh/retire/rotate, then purge of expired revocations and of
        used client assertions that have expired."""
        try:
            self.ring.maintenance()
        finally:
            try:
                self.revoker.purge()
            finally:
                self.used_assertions.purge()


def build_token_components(
    policy: TokenPolicy,
    store: Store,
    key_encryption_key: bytes,
    hasher: CredentialHasher,
    pages: PageTokenCodec,
    clock: Clock,
    *,
    failures: FailedAttempts,
    fingerprint: Callable[[str], str],
    throttle: FailureThrottle | None = None,
    quota: TokenQuota | None = None,
    freshness: Freshness | None = None,
    client_cache_ttl_seconds: float = DEFAULT_CLIENT_CACHE_TTL_SECONDS,
    key_refresh_interval_seconds: float = DEFAULT_REFRESH_INTERVAL_SECONDS,
    monotonic: Callable[[], float] = time.monotonic,
    remote_jwks: RemoteJwks | None = None,
    line_gate: LineGate | None = None,
) -> TokenComponents:
    """The token side over one store, with every registered method and grant."""
    ring = SigningKeyRing(
        store,
        key_encryption_key,
        clock,
        algorithm=policy.signing_algorithm,
        max_token_ttl_seconds=policy.max_token_ttl_seconds,
        clock_leeway_seconds=policy.clock_leeway_seconds,
        rotation_interval_seconds=policy.key_rotation_interval_seconds,
        jwks_max_age_seconds=policy.jwks_max_age_seconds,
        refresh_interval_seconds=key_refresh_interval_seconds,
    )
    usage = UsageRecorder(store)
    used_assertions = UsedAssertions(store, clock)
    parts = TokenParts(
        policy=policy,
        store=store,
        hasher=hasher,
        clock=clock,
        tokens=AccessTokens(ring, usage, clock, issuer=policy.issuer, line_gate=line_gate),
        client_cache_ttl_seconds=client_cache_ttl_seconds,
        monotonic=monotonic,
        freshness=freshness,
        used_assertions=used_assertions,
        remote_jwks=remote_jwks,
    )
    clients = ClientAuthentication([method.from_parts(parts) for method in CLIENT_AUTH_METHODS])
    signed = SignedTokens(ring, policy.issuer)
    return TokenComponents(
        policy=policy,
        ring=ring,
        clients=clients,
        usage=usage,
        failures=failures,
        fingerprint=fingerprint,
        throttle=throttle,
        endpoint=TokenEndpoint(
            clients,
            [grant.from_parts(parts) for grant in GRANTS],
            failure_sink=functools.partial(failure_recorder, failures, fingerprint, ISSUE_FAILED),
            throttle=throttle,
            quota=quota,
        ),
        introspector=Introspector(
            store,
            signed,
            clock,
            leeway_seconds=policy.clock_leeway_seconds,
            states=TokenStates(freshness),
        ),
        revoker=Revoker(store, signed, clock, leeway_seconds=policy.clock_leeway_seconds),
        keys=SigningKeyAdmin(ring, pages),
        clock=clock,
        used_assertions=used_assertions,
    )
