"""What the token side is built from: its policy (from settings, read by the
composition root) and the parts a client authentication method or a grant may use.

The core never reads settings itself; :func:`m2mauth.bootstrap.bootstrap`
turns them into a :class:`TokenPolicy`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from m2mauth.core import defaults
from m2mauth.core.assertion_replay import UsedAssertions
from m2mauth.core.changes import Freshness
from m2mauth.core.client_keys import RemoteJwks
from m2mauth.core.clock import Clock
from m2mauth.core.credentials import CredentialHasher
from m2mauth.core.interfaces import Store
from m2mauth.core.issuance import AccessTokens

DEFAULT_CLIENT_CACHE_TTL_SECONDS = 5.0
# Where the token endpoint is under the issuer URL (the HTTP shim serves it there;
# a client assertion's aud may name it, RFC 7523 section 3 item 3).
TOKEN_ENDPOINT_PATH = "/oauth2/token"  # noqa: S105 - a path, not a secret
# With a change feed, caches are kept exact by it; this only bounds how long an
# entry lives if a change were somehow never delivered.
FEED_CACHE_TTL_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    # The `iss` claim (RFC 9068 section 2.2) and the token endpoint's base URL.
    issuer: str
    # The `aud` of a token whose client asked for none.
    default_audience: str
    token_ttl_seconds: int
    # Cap on any token lifetime, an application's override included.
    max_token_ttl_seconds: int
    signing_algorithm: str
    # 0: no automatic rotation.
    key_rotation_interval_seconds: int
    # How long verifiers may cache the JWKS; the next key is published this
    # long before it signs.
    jwks_max_age_seconds: int
    clock_leeway_seconds: int
    # The longest a private_key_jwt assertion's exp may be ahead of now.
    client_assertion_max_lifetime_seconds: int = defaults.CLIENT_ASSERTION_MAX_LIFETIME_SECONDS

    @property
    def token_endpoint_url(self) -> str:
        return self.issuer.rstrip("/") + TOKEN_ENDPOINT_PATH

    def __post_init__(self) -> None:
        if not self.issuer:
            # RFC 9068 section 2.2 requires iss.
            raise ValueError("the token policy needs an issuer")


@dataclass(frozen=True, slots=True)
class TokenParts:
    """Everything a registered client authentication method or grant may need."""

    policy: TokenPolicy
    store: Store
    hasher: CredentialHasher
    clock: Clock
    tokens: AccessTokens
    client_cache_ttl_seconds: float = DEFAULT_CLIENT_CACHE_TTL_SECONDS
    monotonic: Callable[[], float] = field(default=time.monotonic)
    # The change feed's health, when there is one (core/changes.py).
    freshness: Freshness | None = None
    # The replay record of client assertions (private_key_jwt).
    used_assertions: UsedAssertions | None = None
    # Fetches (and caches) the JWK Sets of applications with a jwks_uri.
    remote_jwks: RemoteJwks | None = None
