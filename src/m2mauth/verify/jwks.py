"""The verifier's cache of the issuer's published signing keys (a JWK Set, RFC 7517 section 5).

Policy:

* fetched on first use (or at ``prefetch()``), then kept for the server's
  ``Cache-Control: max-age`` (RFC 9111 section 5.2.2.1), clamped to
  ``[min_lifespan, max_lifespan]``; ``default_lifespan`` when the server says nothing;
* when stale, one thread refreshes while the others keep verifying with the
  cached keys;
* a token whose ``kid`` is not cached forces a refresh, at most once per
  ``unknown_kid_interval`` seconds, so made-up kids cannot hammer the issuer,
  while a key rotated in since the last fetch is found at once;
* a failed refresh keeps the cached keys and is retried after ``retry_interval``;
* every fetch is single-flight under one lock; lookups read an immutable
  snapshot without locking, so the cache is safe under threads, and
  ``cached_key()`` never blocks, so the asyncio path calls the blocking
  ``get_key()`` only through a worker thread.

Why not pyjwt's ``PyJWKClient`` as it stands (read in pyjwt 2.15.1's
``jwks_client.py`` and ``jwk_set_cache.py``): its lifespan is fixed and ignores
``Cache-Control``; once the lifespan passes, ``JWKSetCache.get()`` returns None, so
a failed refetch fails every verification although the old keys are still good;
a failed fetch does not start its unknown-kid cooldown (only a successful one
does), so while the issuer is down every unknown kid triggers a new fetch of up
to ``timeout`` seconds under the lock that every lookup, known kid or not,
takes; and the cooldown starts at every fetch including the first, so a key
rotated in just after start-up is refused for 30 s. What we reuse from pyjwt is
what it does well: ``PyJWK`` parses each key and binds it to one algorithm,
which ``jwt.decode`` then enforces (the token's ``alg`` must equal the key's),
and its http(s)-only, no-redirect fetching stance (see ``_http``).
"""

from __future__ import annotations

import enum
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from jwt import PyJWK
from jwt.exceptions import PyJWTError

from m2mauth.verify import _http
from m2mauth.verify.errors import InvalidToken, JwksUnavailable

log = logging.getLogger("m2mauth.verify.jwks")

#: The algorithms m2mauth signs with; the default allowlist.
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")

# Asymmetric JWS algorithms (RFC 7518 section 3.1, RFC 8037 section 3.1) and the
# key type and curves each needs. HMAC is absent on purpose: a verifier that
# holds only public keys must never accept a MAC (RFC 8725 section 3.1).
_KEY_TYPES: dict[str, tuple[str, frozenset[str] | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
SUPPORTED_ALGORITHMS = frozenset(_KEY_TYPES)

_MAX_JWKS_BYTES = 512 * 1024
_MAX_KID_LENGTH = 256


class JwksFetchError(Exception):
    """The JWK Set could not be fetched or holds no usable key (logged, never shown)."""


@dataclass(frozen=True)
class JwksDocument:
    """A fetched JWK Set and how long its server says it stays fresh."""

    jwks: Mapping[str, Any]
    max_age: float | None = None


class JwksSource(Protocol):
    """Where the keys come from; ``fetch`` blocks and raises on any failure."""

    def fetch(self) -> JwksDocument: ...


class HttpJwksSource:
    """``GET`` the JWK Set from the issuer's ``jwks_uri`` (RFC 8414 section 2)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        allow_http: bool = False,
        max_bytes: int = _MAX_JWKS_BYTES,
    ) -> None:
        self.url = _http.check_url(url, allow_http=allow_http)
        self._timeout = timeout
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._ssl_context = ssl_context
        self._max_bytes = max_bytes

    def fetch(self) -> JwksDocument:
        try:
            response = _http.request(
                self.url,
                headers=self._headers,
                timeout=self._timeout,
                max_bytes=self._max_bytes,
                ssl_context=self._ssl_context,
            )
        except _http.HttpFailure as err:
            raise JwksFetchError(f"fetching the JWK Set failed: {err}") from err
        if response.status != 200:
            raise JwksFetchError(f"the JWKS endpoint answered HTTP {response.status}")
        try:
            data = json.loads(response.body)
        except (ValueError, RecursionError) as err:
            raise JwksFetchError("the JWKS endpoint did not return JSON") from err
        if not isinstance(data, dict):
            raise JwksFetchError("the JWKS endpoint did not return a JSON object")
        return JwksDocument(data, parse_max_age(response.headers.get_all("Cache-Control")))


class StaticJwksSource:
    """A JWK Set held in memory, or produced by a callable (tests, in-process issuers)."""

    def __init__(self, jwks: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> None:
        self._jwks = jwks

    def fetch(self) -> JwksDocument:
        jwks = self._jwks() if callable(self._jwks) else self._jwks
        return JwksDocument(jwks)


def parse_max_age(values: Iterable[str] | None) -> float | None:
    """``max-age`` from Cache-Control header values; 0 for no-store/no-cache; None if absent.

    RFC 9111 section 5.2.2.1: ``max-age=delta-seconds``; an invalid value is ignored.
    """
    max_age: float | None = None
    for value in values or ():
        for directive in value.split(","):
            name, _, argument = directive.strip().partition("=")
            name = name.strip().lower()
            if name in ("no-store", "no-cache"):
                return 0.0
            argument = argument.strip().strip('"')
            if name == "max-age" and argument.isdigit() and argument.isascii():
                max_age = float(argument)
    return max_age


def key_fits(algorithm: str, jwk: Mapping[str, Any]) -> bool:
    """Whether the JWK's ``kty`` (and ``crv``) suit ``algorithm`` (RFC 7518 section 6)."""
    expected = _KEY_TYPES.get(algorithm)
    if expected is None:
        return False
    kty, curves = expected
    return jwk.get("kty") == kty and (curves is None or jwk.get("crv") in curves)


@dataclass(frozen=True)
class _KeySet:
    """One immutable snapshot: a verification key per (kid, algorithm)."""

    keys: Mapping[tuple[str, str], PyJWK]
    kids: frozenset[str]

    @classmethod
    def build(cls, jwks: Mapping[str, Any], algorithms: frozenset[str]) -> _KeySet:
        members = jwks.get("keys")
        if not isinstance(members, list):
            raise JwksFetchError("the JWK Set has no keys array")
        keys: dict[tuple[str, str], PyJWK] = {}
        for jwk in members:
            for kid, algorithm, key in _usable_keys(jwk, algorithms):
                keys.setdefault((kid, algorithm), key)
        if not keys:
            raise JwksFetchError("the JWK Set holds no usable verification key")
        return cls(keys=keys, kids=frozenset(kid for kid, _ in keys))

    def lookup(self, kid: str, algorithm: str) -> PyJWK | None:
        key = self.keys.get((kid, algorithm))
        if key is None and kid in self.kids:
            # A published key, but of another type: the CVE-2022-29217 class of
            # attack (e.g. HS256 "signed" with an RSA public key) ends here.
            raise InvalidToken("the token's algorithm does not match its signing key")
        return key


def _usable_keys(jwk: Any, algorithms: frozenset[str]) -> Iterable[tuple[str, str, PyJWK]]:
    """The (kid, alg, key) triples a JWK yields; unusable members are skipped, not fatal."""
    if not isinstance(jwk, dict):
        return
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_LENGTH:
        return
    if jwk.get("use", "sig") != "sig" or "d" in jwk or "k" in jwk:
        return  # encryption keys, and private or symmetric material, never verify a token
    declared = jwk.get("alg")
    candidates = [declared] if declared is not None else sorted(algorithms)
    for algorithm in candidates:
        if algorithm not in algorithms or not key_fits(algorithm, jwk):
            continue
        try:
            yield kid, algorithm, PyJWK(jwk, algorithm)
        except PyJWTError:
            log.warning("skipping JWK %r: not a valid %s key", kid, algorithm)


class _Outcome(enum.Enum):
    SKIPPED = "skipped"
    REFRESHED = "refreshed"
    FAILED = "failed"


class JwksCache:
    """Published keys by (kid, alg), refreshed as described in the module docstring."""

    def __init__(
        self,
        source: JwksSource,
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        default_lifespan: float = 300.0,
        min_lifespan: float = 30.0,
        max_lifespan: float = 86_400.0,
        unknown_kid_interval: float = 30.0,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.algorithms = frozenset(algorithms)
        unsupported = self.algorithms - SUPPORTED_ALGORITHMS
        if unsupported or not self.algorithms:
            raise ValueError(
                f"unsupported algorithms {sorted(unsupported)}; "
                f"use asymmetric ones from {sorted(SUPPORTED_ALGORITHMS)}"
            )
        if not 0 < min_lifespan <= default_lifespan <= max_lifespan:
            raise ValueError("need 0 < min_lifespan <= default_lifespan <= max_lifespan")
        if unknown_kid_interval < 0 or retry_interval <= 0:
            raise ValueError("intervals must be positive")
        self._source = source
        self._default_lifespan = default_lifespan
        self._min_lifespan = min_lifespan
        self._max_lifespan = max_lifespan
        self._unknown_kid_interval = unknown_kid_interval
        self._retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: _KeySet | None = None
        self._next_refresh_at = float("-inf")
        self._last_forced_at: float | None = None
        self._attempts = 0  # finished fetches, successful or not

    def prefetch(self) -> bool:
        """Fetch now if the keys are missing or stale (e.g. at start-up); True if any are cached."""
        if self._snapshot is None or self._clock() >= self._next_refresh_at:
            self._refresh(wait=True, forced=False, seen=self._attempts)
        return self._snapshot is not None

    def cached_key(self, kid: str, algorithm: str) -> PyJWK | None:
        """The key if it is cached and fresh; None when ``get_key`` would have to fetch.

        Never blocks. Raises InvalidToken if ``kid`` is cached for another algorithm.
        """
        snapshot = self._snapshot
        if snapshot is None or self._clock() >= self._next_refresh_at:
            return None
        return snapshot.lookup(kid, algorithm)

    def get_key(self, kid: str, algorithm: str) -> PyJWK:
        """The key for (kid, alg), fetching as needed. Blocks while a fetch runs.

        Raises InvalidToken for a kid the issuer does not publish (or that does not fit
        ``algorithm``) and JwksUnavailable when no keys can be had.
        """
        seen = self._attempts
        outcome = _Outcome.SKIPPED
        if self._snapshot is None:
            outcome = self._refresh(wait=True, forced=False, seen=seen)
        elif self._clock() >= self._next_refresh_at:
            # Stale: refresh unless another thread already is; meanwhile use the cache.
            outcome = self._refresh(wait=False, forced=False, seen=seen)
        snapshot = self._snapshot
        if snapshot is None:
            raise JwksUnavailable()
        key = snapshot.lookup(kid, algorithm)
        if key is not None:
            return key
        if outcome is _Outcome.SKIPPED:
            # Unknown kid: perhaps a key rotated in since the last fetch. Skipped if
            # another thread fetched since this call began, or within the rate limit.
            outcome = self._refresh(wait=True, forced=True, seen=seen)
            snapshot = self._snapshot
            key = snapshot.lookup(kid, algorithm) if snapshot is not None else None
            if key is not None:
                return key
        if outcome is _Outcome.FAILED:
            # We could not ask the issuer: the token may be signed by a new key.
            raise JwksUnavailable()
        raise InvalidToken("the token's key id is not published by the issuer")

    def _refresh(self, *, wait: bool, forced: bool, seen: int) -> _Outcome:
        if not self._lock.acquire(blocking=wait):
            return _Outcome.SKIPPED
        try:
            if self._attempts != seen:
                return _Outcome.SKIPPED  # another thread fetched while we waited
            now = self._clock()
            if forced:
                if (
                    self._last_forced_at is not None
                    and now - self._last_forced_at < self._unknown_kid_interval
                ):
                    return _Outcome.SKIPPED
                self._last_forced_at = now
            elif now < self._next_refresh_at:
                return _Outcome.SKIPPED
            try:
                document = self._source.fetch()
                snapshot = _KeySet.build(document.jwks, self.algorithms)
            except Exception as err:  # any failure keeps the cached keys
                self._next_refresh_at = now + self._retry_interval
                cached = len(self._snapshot.kids) if self._snapshot else 0
                log.warning("JWK Set refresh failed (%s); keeping %d cached key(s)", err, cached)
                return _Outcome.FAILED
            finally:
                # Counted once finished, so callers that waited on the lock see it.
                self._attempts += 1
            max_age = document.max_age
            lifespan = self._default_lifespan if max_age is None else max_age
            lifespan = min(max(lifespan, self._min_lifespan), self._max_lifespan)
            self._snapshot = snapshot
            self._next_refresh_at = now + lifespan
            return _Outcome.REFRESHED
        finally:
            self._lock.release()
