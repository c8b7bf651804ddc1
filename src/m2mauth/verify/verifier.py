"""``TokenVerifier``: checks an m2mauth access token (RFC 9068 JWT) the way RFC 8725 asks.

Order of checks, cheapest and least trusting first:

1. size (``max_token_bytes``), before any decoding: a 10 MB token costs nothing;
2. the JOSE header, parsed strictly by us: no ``crit`` at all (RFC 7515 section
   4.1.11: we understand no extension), ``typ`` ``at+jwt`` (RFC 9068 section 4,
   compared case-insensitively, ``application/`` prefix allowed), ``alg`` in the
   configured allowlist (never ``none``, never HMAC: RFC 8725 sections 2.1, 3.1),
   ``kid`` present. ``jku``, ``x5u``, ``jwk`` and ``x5c`` are never read, so a
   token cannot choose its own key (RFC 8725 section 3.10);
3. the key: the issuer's published key with that ``kid`` AND a type fitting
   ``alg`` (the CVE-2022-29217 class, e.g. HS256 keyed with the RSA public key,
   fails here), from the JWKS cache;
4. signature, then claims, by pyjwt bound to that one algorithm: exact ``iss``,
   ``aud`` containing ours, ``exp``/``nbf``/``iat`` with a leeway of at most
   five minutes (an ``iat`` beyond it is refused), and the RFC 9068 section 2.2
   claims plus ``org_id`` present and well typed.

Every failure is an InvalidToken whose message is a fixed string from this module.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import Any

import jwt
from jwt import PyJWK
from jwt.types import Options

from m2mauth.verify.errors import InvalidToken
from m2mauth.verify.introspection import IntrospectionClient
from m2mauth.verify.jwks import (
    DEFAULT_ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    HttpJwksSource,
    JwksCache,
    JwksSource,
)
from m2mauth.verify.tokens import REQUIRED_CLAIMS, VerifiedToken

MAX_LEEWAY_SECONDS = 300.0
DEFAULT_MAX_TOKEN_BYTES = 8 * 1024
_ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_MAX_KID_LENGTH = 256
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MALFORMED = "the token is malformed"


class TokenVerifier:
    """Verifies access tokens from one issuer for one audience (this API).

    ``jwks_url`` is the issuer's ``jwks_uri`` (m2mauth: ``<issuer>/oauth2/jwks``);
    or pass ``jwks``: a JwksSource, or a JwksCache tuned by hand. ``verify`` blocks
    only when the keys must be fetched; ``averify`` never blocks the event loop.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        jwks: JwksSource | JwksCache | None = None,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: float = 60.0,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        introspection: IntrospectionClient | None = None,
        jwks_timeout: float = 5.0,
        allow_http: bool = False,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = _allowlist(algorithms)
        if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")
        self.leeway = float(leeway)
        if max_token_bytes < 256:
            raise ValueError("max_token_bytes is too small for any access token")
        self.max_token_bytes = max_token_bytes
        if jwks_url is not None and jwks is None:
            jwks = HttpJwksSource(jwks_url, timeout=jwks_timeout, allow_http=allow_http)
        elif jwks is None or jwks_url is not None:
            raise ValueError("give exactly one of jwks_url and jwks")
        if not isinstance(jwks, JwksCache):
            jwks = JwksCache(jwks, algorithms=self.algorithms)
        elif not self.algorithms <= jwks.algorithms:
            raise ValueError("the JwksCache must allow every algorithm the verifier allows")
        self.jwks: JwksCache = jwks
        self.introspection = introspection
        self._options: Options = {
            "verify_signature": True,
            "require": list(REQUIRED_CLAIMS),
            "verify_aud": True,
            "verify_iss": True,
            "verify_exp": True,
            "verify_iat": True,
            "verify_nbf": True,
            "verify_sub": True,
            "verify_jti": True,
            "strict_aud": False,
            # RFC 7518 section 3.3: RSA keys of 2048 bits or more.
            "enforce_minimum_key_length": True,
        }

    def verify(self, token: str) -> VerifiedToken:
        """Verify ``token`` or raise a TokenError (InvalidToken, JwksUnavailable)."""
        algorithm, kid = self._check_header(token)
        return self._check_signature_and_claims(token, self.jwks.get_key(kid, algorithm), algorithm)

    async def averify(self, token: str) -> VerifiedToken:
        """``verify`` for asyncio: a key fetch, if needed, runs in a worker thread."""
        algorithm, kid = self._check_header(token)
        key = self.jwks.cached_key(kid, algorithm)
        if key is None:
            key = await asyncio.to_thread(self.jwks.get_key, kid, algorithm)
        return self._check_signature_and_claims(token, key, algorithm)

    def verify_and_introspect(self, token: str) -> VerifiedToken:
        """``verify``, then ask the issuer whether the token is still active (RFC 7662).

        Raises InvalidToken for a revoked token, IntrospectionUnavailable if the
        issuer cannot say.
        """
        verified = self.verify(token)
        self._introspection().check(token, verified)
        return verified

    async def averify_and_introspect(self, token: str) -> VerifiedToken:
        """``verify_and_introspect`` for asyncio; the HTTP call runs in a worker thread."""
        verified = await self.averify(token)
        introspection = self._introspection()
        if not introspection.is_cached(token):
            await asyncio.to_thread(introspection.check, token, verified)
        return verified

    def _introspection(self) -> IntrospectionClient:
        if self.introspection is None:
            raise RuntimeError("TokenVerifier was built without an IntrospectionClient")
        return self.introspection

    def _check_header(self, token: object) -> tuple[str, str]:
        """Steps 1 and 2: size and JOSE header. Returns (alg, kid)."""
        if not isinstance(token, str):
            raise InvalidToken(_MALFORMED)
        if len(token) > self.max_token_bytes:
            raise InvalidToken("the token is too large")
        if not token.isascii():
            raise InvalidToken(_MALFORMED)
        segments = token.split(".")
        if len(segments) != 3:
            # A JWS in compact form; five segments would be a JWE, which we never accept.
            raise InvalidToken(_MALFORMED)
        header = _json_segment(segments[0])
        if "crit" in header:
            raise InvalidToken("the token uses a critical header extension we do not support")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _ACCESS_TOKEN_TYPES:
            raise InvalidToken("the token is not a JWT access token (typ must be at+jwt)")
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise InvalidToken("the token's signing algorithm is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_LENGTH:
            raise InvalidToken("the token has no usable key id (kid)")
        return algorithm, kid

    def _check_signature_and_claims(self, token: str, key: PyJWK, algorithm: str) -> VerifiedToken:
        """Step 4: pyjwt checks the signature with the one key and algorithm, then claims."""
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=self._options,
            )
        except jwt.ExpiredSignatureError as err:
            raise InvalidToken("the token has expired") from err
        except jwt.ImmatureSignatureError as err:
            raise InvalidToken("the token is not valid yet") from err
        except jwt.InvalidAudienceError as err:
            raise InvalidToken("the token is not meant for this audience") from err
        except jwt.InvalidIssuerError as err:
            raise InvalidToken("the token is from another issuer") from err
        except jwt.MissingRequiredClaimError as err:
            claim = err.claim if err.claim in REQUIRED_CLAIMS else "a required"
            raise InvalidToken(f"the token lacks the {claim} claim") from err
        except jwt.InvalidSignatureError as err:
            raise InvalidToken("the token's signature is invalid") from err
        except jwt.InvalidKeyError as err:
            raise InvalidToken("the token's signing key is not acceptable") from err
        except jwt.PyJWTError as err:
            raise InvalidToken(_MALFORMED) from err
        return VerifiedToken.from_claims(claims)


def _allowlist(algorithms: Iterable[str]) -> frozenset[str]:
    allowed = frozenset(algorithms)
    if not allowed:
        raise ValueError("at least one algorithm is required")
    for algorithm in allowed:
        if algorithm.lower() == "none" or algorithm.upper().startswith("HS"):
            # RFC 8725 section 3.1: a public-key verifier never accepts a MAC or no signature.
            raise ValueError(f"{algorithm!r} is never accepted for access tokens")
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"unsupported algorithm {algorithm!r}")
    return allowed


def _json_segment(segment: str) -> dict[str, Any]:
    """Decode a base64url JSON object strictly: unpadded alphabet only (RFC 7515 section 2)."""
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise InvalidToken(_MALFORMED)
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, RecursionError) as err:
        raise InvalidToken(_MALFORMED) from err
    if not isinstance(value, dict):
        raise InvalidToken(_MALFORMED)
    return value
