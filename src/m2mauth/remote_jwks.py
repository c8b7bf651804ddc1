"""Fetching the JWK Sets that applications publish at a ``jwks_uri`` (private_key_jwt,
RFC 7523 section 2.2), for the core's :class:`~m2mauth.core.client_keys.RemoteJwks`.

The URL is set by an operator, but the server fetches it on a partner's
behalf, so every fetch is bounded the way a server-side request must be:

* https only; http only to a loopback host on a ``--dev`` server (a local test
  issuer), checked again at every hop;
* only to public (globally routable) addresses, checked on the connected
  socket, so a name that resolves to an internal address, or is re-pointed
  there later, is refused; a ``--dev`` server may also reach loopback and
  private addresses;
* at most :data:`TIMEOUT_SECONDS` for the whole exchange and
  :data:`MAX_RESPONSE_BYTES` of body, whatever the server sends (a timer cuts
  the connection: a server dripping bytes cannot hold a thread), and a request
  waits at most as long for another one's fetch of the same URL;
* no redirect to another scheme, host or port (at most :data:`MAX_REDIRECTS`
  on the same one), no proxy from the environment;
* the answer must be a JWK Set by the same rules as an inline one (public
  keys only, at most 10), else it is not used.

A set is cached for :data:`CACHE_SECONDS`; an assertion naming a kid the
cached set lacks fetches it again (the partner rotated), at most once every
:data:`MIN_REFETCH_SECONDS` per URL, so a stream of made-up kids cannot turn
the server into a load generator against the partner. A failed fetch is
remembered as long (nothing is fetched again before), and a set is never used
past its cache time: a key the partner removed stops working within
:data:`CACHE_SECONDS` even while its host is down.

Fetching waits on the network: it calls :func:`~m2mauth.core.blocking.
check_may_block` first, so on the HTTP shim's event loop the request moves to
a thread before any I/O. The HTTP is the verify kit's bounded stdlib client.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from m2mauth.core.blocking import check_may_block
from m2mauth.core.client_keys import checked_jwks_uri, normalized_jwks
from m2mauth.core.errors import InvalidField
from m2mauth.verify._http import HttpFailure, request

log = logging.getLogger("m2mauth.jwks_uri")

TIMEOUT_SECONDS = 3.0
MAX_RESPONSE_BYTES = 64 * 1024
MAX_REDIRECTS = 3
CACHE_SECONDS = 300.0
MIN_REFETCH_SECONDS = 30.0
MAX_CACHED_URIS = 10_000
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


# What the cache keeps an answer under: ("jwks", the URL) or ("discovery", the issuer).
_Key = tuple[str, str]


def public_address(address: str) -> bool:
    """Globally routable: not loopback, private, link-local (cloud metadata),
    shared, reserved or multicast (RFC 6890)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_global) and not ip.is_multicast


class FetchRefused(Exception):
    """Why a JWK Set was not fetched or not used (for the log; never for the caller)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    jwks: str | None  # None: no usable set (the last fetch failed)
    fetched: float  # monotonic time of the last attempt
    usable_until: float


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _shown(url: str) -> str:
    """The URL for the log: no query (it might carry a token), no fragment."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class RemoteJwksCache:
    """The RemoteJwks of a server process: fetch with bounds, cache, refresh."""

    def __init__(
        self,
        *,
        allow_http_loopback: bool = False,
        allow_internal_addresses: bool | None = None,
        timeout_seconds: float = TIMEOUT_SECONDS,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        cache_seconds: float = CACHE_SECONDS,
        min_refetch_seconds: float = MIN_REFETCH_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._allow_http_loopback = allow_http_loopback
        # Loopback and private addresses: a --dev server's local test issuer.
        internal = (
            allow_http_loopback if allow_internal_addresses is None else allow_internal_addresses
        )
        self._peer_allowed: Callable[[str], bool] | None = None if internal else public_address
        self._timeout = timeout_seconds
        self._max_bytes = max_response_bytes
        self._cache_seconds = cache_seconds
        self._min_refetch = min_refetch_seconds
        self._ssl_context = ssl_context
        self._monotonic = monotonic
        self._cache: dict[_Key, _Entry] = {}
        self._lock = threading.Lock()
        # One fetch per URL at a time: requests arriving meanwhile wait for its
        # result instead of each asking the partner's host.
        self._fetching: dict[_Key, threading.Lock] = {}

    def get(self, uri: str, *, refresh: bool = False) -> str | None:
        return self._get(("jwks", uri), uri, refresh, _jwk_set)

    def issuer_jwks(self, issuer: str, *, refresh: bool = False) -> str | None:
        """The JWK Set of an OpenID Connect issuer: its discovery document
        (OpenID Connect Discovery 1.0 section 4) names the jwks_uri, and must
        name this issuer (section 4.3); both are cached and bounded alike."""
        discovery = issuer.rstrip("/") + "/.well-known/openid-configuration"
        # Cached per issuer, not per URL: "https://a/" and "https://a" share the
        # document's URL, but only one of them is the issuer it names, and one
        # tenant's refused issuer must not stand for another's.
        jwks_uri = self._get(
            ("discovery", issuer), discovery, False, self._discovered_jwks_uri(issuer)
        )
        return None if jwks_uri is None else self.get(jwks_uri, refresh=refresh)

    def _discovered_jwks_uri(self, issuer: str) -> Callable[[str], str]:
        def parse(body: str) -> str:
            try:
                document = json.loads(body)
            except ValueError:
                raise FetchRefused("the discovery document is not JSON") from None
            if not isinstance(document, dict) or document.get("issuer") != issuer:
                raise FetchRefused("the discovery document names another issuer")
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise FetchRefused("the discovery document has no jwks_uri")
            try:
                return checked_jwks_uri(
                    "jwks_uri", jwks_uri, allow_http_loopback=self._allow_http_loopback
                )
            except InvalidField as exc:
                raise FetchRefused(f"its jwks_uri {exc.description}") from None

        return parse

    def _get(self, key: _Key, uri: str, refresh: bool, parse: Callable[[str], str]) -> str | None:
        hit, answer = self._cached(key, refresh)
        if hit:
            return answer
        check_may_block()
        with self._lock:
            fetching = self._fetching.setdefault(key, threading.Lock())
        # Another request's fetch of it is bounded by the timeout: wait no longer.
        if not fetching.acquire(timeout=self._timeout):
            return self._cached(key, False)[1]
        try:
            # Another request may have fetched it while this one waited.
            hit, answer = self._cached(key, refresh)
            if hit:
                return answer
            return self._fetch_and_remember(key, uri, parse)
        finally:
            fetching.release()

    def _cached(self, key: _Key, refresh: bool) -> tuple[bool, str | None]:
        """(True, the cache's answer), or (False, None) when the URL must be fetched."""
        now = self._monotonic()
        with self._lock:
            entry = self._cache.get(key)
        if entry is None:
            return False, None
        usable = entry.jwks if now < entry.usable_until else None
        recently = now - entry.fetched < self._min_refetch
        if recently or (usable is not None and not refresh):
            return True, usable
        return False, None

    def _fetch_and_remember(self, key: _Key, uri: str, parse: Callable[[str], str]) -> str | None:
        with self._lock:
            entry = self._cache.get(key)
        try:
            jwks: str | None = self._fetch(uri, parse)
        except FetchRefused as refused:
            log.warning("fetch failed", extra={"url": _shown(uri), "reason": str(refused)})
            jwks = None
        now = self._monotonic()
        if jwks is not None:
            fresh = _Entry(jwks, now, now + self._cache_seconds)
        else:
            # Remembered, so nothing is fetched again for a while; the old set
            # (if any) stays usable only until its own cache time.
            old = entry.jwks if entry is not None else None
            fresh = _Entry(old, now, entry.usable_until if entry is not None else now)
        with self._lock:
            if len(self._cache) >= MAX_CACHED_URIS and key not in self._cache:
                oldest = next(iter(self._cache))  # oldest inserted
                del self._cache[oldest]
                self._fetching.pop(oldest, None)
            self._cache[key] = fresh
        return fresh.jwks if now < fresh.usable_until else None

    def _fetch(self, uri: str, parse: Callable[[str], str]) -> str:
        deadline = self._monotonic() + self._timeout
        origin = _origin(uri)
        current = uri
        for _ in range(MAX_REDIRECTS + 1):
            try:
                checked_jwks_uri("jwks_uri", current, allow_http_loopback=self._allow_http_loopback)
            except InvalidField as exc:
                raise FetchRefused(exc.description) from None
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise FetchRefused("took too long")
            try:
                response = request(
                    current,
                    headers={"Accept": "application/jwk-set+json, application/json"},
                    timeout=remaining,
                    max_bytes=self._max_bytes,
                    ssl_context=self._ssl_context,
                    peer_allowed=self._peer_allowed,
                    env_proxies=False,
                    untrusted=True,
                )
            except HttpFailure as exc:
                raise FetchRefused(f"no complete response: {exc}") from None
            if response.status in _REDIRECTS:
                target = urljoin(current, response.headers.get("Location", ""))
                if _origin(target) != origin:
                    raise FetchRefused("redirected to another host")
                current = target
                continue
            if response.status != 200:
                raise FetchRefused(f"answered HTTP {response.status}")
            try:
                text = response.body.decode("utf-8")
            except UnicodeDecodeError:
                raise FetchRefused("the answer is not UTF-8") from None
            return parse(text)
        raise FetchRefused("too many redirects")


def _jwk_set(body: str) -> str:
    try:
        return normalized_jwks("jwks_uri", body)
    except InvalidField as exc:
        raise FetchRefused(f"not a usable JWK Set: {exc}") from None
