"""client_secret_basic and client_secret_post: client_id + client_secret (RFC 6749 section 2.3.1).

The transport reads the pair from HTTP Basic or the form body (or the gRPC
request fields); this method checks it the same way for all of them.

Every failure is the one :class:`~m2mauth.core.errors.InvalidClient`: unknown
client, wrong, revoked or expired secret, disabled application, disabled or
deleted organization. Each failed attempt does the same work (a fresh store
read and keyed-hash comparisons, against a decoy hash for an unknown client),
so neither the answer nor its timing tells the cases apart. A store failure is
never an authentication failure: StoreUnavailable propagates.

The hot path reads the store rarely: a successful lookup (application,
organization, secrets) is cached per client_id. In a server the cache follows
the change feed (:mod:`m2mauth.core.changes`): a revoked secret, a disabled or
deleted application or organization stops authenticating in every process
within the feed's delay, and while the feed is lost nothing is answered from
the cache. Without a feed (tools, tests) a lookup is kept for
``cache_ttl_seconds`` (default 5 s), which then bounds the delay. A secret expiring by
its ``expires_at`` stops at once (checked against the clock on every call).
A failed match is always re-checked against the store, never answered from
the cache, so a just-created secret or a just re-enabled application works
immediately; that fresh read then replaces the cached one, so failures never
evict a good entry (failures themselves are throttled, see
:mod:`m2mauth.core.throttling`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from m2mauth.core import ids
from m2mauth.core.changes import Change, Freshness, Kind
from m2mauth.core.client_auth import (
    MAX_CLIENT_ID_LENGTH,
    AuthenticatedClient,
    FailureSink,
    failed,
)
from m2mauth.core.clock import Clock
from m2mauth.core.credentials import CredentialHasher
from m2mauth.core.interfaces import Store
from m2mauth.core.models import Application, ClientSecret, Organization, TokenEndpointAuthMethod
from m2mauth.core.policy import (
    DEFAULT_CLIENT_CACHE_TTL_SECONDS,
    FEED_CACHE_TTL_SECONDS,
    TokenParts,
)
from m2mauth.core.token_request import ClientCredentials

DEFAULT_CACHE_SIZE = 10_000
# Well-formed ids that are never issued (all-zero ULID body, the epoch).
_NO_ORGANIZATION = "org_" + "0" * 26
_NO_APPLICATION = "app_" + "0" * 26


@dataclass(frozen=True, slots=True)
class _Lookup:
    application: Application | None
    organization: Organization | None
    secrets: tuple[ClientSecret, ...]
    expires: float  # time.monotonic()
    epoch: int = 0  # the cache's epoch when it was read


class ClientSecretAuth:
    """The ClientAuthMethod of client secrets, with its lookup cache."""

    names: ClassVar[tuple[str, ...]] = ("client_secret_basic", "client_secret_post")

    def __init__(
        self,
        store: Store,
        hasher: CredentialHasher,
        clock: Clock,
        *,
        cache_ttl_seconds: float = DEFAULT_CLIENT_CACHE_TTL_SECONDS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        monotonic: Callable[[], float] = time.monotonic,
        freshness: Freshness | None = None,
        feed_cache_ttl_seconds: float = FEED_CACHE_TTL_SECONDS,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._size = cache_size
        self._monotonic = monotonic
        self._cache: dict[str, _Lookup] = {}
        self._lock = threading.Lock()
        # With a change feed (core/changes.py): a lookup is kept until a change
        # makes it stale (feed_cache_ttl_seconds is only a safety net), and not
        # used at all while the feed is lost. Without one: cache_ttl_seconds.
        self._freshness = freshness
        self._ttl = feed_cache_ttl_seconds if freshness is not None else cache_ttl_seconds
        # Bumped by every change: a lookup read before a change is not kept after it.
        self._epoch = 0

    @classmethod
    def from_parts(cls, parts: TokenParts) -> ClientSecretAuth:
        return cls(
            parts.store,
            parts.hasher,
            parts.clock,
            cache_ttl_seconds=parts.client_cache_ttl_seconds,
            monotonic=parts.monotonic,
            freshness=parts.freshness,
        )

    def presented(self, credentials: ClientCredentials) -> bool:
        return bool(credentials.client_secret)

    def claimed_client_id(self, credentials: ClientCredentials) -> str:
        return credentials.client_id

    def authenticate(
        self, credentials: ClientCredentials, on_failure: FailureSink | None = None
    ) -> AuthenticatedClient:
        """The authenticated client, or InvalidClient (StoreUnavailable propagates)."""
        client_id, client_secret = credentials.client_id, credentials.client_secret
        if not client_id or not client_secret:
            # RFC 6749 section 5.2: missing client authentication is invalid_client.
            raise failed(client_id, "missing_credentials", None, on_failure)
        cached = self._cached(client_id)
        if cached is not None:
            ok, _ = self._check(cached, client_secret)
            if ok is not None:
                return ok
        # Miss, expired entry, or no match: ask the store. Every failure takes
        # this path, so every failure costs the same unit of work.
        lookup = self._load(client_id)
        ok, reason = self._check(lookup, client_secret)
        if ok is not None:
            self._remember(client_id, lookup)
            return ok
        if lookup.application is not None:
            # A wrong secret says nothing against what was just read: keep (or
            # refresh) the lookup, so someone failing on purpose cannot evict
            # the real client's entry and push it to the store on every call.
            self._remember(client_id, lookup)
        else:
            self._forget(client_id)
        raise failed(client_id, reason, lookup.application, on_failure)

    def invalidate(self, client_id: str | None = None) -> None:
        """Drop cached lookups (one client, or all)."""
        with self._lock:
            self._epoch += 1
            if client_id is None:
                self._cache.clear()
            else:
                self._cache.pop(client_id, None)

    # --- the change feed (core/changes.py) -----------------------------------
    def changed(self, change: Change) -> None:
        if change.kind not in (Kind.APPLICATION, Kind.ORGANIZATION):
            return
        with self._lock:
            self._epoch += 1
            stale = [
                client_id
                for client_id, lookup in self._cache.items()
                if lookup.application is not None
                and change.key
                == (
                    lookup.application.id
                    if change.kind is Kind.APPLICATION
                    else lookup.application.organization_id
                )
            ]
            for client_id in stale:
                del self._cache[client_id]

    def reset(self) -> None:
        self.invalidate()

    # --- internals ----------------------------------------------------------
    def _cached(self, client_id: str) -> _Lookup | None:
        if self._freshness is not None and not self._freshness.healthy:
            return None  # the feed is lost: every call reads the store
        entry = self._cache.get(client_id)
        if entry is None or entry.expires <= self._monotonic():
            return None
        return entry

    def _remember(self, client_id: str, lookup: _Lookup) -> None:
        if self._freshness is not None and not self._freshness.healthy:
            return
        with self._lock:
            if lookup.epoch != self._epoch:
                return  # a change arrived while it was read: it may be stale
            if len(self._cache) >= self._size and client_id not in self._cache:
                now = self._monotonic()
                for key in [k for k, v in self._cache.items() if v.expires <= now]:
                    del self._cache[key]
                while len(self._cache) >= self._size:
                    del self._cache[next(iter(self._cache))]  # oldest inserted
            self._cache[client_id] = lookup

    def _forget(self, client_id: str) -> None:
        with self._lock:
            self._cache.pop(client_id, None)

    def _load(self, client_id: str) -> _Lookup:
        expires = self._monotonic() + self._ttl
        epoch = self._epoch
        # A client_id that cannot be ours is unknown without asking the store
        # (it reveals nothing: the id grammar is public).
        if len(client_id) > MAX_CLIENT_ID_LENGTH or not ids.is_id(client_id, ids.CLIENT):
            return _Lookup(None, None, (), expires, epoch)
        with self._store.reading() as uow:
            app = uow.get_application_by_client_id(client_id)
            # An unknown client makes the same reads as a known one (with ids
            # that match nothing), so the store round trips do not tell them
            # apart. The organization is the application's stored one: that
            # is where a token's org_id comes from, never the request.
            org = uow.get_organization(app.organization_id if app else _NO_ORGANIZATION)
            secrets = tuple(uow.list_client_secrets(app.id if app else _NO_APPLICATION))
        if app is None:
            return _Lookup(None, None, (), expires, epoch)
        return _Lookup(app, org, secrets, expires, epoch)

    def _check(self, lookup: _Lookup, presented: str) -> tuple[AuthenticatedClient | None, str]:
        """Compare against every live secret (constant time each, no early exit)."""
        now = self._clock()
        matched: ClientSecret | None = None
        if lookup.application is None:
            # Same work as a known client with one secret (RFC 6749 section 2.3.1).
            self._hasher.matches(presented, self._hasher.decoy_hash)
            return None, "unknown_client"
        for secret in lookup.secrets:
            live = secret.expires_at is None or secret.expires_at > now
            if self._hasher.matches(presented, secret.secret_hash) and live:
                matched = secret
        if not lookup.secrets:
            self._hasher.matches(presented, self._hasher.decoy_hash)
        if matched is None:
            return None, "invalid_secret"
        refused = _refusal(lookup.application, lookup.organization)
        if refused or lookup.organization is None:
            return None, refused
        return AuthenticatedClient(lookup.application, lookup.organization, matched), ""


def _refusal(app: Application, org: Organization | None) -> str:
    """Why a client whose secret matched may still not authenticate ("" if it may)."""
    if app.token_endpoint_auth_method is not TokenEndpointAuthMethod.CLIENT_SECRET:
        # One method per application, never both: a private_key_jwt
        # application's secrets (if it has any) do not authenticate it.
        return "auth_method_not_allowed"
    if not app.enabled:
        return "application_disabled"
    if org is None:
        return "organization_missing"
    if not org.enabled:
        return "organization_disabled"
    return ""
