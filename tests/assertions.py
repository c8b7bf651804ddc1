"""Client keys and RFC 7523 client assertions for tests (private_key_jwt).

These sign with pyjwt, as a client would; the interop tests use third-party
clients' own signers instead.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from m2mauth.core.private_key_jwt import JWT_BEARER_ASSERTION_TYPE
from m2mauth.core.token_request import ClientCredentials, TokenRequest

ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
_RSA_KEYS: list[rsa.RSAPrivateKey] = []


@dataclass(frozen=True)
class ClientKey:
    alg: str
    kid: str
    private: Any  # a cryptography private key

    @property
    def public_jwk(self) -> dict[str, str]:
        public = self.private.public_key()
        if self.alg in ("RS256", "PS256"):
            jwk = json.loads(RSAAlgorithm.to_jwk(public))
        elif self.alg == "ES256":
            jwk = json.loads(ECAlgorithm.to_jwk(public))
        else:
            jwk = json.loads(OKPAlgorithm.to_jwk(public))
        jwk["kid"] = self.kid
        return {k: v for k, v in jwk.items() if k in ("kty", "crv", "n", "e", "x", "y", "kid")}

    def private_pem(self) -> bytes:
        return self.private.private_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def new_key(alg: str = "ES256", kid: str | None = None) -> ClientKey:
    kid = kid or f"k-{secrets.token_hex(4)}"
    if alg in ("RS256", "PS256"):
        # RSA generation is slow: a few keys serve every test (distinct kids).
        if len(_RSA_KEYS) < 3:
            _RSA_KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
            private: Any = _RSA_KEYS[-1]
        else:
            private = _RSA_KEYS[secrets.randbelow(len(_RSA_KEYS))]
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return ClientKey(alg, kid, private)


def jwks_of(*keys: ClientKey) -> str:
    return json.dumps({"keys": [key.public_jwk for key in keys]})


def claims_for(
    client_id: str, aud: str | list[str], *, now: float | None = None, lifetime: int = 60
) -> dict[str, Any]:
    issued = int(now if now is not None else time.time())
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": secrets.token_urlsafe(16),
    }


def sign(key: ClientKey, claims: dict[str, Any], **headers: Any) -> str:
    header = {"kid": key.kid, **headers}
    return jwt.encode(claims, key.private, algorithm=key.alg, headers=header)


def assertion(
    key: ClientKey,
    client_id: str,
    aud: str | list[str],
    *,
    now: float | None = None,
    lifetime: int = 60,
) -> str:
    return sign(key, claims_for(client_id, aud, now=now, lifetime=lifetime))


def assertion_request(
    client_assertion: str,
    client_id: str = "",
    *,
    scope: str = "",
    source: str = "",
    assertion_type: str = JWT_BEARER_ASSERTION_TYPE,
) -> TokenRequest:
    """A client_credentials request authenticated with a client assertion."""
    return TokenRequest(
        grant_type="client_credentials",
        credentials=ClientCredentials(
            client_id=client_id,
            client_assertion_type=assertion_type,
            client_assertion=client_assertion,
        ),
        scope=scope,
        source=source,
    )
