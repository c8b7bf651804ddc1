"""An application's public JWK Set for private_key_jwt: checked when an operator
sets it, and the key a client assertion names chosen from it.

RFC 7523 section 2.2 lets a client authenticate with a JWT it signs with its own
private key; the server holds only the public half (RFC 7517 section 5, a JWK
Set), so nothing stored here is a secret. What is accepted is deliberately
narrow: the asymmetric algorithms RS256, PS256, ES256 and EdDSA (Ed25519), never
``none`` and never an HMAC (a "key" the server knows could be used by anyone who
reads it: the classic HS256-with-the-public-key confusion). A private member
(``d``, ``p``, ...) is refused without being echoed: a private key pasted by
mistake is a secret and must not be stored, logged or shown.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from m2mauth.core.errors import InvalidField
from m2mauth.core.hosts import is_loopback_host

# RFC 7518 sections 3.3 (RS256), 3.5 (PS256), 3.4 (ES256) and RFC 8037 (EdDSA).
ASSERTION_ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
# Which keys each algorithm verifies with: (kty, crv or None).
_KEY_TYPE = {
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", "Ed25519"),
}
# The members a public key of each type is made of (RFC 7518 section 6, RFC 8037
# section 2), plus the optional ones we keep; anything else is dropped.
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
_OPTIONAL_MEMBERS = ("kid", "alg", "use")
# RFC 7518 sections 6.2.2, 6.3.2 and 6.4 (oct "k"), RFC 8037 section 2 ("d").
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MAX_JWKS_BYTES = 32 * 1024
MAX_KEYS = 10
MAX_KID_LENGTH = 128
# RFC 7518 section 3.3: "A key of size 2048 bits or larger MUST be used".
MIN_RSA_BITS = 2048
MAX_JWKS_URI_LENGTH = 2048


class RemoteJwks(Protocol):
    """Where the JWK Sets of applications with a ``jwks_uri`` come from: fetched
    over the network at the edge (m2mauth.remote_jwks), cached there."""

    def get(self, uri: str, *, refresh: bool = False) -> str | None:
        """The normalised JWK Set served at ``uri``, or None if it cannot be had.
        ``refresh``: an assertion named a kid the cached set lacks (RFC 7517
        section 4.5: the partner may have rotated), so fetch again if allowed."""
        ...

    def issuer_jwks(self, issuer: str, *, refresh: bool = False) -> str | None:
        """The normalised JWK Set of an OpenID Connect issuer (workload identity
        federation): from the jwks_uri its discovery document names."""
        ...


def checked_jwks_uri(field: str, uri: str, *, allow_http_loopback: bool) -> str:
    """The URI if m2mauth may fetch a JWK Set from it, else InvalidField: https
    only (http to a loopback host only when ``allow_http_loopback``, a --dev
    server), a host, no user info (credentials in a URL end up in logs) and no
    fragment."""
    if len(uri) > MAX_JWKS_URI_LENGTH:
        raise InvalidField(field, f"must be at most {MAX_JWKS_URI_LENGTH} characters")
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidField(field, "must be an https URL") from None
    scheme = parts.scheme.lower()
    http_allowed = scheme == "http" and allow_http_loopback and is_loopback_host(host)
    if scheme != "https" and not http_allowed:
        raise InvalidField(
            field, "must be an https URL (http only to a loopback host, on a --dev server)"
        )
    if not host or parts.username is not None or parts.password is not None:
        raise InvalidField(field, "must name a host and carry no user info")
    if parts.fragment or any(c.isspace() or not c.isprintable() for c in uri):
        # Control characters (NUL among them, which PostgreSQL cannot store)
        # have no place in a URL either.
        raise InvalidField(field, "must have no fragment, whitespace or control characters")
    return uri


def normalized_jwks(field: str, text: str) -> str:
    """The JWK Set as stored (compact JSON, public members only), or InvalidField
    naming ``field``. The message never quotes a key member: one may be private."""
    if len(text.encode()) > MAX_JWKS_BYTES:
        raise InvalidField(field, f"must be at most {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidField(field, "must be a JSON JWK Set (RFC 7517 section 5)") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidField(field, 'must be a JWK Set: {"keys": [...]} with at least one key')
    if len(keys) > MAX_KEYS:
        raise InvalidField(field, f"must hold at most {MAX_KEYS} keys")
    kept = [_public_key(field, index, jwk) for index, jwk in enumerate(keys)]
    kids = [jwk["kid"] for jwk in kept if "kid" in jwk]
    if len(kids) != len(set(kids)):
        # RFC 7517 section 4.5: kids distinguish the keys of a set.
        raise InvalidField(field, "two keys have the same kid")
    return json.dumps({"keys": kept}, separators=(",", ":"), sort_keys=True)


def _public_key(field: str, index: int, jwk: Any) -> dict[str, str]:
    if not isinstance(jwk, dict):
        raise InvalidField(field, f"key {index} is not a JSON object")
    if any(member in jwk for member in _PRIVATE_MEMBERS):
        raise InvalidField(
            field, f"key {index} has private or symmetric key members: give the public key only"
        )
    kty = jwk.get("kty")
    if kty not in _PUBLIC_MEMBERS:
        raise InvalidField(field, f"key {index} must have kty RSA, EC (P-256) or OKP (Ed25519)")
    for member in (*_PUBLIC_MEMBERS[kty], *_OPTIONAL_MEMBERS):
        if member in jwk and not isinstance(jwk[member], str):
            raise InvalidField(field, f"key {index}: {member} must be a string")
    kid = jwk.get("kid")
    if kid is not None and not 1 <= len(kid) <= MAX_KID_LENGTH:
        raise InvalidField(field, f"key {index}: kid must be 1 to {MAX_KID_LENGTH} characters")
    if jwk.get("use", "sig") != "sig":
        raise InvalidField(field, f'key {index}: use must be "sig" (or absent)')
    alg = jwk.get("alg")
    if alg is not None and (alg not in ASSERTION_ALGORITHMS or _KEY_TYPE[alg][0] != kty):
        raise InvalidField(
            field, f"key {index}: alg must be one of {', '.join(ASSERTION_ALGORITHMS)} for its kty"
        )
    public = {m: jwk[m] for m in ("kty", *_PUBLIC_MEMBERS[kty], *_OPTIONAL_MEMBERS) if m in jwk}
    algorithm = alg or next(a for a, (t, crv) in _KEY_TYPE.items() if t == kty)
    if kty != "RSA" and public.get("crv") != _KEY_TYPE[algorithm][1]:
        raise InvalidField(field, f"key {index}: EC keys must be P-256, OKP keys Ed25519")
    key = _parsed(json.dumps(public, sort_keys=True), algorithm)
    if key is None:
        raise InvalidField(field, f"key {index} is not a valid {kty} public key")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidField(field, f"key {index}: RSA keys need at least {MIN_RSA_BITS} bits")
    return public


def verification_key(jwks: str, alg: str, kid: str | None) -> Any | None:
    """The public key of the stored JWK Set to verify an ``alg`` assertion with:
    the one with this ``kid`` (RFC 7515 section 4.1.4), or without a kid the only
    key that fits the algorithm; None when there is none (or no single one)."""
    if alg not in _KEY_TYPE or not jwks:
        return None
    kty, crv = _KEY_TYPE[alg]
    fitting = [
        jwk
        for jwk in json.loads(jwks)["keys"]
        if jwk["kty"] == kty
        and (crv is None or jwk.get("crv") == crv)
        and jwk.get("alg", alg) == alg
    ]
    if kid is not None:
        fitting = [jwk for jwk in fitting if jwk.get("kid") == kid]
    if len(fitting) != 1:
        return None
    return _parsed(json.dumps(fitting[0], sort_keys=True), alg)


def fetched_key(fetch: Callable[..., str | None], alg: str, kid: str | None) -> Any | None:
    """The key of a fetched JWK Set to verify an ``alg`` signature named ``kid``
    with (see verification_key). ``fetch`` is a RemoteJwks method with its URL
    or issuer bound; it is asked again with ``refresh`` once, when the cached set
    lacks the kid (RFC 7517 section 4.5: the signer may have rotated)."""
    key = verification_key(fetch() or "", alg, kid)
    if key is None and kid is not None:
        key = verification_key(fetch(refresh=True) or "", alg, kid)
    return key


@functools.lru_cache(maxsize=4096)
def _parsed(jwk_json: str, alg: str) -> Any | None:
    """The cryptography public key of one JWK (cached by content: it never changes)."""
    try:
        return jwt.PyJWK(json.loads(jwk_json), algorithm=alg).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        return None
