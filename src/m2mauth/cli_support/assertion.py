"""Minting a client assertion for private_key_jwt (RFC 7523 section 2.2), as a
partner's client does: ``m2mauth token --private-key FILE`` signs one per call.

pyjwt and cryptography do the signing; the private key is read from the file
for the one signature and never printed, logged or sent.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from m2mauth.cli_support.failure import usage_failure

# Short on purpose (a stolen, unused assertion is worth only this long); the
# server refuses any living longer than its --client-assertion-max-lifetime-seconds.
ASSERTION_LIFETIME_SECONDS = 60


def _algorithm(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise usage_failure("--private-key must be an RSA, EC P-256 or Ed25519 private key")


def mint_assertion(private_key: Path, client_id: str, audience: str, kid: str | None) -> str:
    """A fresh assertion: iss = sub = client_id, aud, a minute's exp, a random jti."""
    try:
        key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        # Never quote the file: it holds a private key.
        raise usage_failure(
            "--private-key must be a readable, unencrypted PEM private key (PKCS#8 or traditional)"
        ) from None
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECONDS,
        # RFC 7523 section 3 item 7: the server accepts each jti once.
        "jti": secrets.token_urlsafe(24),
    }
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=_algorithm(key), headers=headers)  # type: ignore[arg-type]
