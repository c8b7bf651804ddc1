"""Asking the issuer whether a token is still active (RFC 7662), for APIs that must see revocation.

A JWT verified against the JWKS stays valid until it expires, even if revoked
(RFC 7009). ``TokenVerifier.verify_and_introspect`` first verifies locally (so
forgeries never reach the issuer), then asks here. Positive answers are cached
briefly (``cache_ttl``, at most five minutes, never past the token's ``exp``)
in a bounded LRU keyed by the token's SHA-256, so a busy API does not call the
issuer on every request; a revocation is seen within ``cache_ttl``. Negative
answers are not cached: an inactive token stays inactive.

An unreachable or failing endpoint raises IntrospectionUnavailable (503 /
UNAVAILABLE), never "inactive": an outage is not the caller's fault.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal
from urllib.parse import quote_plus, urlencode

from m2mauth.verify import _http
from m2mauth.verify.errors import IntrospectionUnavailable, InvalidToken
from m2mauth.verify.tokens import VerifiedToken

log = logging.getLogger("m2mauth.verify.introspection")

MAX_CACHE_TTL_SECONDS = 300.0
_MAX_RESPONSE_BYTES = 64 * 1024
# Members that, when the issuer returns them, must match the token we verified.
_CROSS_CHECKED = ("jti", "client_id", "org_id", "iss")


class IntrospectionClient:
    """Calls an RFC 7662 introspection endpoint as a protected resource.

    Authenticate with the API's own client credentials (``client_id`` and
    ``client_secret``: HTTP Basic per RFC 6749 section 2.3.1, or ``client_auth="post"``
    for form fields) or with an m2mauth admin key (``bearer_token``).
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        bearer_token: str | None = None,
        client_auth: Literal["basic", "post"] = "basic",
        timeout: float = 5.0,
        cache_ttl: float = 30.0,
        cache_size: int = 10_000,
        ssl_context: ssl.SSLContext | None = None,
        allow_http: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = _http.check_url(url, allow_http=allow_http)
        has_client = client_id is not None and client_secret is not None
        if has_client == (bearer_token is not None):
            raise ValueError("give either client_id and client_secret, or bearer_token")
        if not 0 <= cache_ttl <= MAX_CACHE_TTL_SECONDS:
            raise ValueError(f"cache_ttl must be between 0 and {MAX_CACHE_TTL_SECONDS} seconds")
        if cache_size < 1:
            raise ValueError("cache_size must be positive")
        self._form: dict[str, str] = {}
        self._headers = {"Accept": "application/json"}
        if bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        elif client_auth == "basic":
            # RFC 6749 section 2.3.1: form-urlencode each part before base64.
            pair = f"{quote_plus(client_id or '')}:{quote_plus(client_secret or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            self._form = {"client_id": client_id or "", "client_secret": client_secret or ""}
        self._timeout = timeout
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._ssl_context = ssl_context
        self._clock = clock
        self._lock = threading.Lock()
        self._active_until: OrderedDict[bytes, float] = OrderedDict()

    def is_cached(self, token: str) -> bool:
        """Whether a recent positive answer for ``token`` is cached (never blocks on I/O)."""
        digest = _digest(token)
        now = self._clock()
        with self._lock:
            until = self._active_until.get(digest)
            if until is None:
                return False
            if until <= now:
                del self._active_until[digest]
                return False
            self._active_until.move_to_end(digest)
            return True

    def check(self, token: str, verified: VerifiedToken) -> None:
        """Return if the issuer says ``token`` is active; raise InvalidToken if not.

        Blocks on the HTTP call unless a positive answer is cached.
        """
        if self.is_cached(token):
            return
        body = self._introspect(token)
        if body.get("active") is not True:
            # RFC 7662 section 2.2: anything but active=true means inactive.
            raise InvalidToken("the token is not active")
        for name in _CROSS_CHECKED:
            if name in body and body[name] != verified.claims.get(name):
                log.warning("introspection answer disagrees with the token's %s claim", name)
                raise InvalidToken("the token is not active")
        self._remember(token, verified)

    def _introspect(self, token: str) -> dict[str, object]:
        # RFC 7662 section 2.1: form-encoded POST; token_type_hint is optional.
        form = {"token": token, "token_type_hint": "access_token", **self._form}
        try:
            response = _http.request(
                self.url,
                method="POST",
                data=urlencode(form).encode(),
                headers={**self._headers, "Content-Type": "application/x-www-form-urlencoded"},
                timeout=self._timeout,
                max_bytes=_MAX_RESPONSE_BYTES,
                ssl_context=self._ssl_context,
            )
        except _http.HttpFailure as err:
            log.warning("introspection request failed: %s", err)
            raise IntrospectionUnavailable() from err
        if response.status != 200:
            # 401 here means OUR credentials were refused: a configuration fault.
            log.warning("introspection endpoint answered HTTP %d", response.status)
            raise IntrospectionUnavailable()
        try:
            body = json.loads(response.body)
        except (ValueError, RecursionError) as err:
            raise IntrospectionUnavailable() from err
        if not isinstance(body, dict):
            raise IntrospectionUnavailable()
        return body

    def _remember(self, token: str, verified: VerifiedToken) -> None:
        lifetime = min(self._cache_ttl, verified.expires_at.timestamp() - time.time())
        if lifetime <= 0:
            return
        digest = _digest(token)
        with self._lock:
            self._active_until[digest] = self._clock() + lifetime
            self._active_until.move_to_end(digest)
            while len(self._active_until) > self._cache_size:
                self._active_until.popitem(last=False)

    def cache_len(self) -> int:
        """How many positive answers are cached (for metrics and tests)."""
        with self._lock:
            return len(self._active_until)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
