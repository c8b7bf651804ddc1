"""The composition root: the one place that wires settings -> store -> core -> transports.

:func:`bootstrap` builds everything one process needs, once: the store (from
the settings' URL, unless a test hands one in), the core services, the token
side with its registered methods and grants, the background jobs, the gRPC
servicers and the HTTP shim's in-process backend. ``serve``, its worker
processes, the CLI's local commands and the tests all start here, so there is
one wiring to read and to change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path

from m2mauth import logs
from m2mauth.background import BackgroundJobs, Job
from m2mauth.config import Settings
from m2mauth.core.admin_keys import AdminKeys
from m2mauth.core.applications import Applications
from m2mauth.core.audit import AuditReader, AuditRetention
from m2mauth.core.changes import ChangeFeed, Freshness
from m2mauth.core.clock import Clock, utc_now
from m2mauth.core.console_sessions import ConsoleSessions
from m2mauth.core.credentials import CredentialHasher
from m2mauth.core.failures import FailedAttempts, fingerprinter
from m2mauth.core.interfaces import Listener, Store
from m2mauth.core.organizations import Organizations
from m2mauth.core.pagination import PageTokenCodec
from m2mauth.core.policy import DEFAULT_CLIENT_CACHE_TTL_SECONDS, TokenPolicy
from m2mauth.core.root_key import DerivedKeys, load_or_create_root_key_file, parse_root_key
from m2mauth.core.signing_keys import DEFAULT_REFRESH_INTERVAL_SECONDS
from m2mauth.core.throttling import Allowance, Counters, FailureThrottle, TokenQuota
from m2mauth.core.tokens import TokenComponents, build_token_components
from m2mauth.grpc.admin_key_servicer import AdminKeyServicer
from m2mauth.grpc.key_servicer import KeyServicer
from m2mauth.grpc.management import ApplicationServicer, AuditServicer, OrganizationServicer
from m2mauth.grpc.server import Servicers
from m2mauth.grpc.token_servicer import TokenServicer
from m2mauth.http.backend import InProcessBackend
from m2mauth.ratelimit import open_counters
from m2mauth.remote_jwks import RemoteJwksCache
from m2mauth.store import open_store

log = logging.getLogger("m2mauth")

DEFAULT_FLUSH_INTERVAL_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Timing:
    """How often the background jobs run, and how long lookups are cached
    (tests shorten them; production uses the defaults)."""

    flush_interval: float = DEFAULT_FLUSH_INTERVAL_SECONDS
    maintenance_interval: float = DEFAULT_REFRESH_INTERVAL_SECONDS
    client_cache_ttl_seconds: float = DEFAULT_CLIENT_CACHE_TTL_SECONDS
    monotonic: Callable[[], float] = field(default=time.monotonic)


@dataclass
class App:
    """Everything one process serves with, built once by :func:`bootstrap`."""

    settings: Settings
    store: Store
    clock: Clock
    keys: DerivedKeys
    hasher: CredentialHasher
    pages: PageTokenCodec
    admin_keys: AdminKeys
    organizations: Organizations
    applications: Applications
    audit: AuditReader
    tokens: TokenComponents
    # Throttling and quota counters: this process's, or Redis's.
    counters: Counters
    # Delivers other processes' changes to the caches (core/changes.py).
    changes: Listener
    background: BackgroundJobs
    # Whether close() closes the store (bootstrap opened it).
    owns_store: bool = False
    _closed: bool = False

    def start(self) -> None:
        """Ensure signing keys exist (raises if the store or root key is wrong), then
        start the background jobs."""
        self.tokens.ring.ensure_keys()
        self.changes.start()
        self.background.start()

    def close(self) -> None:
        """Stop the background jobs, write what is pending, close the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.background.close()
        self.changes.close()
        try:
            self.tokens.flush(final=True)
            self.admin_keys.usage.flush()
        except Exception:
            log.exception("final flush of usage and audit events failed; they are lost")
        self.counters.close()
        if self.owns_store:
            self.store.close()

    @cached_property
    def servicers(self) -> Servicers:
        return Servicers(
            organizations=OrganizationServicer(self.organizations, self.admin_keys),
            applications=ApplicationServicer(self.applications, self.admin_keys),
            audit=AuditServicer(self.audit, self.admin_keys),
            tokens=TokenServicer(self.tokens, self.admin_keys),
            keys=KeyServicer(self.tokens.keys, self.admin_keys),
            admin_keys=AdminKeyServicer(self.admin_keys),
        )

    @cached_property
    def console_sessions(self) -> ConsoleSessions:
        """The web console's sign-in sessions (used only when the console is on)."""
        return ConsoleSessions(
            self.store,
            self.admin_keys,
            self.keys.console_session,
            self.clock,
            idle_timeout=timedelta(seconds=self.settings.console_idle_timeout_seconds),
            lifetime=timedelta(seconds=self.settings.console_session_max_seconds),
        )

    @cached_property
    def http_backend(self) -> InProcessBackend:
        """The shim's way to the TokenService in this process: no socket, no serialisation."""
        return InProcessBackend(
            self.servicers.tokens, self.store.ping, threads=self.settings.workers
        )


CHANGE_LOG_KEPT = timedelta(hours=1)


def _purger(store: Store, clock: Clock) -> Callable[[], object]:
    """Forget announced changes every listener has long had (see core/changes.py)."""

    def purge() -> int:
        with store.unit_of_work() as uow:
            return uow.purge_changes(clock() - CHANGE_LOG_KEPT)

    return purge


def _allowance(per_minute: int) -> Allowance | None:
    return Allowance(per_minute) if per_minute > 0 else None


def _both(first: Callable[[], object], second: Callable[[], object]) -> Callable[[], None]:
    """One job that runs two things; the second runs even if the first fails."""

    def run() -> None:
        try:
            first()
        finally:
            second()

    return run


def load_root_key(settings: Settings) -> tuple[bytes, bool]:
    """The root key from settings; (key, created_now)."""
    if settings.root_key:
        return parse_root_key(settings.root_key), False
    path = Path(settings.root_key_file)
    if settings.dev:
        key, created = load_or_create_root_key_file(path)
        if created:
            log.warning(
                "created a new root key in %s (mode 0600); it encrypts signing keys and keys "
                "credential hashes: back it up, and set M2MAUTH_ROOT_KEY in production",
                path,
            )
        return key, created
    return parse_root_key(path.read_text()), False


def token_policy(settings: Settings) -> TokenPolicy:
    """The token side's policy; ``settings.with_defaults()`` must have set the issuer."""
    if not settings.issuer:
        raise ValueError("settings.issuer is empty: call Settings.with_defaults() first")
    return TokenPolicy(
        issuer=settings.issuer,
        default_audience=settings.audience or settings.issuer,
        token_ttl_seconds=settings.token_ttl_seconds,
        max_token_ttl_seconds=settings.max_token_ttl_seconds,
        signing_algorithm=settings.signing_algorithm,
        key_rotation_interval_seconds=settings.key_rotation_interval_seconds,
        jwks_max_age_seconds=settings.jwks_max_age_seconds,
        clock_leeway_seconds=settings.clock_leeway_seconds,
        client_assertion_max_lifetime_seconds=settings.client_assertion_max_lifetime_seconds,
    )


def bootstrap(
    settings: Settings,
    *,
    store: Store | None = None,
    root_key: bytes | None = None,
    clock: Clock = utc_now,
    timing: Timing | None = None,
) -> App:
    """Build one process's App. Opens the store named by the settings unless one is
    given (then the caller closes it); reads the root key unless one is given.
    Nothing is started: call :meth:`App.start`, and :meth:`App.close` at the end."""
    timing = timing or Timing()
    if root_key is None:
        root_key, _ = load_root_key(settings)
    # Everything that can fail on the settings alone, before a store is opened.
    policy = token_policy(settings)
    owns_store = store is None
    if store is None:
        # A connection for every thread that may hold one at once (gRPC's and the
        # shim's, ``workers`` each, plus background jobs): below that, SQLAlchemy
        # opens and closes overflow connections per request under load.
        store = open_store(
            settings.database_url,
            pool_size=2 * settings.workers + 2,
            timeout=settings.store_timeout_seconds,
        )
    keys = DerivedKeys.from_root(root_key)
    hasher = CredentialHasher(keys.credential_hash)
    pages = PageTokenCodec(keys.page_token)
    # One aggregated trail of failed authentications, of clients and admin keys.
    failures = FailedAttempts(store, clock)
    fingerprint = fingerprinter(keys.audit_fingerprint)
    admin_keys = AdminKeys(store, hasher, clock, pages, failures=failures, fingerprint=fingerprint)
    retention = AuditRetention(store, clock, retention_days=settings.audit_retention_days)
    counters = open_counters(settings.rate_limit_url, prefix=settings.rate_limit_prefix)
    throttle = FailureThrottle(
        counters,
        fingerprint,
        per_client=_allowance(settings.auth_failures_per_client_per_minute),
        per_source=_allowance(settings.auth_failures_per_source_per_minute),
    )
    # The caches follow the change feed: exact while it is up, bypassed while it is down.
    freshness = Freshness()
    tokens = build_token_components(
        policy,
        store,
        keys.key_encryption,
        hasher,
        pages,
        clock,
        failures=failures,
        fingerprint=fingerprint,
        throttle=throttle,
        quota=TokenQuota(counters),
        freshness=freshness,
        client_cache_ttl_seconds=timing.client_cache_ttl_seconds,
        key_refresh_interval_seconds=timing.maintenance_interval,
        monotonic=timing.monotonic,
        # private_key_jwt applications with a jwks_uri; http to loopback only with --dev.
        remote_jwks=RemoteJwksCache(allow_http_loopback=settings.dev),
        line_gate=logs.line_gate,
    )
    return App(
        settings=settings,
        store=store,
        clock=clock,
        keys=keys,
        hasher=hasher,
        pages=pages,
        admin_keys=admin_keys,
        organizations=Organizations(store, pages, clock),
        applications=Applications(
            store,
            pages,
            hasher,
            clock,
            max_secrets=settings.max_client_secrets,
            max_token_ttl_seconds=settings.max_token_ttl_seconds,
            allow_http_jwks_uri_on_loopback=settings.dev,
        ),
        audit=AuditReader(store, pages),
        tokens=tokens,
        counters=counters,
        changes=store.listen(ChangeFeed(tokens.subscribers, freshness)),
        background=BackgroundJobs(
            [
                Job(
                    "usage-flush",
                    timing.flush_interval,
                    _both(tokens.flush, admin_keys.usage.flush),
                ),
                Job(
                    "maintenance",
                    timing.maintenance_interval,
                    _both(tokens.maintenance, _both(retention.purge, _purger(store, clock))),
                ),
            ]
        ),
        owns_store=owns_store,
    )
