"""Checking that a presented access token is one of ours (RFC 9068 section 4, RFC 8725).

Shared by introspection and revocation. :func:`verified_claims` answers "did
this server sign this token, with a key it still publishes?" and returns the
claims, or None for anything else: malformed, oversized, wrong type, unknown
or retired kid, wrong algorithm, bad signature, wrong issuer, missing or
mistyped claims. Time (exp/iat) is checked separately by :func:`is_current`,
against the injectable clock, because revocation must accept expired tokens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jwt

from m2mauth.core.issuance import JWT_TYPE
from m2mauth.core.signing_keys import SigningKeyRing

# Our tokens are well under 2 KiB; anything beyond this is not ours and is
# not worth parsing (RFC 7662 section 4 asks to resist scanning and abuse).
MAX_TOKEN_LENGTH = 8 * 1024
_STRING_CLAIMS = ("iss", "sub", "client_id", "org_id", "jti")
_ACCEPTED_TYPES = (JWT_TYPE, "application/" + JWT_TYPE)


def verified_claims(token: str, ring: SigningKeyRing, issuer: str) -> dict[str, Any] | None:
    """The claims of a token this server signed with a published key; else None.

    May raise StoreUnavailable: an unknown kid makes the ring re-read the
    store, and an unreachable store is never taken for an invalid token.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    kid = _access_token_kid(token)
    key = ring.verification_key(kid) if kid is not None else None
    if key is None:
        return None
    try:
        claims = jwt.decode(
            token,
            key.key,
            # RFC 8725 section 3.1: the algorithm comes from the key, never the token.
            algorithms=[key.algorithm],
            issuer=issuer,
            options={
                "verify_signature": True,
                "verify_iss": True,
                "verify_aud": False,  # introspection answers for any audience
                "verify_exp": False,  # checked by is_current against our clock
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["iss", "sub", "aud", "client_id", "org_id", "iat", "exp", "jti"],
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    return claims if _well_typed(claims) else None


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
        and all(_is_int(claims.get(name)) for name in ("iat", "exp"))
        and isinstance(claims.get("scope", ""), str)
        and (
            isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
        )
    )


def is_current(claims: dict[str, Any], now: datetime, leeway_seconds: int) -> bool:
    """Not expired and not issued in the future, allowing ``leeway_seconds`` of skew
    (RFC 7519 sections 4.1.4 and 4.1.6)."""
    t = now.timestamp()
    return bool(claims["exp"] > t - leeway_seconds and claims["iat"] <= t + leeway_seconds)


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims["aud"]
    return [aud] if isinstance(aud, str) else list(aud)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
