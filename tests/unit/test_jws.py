"""The hot-path signer: compact JWS that pyjwt and joserfc verify, for every algorithm."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc import jws as jose_jws
from joserfc.jwk import import_key

from m2mauth.core.jws import CompactSigner, b64url
from m2mauth.core.signing_keys import generate_private_key, public_jwk

CLAIMS: dict[str, Any] = {
    "iss": "https://auth.example.test",
    "sub": "client_x",
    "aud": ["https://api.example.test", "https://b.example.test"],
    "scope": "read écrire",  # non-ASCII survives the JSON
    "iat": 1_700_000_000,
    "exp": 1_700_000_300,
}


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_tokens_verify_with_other_libraries(algorithm: str) -> None:
    key = generate_private_key(algorithm)
    token = CompactSigner("key_1", algorithm, key).sign(CLAIMS)

    header = jwt.get_unverified_header(token)
    assert header == {"alg": algorithm, "kid": "key_1", "typ": "at+jwt"}
    decoded = jwt.decode(
        token,
        key.public_key(),
        algorithms=[algorithm],
        audience="https://api.example.test",
        options={"verify_exp": False},  # fixed times: what is checked is the signature
    )
    assert decoded == CLAIMS

    jwk = import_key(dict[str, str | list[str]](public_jwk("key_1", algorithm, key.public_key())))
    compact = jose_jws.deserialize_compact(token, jwk, algorithms=[algorithm])
    assert json.loads(compact.payload) == CLAIMS
    # The header and payload segments do not depend on the signer instance.
    again = CompactSigner("key_1", algorithm, key).sign(CLAIMS)
    assert again.split(".")[:2] == token.split(".")[:2]


def test_es256_signatures_are_r_and_s_not_der() -> None:
    """RFC 7518 section 3.4: 64 bytes, where OpenSSL's DER would be 70 or so."""
    key = generate_private_key("ES256")
    signature = CompactSigner("k", "ES256", key).sign(CLAIMS).rsplit(".", 1)[1]
    assert len(signature) == len(b64url(bytes(64)))


def test_a_key_that_does_not_fit_the_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot sign RS256 with a"):
        CompactSigner("k", "RS256", generate_private_key("ES256"))
    with pytest.raises(ValueError, match="ES256 needs a P-256 key"):
        CompactSigner("k", "ES256", ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ValueError, match="cannot sign HS256"):
        CompactSigner("k", "HS256", ed25519.Ed25519PrivateKey.generate())
