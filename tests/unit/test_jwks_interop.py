"""A JWT library this project does not use (joserfc) verifies our tokens from the JWKS.

This is what a resource server does: fetch the JWK Set, pick the key by kid,
check the signature, typ at+jwt (RFC 9068 section 4) and the claims.
"""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tests.unit.conftest import AUDIENCE, ISSUER, TokenWorld

ALGORITHMS = ["RS256", "ES256", "EdDSA"]


def key_set(jwks: list[dict[str, Any]]) -> KeySet:
    return KeySet.import_key_set({"keys": jwks})


def verify(token: str, jwks: list[dict[str, Any]], world: TokenWorld) -> dict[str, Any]:
    decoded = jose_jwt.decode(token, key_set(jwks), algorithms=ALGORITHMS)
    assert decoded.header["typ"] == "at+jwt"
    claims_registry = jose_jwt.JWTClaimsRegistry(
        now=lambda: int(world.clock().timestamp()),
        leeway=30,
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True},
        client_id={"essential": True},
        jti={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    claims_registry.validate(decoded.claims)
    return dict(decoded.claims)


# joserfc prefers RFC 9864's "Ed25519" name; "EdDSA" is what our contract says.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_joserfc_verifies_before_and_after_rotation_and_not_after_retirement(
    world: TokenWorld, algorithm: str
) -> None:
    ring = world.components.ring
    if algorithm != "RS256":
        ring.rotate(algorithm=algorithm)
        ring.rotate()
    assert ring.current_signer()[1] == algorithm
    c = world.client(scopes=("read",))
    before = world.issue(c).access_token
    cached_jwks = world.components.jwks()
    assert verify(before, cached_jwks, world)["client_id"] == c.client_id

    ring.rotate()
    after = world.issue(c).access_token
    served = world.components.jwks()
    assert verify(before, served, world)["org_id"] == c.org.id
    assert verify(after, served, world)["scope"] == "read"
    # The new key was published (as NEXT) before it signed: a verifier still
    # holding the JWKS from before the rotation verifies the new token too.
    assert verify(after, cached_jwks, world)["jti"] != verify(before, served, world)["jti"]

    # Past the old key's retirement it is gone from the JWKS and the old
    # token no longer verifies, whatever its claims say.
    world.clock.advance(3600 + 30 + 30)
    ring.maintenance()
    retired = world.components.jwks()
    with pytest.raises(JoseError):
        jose_jwt.decode(before, key_set(retired), algorithms=ALGORITHMS)
    # ...while the current key's tokens still do (signature-wise).
    jose_jwt.decode(world.issue(c).access_token, key_set(retired), algorithms=ALGORITHMS)
