"""Checking that a presented access token is one of ours (RFC 9068 section 4, RFC 8725).

Shared by introspection and revocation. :class:`SignedTokens` answers "did
this server sign this token, with a key it still publishes?" and returns the
claims, or None for anything else: malformed, oversized, wrong type, unknown
or retired kid, wrong algorithm, bad signature, missing or mistyped claims.
A token signed with one of our keys that names another issuer raises
IssuerMismatch: replicas disagree about the issuer, which the caller must
hear. Time (exp/iat) is checked separately by :func:`is_current`, against the
injectable clock, because revocation must accept expired tokens.

A resource server introspects the same token on every call it receives
during the token's life, so the outcome of a successful signature check is
remembered per token string: a signature over given bytes with a given key
never changes its validity. Whether the key is still published is asked
again on every call, so a retired key's tokens turn inactive at once. Only
what passed the full check is remembered, so nothing unverified is ever
answered from memory.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any, TypeGuard

import jwt

from m2mauth.core.errors import IssuerMismatch
from m2mauth.core.jws import JWT_TYPE
from m2mauth.core.signing_keys import SigningKeyRing

log = logging.getLogger("m2mauth.tokens")

# Our tokens are well under 2 KiB; anything beyond this is not ours and is
# not worth parsing (RFC 7662 section 4 asks to resist scanning and abuse).
MAX_TOKEN_LENGTH = 8 * 1024
_STRING_CLAIMS = ("iss", "sub", "client_id", "org_id", "jti")
_ACCEPTED_TYPES = (JWT_TYPE, "application/" + JWT_TYPE)


# The last second a datetime (and so revocation's expiry) can hold, 9999-12-31T23:59:59Z.
# A token signed by our key with exp or iat beyond it, or before the epoch, was
# not issued by this code: it is not a token, rather than an overflow (a 500)
# when exp is turned into a datetime or written to an int64 field.
MAX_TIMESTAMP = 253402300799

# Verified tokens remembered per process: about 3 KiB each, ~12 MiB at most.
DEFAULT_REMEMBERED_TOKENS = 4096


class SignedTokens:
    """Verifies this server's access tokens, remembering those that passed."""

    def __init__(
        self, ring: SigningKeyRing, issuer: str, *, remember: int = DEFAULT_REMEMBERED_TOKENS
    ) -> None:
        if remember < 1:
            raise ValueError("remember must be at least 1")
        self._ring = ring
        self._issuer = issuer
        self._size = remember
        # token -> (kid, claims); the oldest goes first when full (popitem(last=False)
        # is O(1), where deleting next(iter(dict)) rescans the deleted slots).
        self._verified: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this server signed with a published key; else None.

        The claims are shared with later calls for the same token: read them,
        never change them. May raise StoreUnavailable: an unknown kid makes the
        ring re-read the store, and an unreachable store is never taken for an
        invalid token. Raises IssuerMismatch for a token of ours under another
        issuer.
        """
        remembered = self._verified.get(token)
        if remembered is not None:
            kid, claims = remembered
            if self._ring.verification_key(kid) is not None:
                return claims
            with self._lock:  # the key was retired: so is every token it signed
                self._verified.pop(token, None)
            return None
        verified = _verify(token, self._ring, self._issuer)
        if verified is None:
            return None
        with self._lock:
            while len(self._verified) >= self._size:
                self._verified.popitem(last=False)
            self._verified[token] = verified
        return verified[1]


def _verify(token: str, ring: SigningKeyRing, issuer: str) -> tuple[str, dict[str, Any]] | None:
    """(kid, claims) of a token this server signed with a published key; else None."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    kid = _access_token_kid(token)
    key = ring.verification_key(kid) if kid is not None else None
    if kid is None or key is None:
        return None
    try:
        claims = jwt.decode(
            token,
            key.key,
            # RFC 8725 section 3.1: the algorithm comes from the key, never the token.
            algorithms=[key.algorithm],
            options={
                "verify_signature": True,
                "verify_iss": False,  # compared below, once the signature is known good
                "verify_aud": False,  # introspection answers for any audience
                "verify_exp": False,  # checked by is_current against our clock
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["iss", "sub", "aud", "client_id", "org_id", "iat", "exp", "jti"],
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    if not _well_typed(claims):
        return None
    if claims["iss"] != issuer:
        # Our own key, another issuer: a replica of this deployment configured
        # differently. Told to the caller, never taken for "not our token".
        log.error(
            "a token signed with key %s names issuer %r, not %r: give every replica "
            "the same --issuer",
            kid,
            claims["iss"],
            issuer,
        )
        raise IssuerMismatch(claims["iss"], issuer)
    return kid, claims


def _access_token_kid(token: str) -> str | None:
    """The kid of something that claims to be a JWT access token, else None."""
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    kid = header.get("kid")
    typ = header.get("typ")
    # RFC 9068 section 4: resource servers MUST check typ is at+jwt (compared
    # case-insensitively, RFC 7515 section 4.1.9), so an ID token or another
    # JWT signed by the same key is never accepted as an access token.
    if not isinstance(kid, str) or not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
        return None
    return kid


def _well_typed(claims: dict[str, Any]) -> bool:
    """Every claim we rely on has the type we issue it with."""
    aud = claims.get("aud")
    return (
        all(isinstance(claims.get(name), str) for name in _STRING_CLAIMS)
        and _sane_times(claims.get("iat"), claims.get("exp"))
        and isinstance(claims.get("scope", ""), str)
        and (
            isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
        )
    )


def _sane_times(iat: object, exp: object) -> bool:
    """Whole seconds (RFC 7519 section 2 NumericDate; we issue integers, never
    booleans), issued no earlier than the epoch and expiring after issue and
    by the year 9999."""
    return _is_int(iat) and _is_int(exp) and 0 <= iat <= exp <= MAX_TIMESTAMP


def is_current(claims: dict[str, Any], now: datetime, leeway_seconds: int) -> bool:
    """Not expired and not issued in the future, allowing ``leeway_seconds`` of skew
    (RFC 7519 sections 4.1.4 and 4.1.6)."""
    t = now.timestamp()
    return bool(claims["exp"] > t - leeway_seconds and claims["iat"] <= t + leeway_seconds)


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims["aud"]
    return [aud] if isinstance(aud, str) else list(aud)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
