"""The token side of the server, assembled: issuance, introspection, revocation,
JWKS and signing keys, plus the background work they need.

:func:`build_token_components` wires the parts from the settings;
:meth:`TokenComponents.start` makes sure signing keys exist and starts two
daemon threads, and :meth:`TokenComponents.close` stops them and writes what
is still pending (call it on graceful shutdown):

* ``token-flush`` (every ``flush_interval`` s, default 2): coalesced secret
  usage and queued failure audit events are written to the store;
* ``token-maintenance`` (every ``maintenance_interval`` s, default 30): the
  key ring refreshes from the store (so another replica's rotation is seen
  within that period), retires expired PREVIOUS keys, rotates when due, and
  expired revocations are purged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from m2mauth.config import Settings
from m2mauth.core import audit
from m2mauth.core.client_auth import (
    DEFAULT_CACHE_TTL_SECONDS,
    AuthenticatedClient,
    AuthFailure,
    ClientAuthenticator,
)
from m2mauth.core.clock import Clock
from m2mauth.core.credentials import CredentialHasher
from m2mauth.core.errors import StoreUnavailable
from m2mauth.core.interfaces import Store
from m2mauth.core.introspection import Caller, Introspector
from m2mauth.core.issuance import IssuedToken, TokenIssuer
from m2mauth.core.key_management import SigningKeyAdmin
from m2mauth.core.pagination import PageTokenCodec
from m2mauth.core.revocation import Revoker
from m2mauth.core.root_key import DerivedKeys
from m2mauth.core.signing_keys import DEFAULT_REFRESH_INTERVAL_SECONDS, SigningKeyRing
from m2mauth.core.usage import AuditQueue, UsageRecorder
from m2mauth.core.verification import SignedTokens

log = logging.getLogger("m2mauth.tokens")

DEFAULT_FLUSH_INTERVAL_SECONDS = 2.0
JOIN_TIMEOUT_SECONDS = 10.0
ISSUE_FAILED = "token.issue_failed"
INTROSPECT_FAILED = "token.introspect_failed"
REVOKE_FAILED = "token.revoke_failed"


def _failure_recorder(
    queue: AuditQueue, clock: Clock, action: str
) -> Callable[[AuthFailure], None]:
    """Turn a failed client authentication into a queued audit event."""

    def record(failure: AuthFailure) -> None:
        app = failure.application
        queue.put(
            audit.event(
                clock(),
                # The presented client_id (truncated): who tried, even if unknown.
                failure.client_id or "(none)",
                action,
                organization_id=app.organization_id if app else None,
                application_id=app.id if app else None,
                target=app.id if app else None,
                details={"reason": failure.reason},
            )
        )
        log.info(
            "client authentication failed",
            extra={"client_id": failure.client_id, "reason": failure.reason, "action": action},
        )

    return record


@dataclass
class TokenComponents:
    settings: Settings
    ring: SigningKeyRing
    clients: ClientAuthenticator
    usage: UsageRecorder
    audit_queue: AuditQueue
    issuance: TokenIssuer
    introspector: Introspector
    revoker: Revoker
    keys: SigningKeyAdmin
    clock: Clock
    flush_interval: float = DEFAULT_FLUSH_INTERVAL_SECONDS
    maintenance_interval: float = DEFAULT_REFRESH_INTERVAL_SECONDS
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _closed: bool = False

    # --- the operations the transports call ---------------------------------
    def issue_token(
        self,
        grant_type: str,
        client_id: str,
        client_secret: str,
        scope: str = "",
        audience: str = "",
    ) -> IssuedToken:
        return self.issuance.issue(grant_type, client_id, client_secret, scope, audience)

    def authenticate_client(
        self, client_id: str, client_secret: str, action: str = INTROSPECT_FAILED
    ) -> AuthenticatedClient:
        """For introspection and revocation callers; failures are audited as ``action``."""
        return self.clients.authenticate(
            client_id, client_secret, _failure_recorder(self.audit_queue, self.clock, action)
        )

    def introspect(self, token: str, caller: Caller) -> dict[str, Any]:
        return self.introspector.introspect(token, caller)

    def revoke(self, token: str, caller: Caller) -> bool:
        return self.revoker.revoke(token, caller)

    def jwks(self) -> list[dict[str, str]]:
        return self.ring.jwks()

    @property
    def jwks_max_age_seconds(self) -> int:
        return self.settings.jwks_max_age_seconds

    # --- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        """Ensure signing keys (raises if the store or root key is wrong), start threads."""
        if self._threads:
            return
        self.ring.ensure_keys()
        for name, interval, job in (
            ("token-flush", self.flush_interval, self.flush),
            ("token-maintenance", self.maintenance_interval, self.maintenance),
        ):
            thread = threading.Thread(
                target=self._loop, args=(interval, job), name=name, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Stop the threads and write what is pending. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for thread in self._threads:
            # Bounded: a thread stuck on an unreachable store must not hang shutdown.
            thread.join(timeout=JOIN_TIMEOUT_SECONDS)
        try:
            self.flush()
        except Exception:
            log.exception("final flush of token usage failed; the last usage is lost")

    def flush(self) -> None:
        """Write coalesced usage and queued audit events (both attempted)."""
        try:
            self.usage.flush()
        finally:
            self.audit_queue.flush()

    def maintenance(self) -> None:
        """Key refresh/retire/rotate, then purge of expired revocations."""
        try:
            self.ring.maintenance()
        finally:
            self.revoker.purge()

    def _loop(self, interval: float, job: Callable[[], None]) -> None:
        while not self._stop.wait(interval):
            try:
                job()
            except StoreUnavailable as exc:
                # The store is down: keep going, the next round retries.
                log.warning(
                    "background %s: store unavailable: %s",
                    threading.current_thread().name,
                    exc.__cause__ or exc,
                )
            except Exception:
                log.exception("background %s failed", threading.current_thread().name)


def build_token_components(
    settings: Settings,
    store: Store,
    keys: DerivedKeys,
    hasher: CredentialHasher,
    clock: Clock,
    *,
    client_cache_ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL_SECONDS,
    maintenance_interval: float = DEFAULT_REFRESH_INTERVAL_SECONDS,
    monotonic: Callable[[], float] = time.monotonic,
) -> TokenComponents:
    """Wire the token components from settings (``settings.with_defaults()`` applied)."""
    if not settings.issuer:
        # RFC 9068 section 2.2 requires iss; with_defaults() derives one.
        raise ValueError("settings.issuer is empty: call Settings.with_defaults() first")
    ring = SigningKeyRing(
        store,
        keys.key_encryption,
        clock,
        algorithm=settings.signing_algorithm,
        max_token_ttl_seconds=settings.max_token_ttl_seconds,
        clock_leeway_seconds=settings.clock_leeway_seconds,
        rotation_interval_seconds=settings.key_rotation_interval_seconds,
        jwks_max_age_seconds=settings.jwks_max_age_seconds,
        refresh_interval_seconds=maintenance_interval,
    )
    clients = ClientAuthenticator(
        store, hasher, clock, cache_ttl_seconds=client_cache_ttl_seconds, monotonic=monotonic
    )
    usage = UsageRecorder(store)
    signed = SignedTokens(ring, settings.issuer)
    audit_queue = AuditQueue(store)
    issuance = TokenIssuer(
        clients,
        ring,
        usage,
        clock,
        issuer=settings.issuer,
        default_audience=settings.audience or settings.issuer,
        default_ttl_seconds=settings.token_ttl_seconds,
        max_ttl_seconds=settings.max_token_ttl_seconds,
        on_auth_failure=_failure_recorder(audit_queue, clock, ISSUE_FAILED),
    )
    return TokenComponents(
        settings=settings,
        ring=ring,
        clients=clients,
        usage=usage,
        audit_queue=audit_queue,
        issuance=issuance,
        introspector=Introspector(
            store, signed, clock, leeway_seconds=settings.clock_leeway_seconds
        ),
        revoker=Revoker(store, signed, clock, leeway_seconds=settings.clock_leeway_seconds),
        keys=SigningKeyAdmin(ring, PageTokenCodec(keys.page_token)),
        clock=clock,
        flush_interval=flush_interval,
        maintenance_interval=maintenance_interval,
    )
