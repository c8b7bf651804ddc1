"""The private_key_jwt bench client: one fresh, valid assertion per request."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import jwt
from bench.provision import ASSERTION_TYPE, KID, KeyedClient
from cryptography.hazmat.primitives.asymmetric import ec

from m2mauth.core.jws import CompactSigner

AUDIENCE = "http://127.0.0.1:9/oauth2/token"


def test_each_line_is_a_token_request_with_its_own_assertion(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    client = KeyedClient("client_x", CompactSigner(KID, "ES256", key), AUDIENCE)
    lines = client.write_forms(tmp_path / "forms.txt", 50).read_text().splitlines()
    assert len(lines) == 50
    jtis = set()
    for line in lines:
        form = urllib.parse.parse_qs(line, strict_parsing=True)
        assert form["grant_type"] == ["client_credentials"]
        assert form["client_assertion_type"] == [ASSERTION_TYPE]
        [assertion] = form["client_assertion"]
        assert jwt.get_unverified_header(assertion)["kid"] == KID
        # RFC 7523 section 3: iss = sub = client_id, aud the token endpoint, exp.
        claims = jwt.decode(
            assertion,
            key.public_key(),
            algorithms=["ES256"],
            audience=AUDIENCE,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
        assert claims["iss"] == claims["sub"] == "client_x"
        jtis.add(claims["jti"])
    assert len(jtis) == 50  # single use: never the same assertion twice
