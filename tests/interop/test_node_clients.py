"""Node clients against the shim: openid-client v6 and jose, run by ``node`` (see node/).

The scripts print JSON; the assertions live here. The first test that needs the
clients installs them (``npm ci`` in node/); without Node.js the tests are skipped,
with a loud line in the summary, except in CI, where they fail.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import httpx
import jwt
import pytest

from m2mauth.core.models import SigningKeyState
from tests.assertions import jwks_of, new_key
from tests.http.conftest import ENV, Partner, Shim
from tests.interop.conftest import ClockedShim, run_node, verify_access_token

AUTH_METHODS = ("client_secret_basic", "client_secret_post")
SCOPES = ("invoices:read", "invoices:write")


def issue(shim: Shim, partner: Partner) -> str:
    response = httpx.post(
        f"{shim.base_url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def published_kids(shim: Shim) -> set[str]:
    response = httpx.get(f"{shim.base_url}/oauth2/jwks", timeout=10)
    assert response.status_code == 200, response.text
    return {key["kid"] for key in response.json()["keys"]}


def jose_verify(shim: Shim, cases: list[dict[str, str]]) -> dict[str, Any]:
    """Verify each case's token with jose, in one run of node (one fresh JWKS cache)."""
    metadata = httpx.get(f"{shim.base_url}/.well-known/oauth-authorization-server", timeout=10)
    assert metadata.status_code == 200, metadata.text
    document = metadata.json()
    results = run_node(
        "jose_verify.mjs",
        {
            "jwks_uri": document["jwks_uri"],
            "issuer": shim.issuer,
            "audience": shim.issuer,
            "algorithms": document["access_token_signing_alg_values_supported"],
            "cases": cases,
        },
    )
    assert set(results) == {c["label"] for c in cases}, results
    return results


def accepted(result: dict[str, Any]) -> dict[str, Any]:
    assert result["ok"] is True, result
    payload: dict[str, Any] = result["payload"]
    return payload


def rejected(result: dict[str, Any]) -> dict[str, Any]:
    assert result["ok"] is False, result
    error: dict[str, Any] = result["error"]
    return error


# --- openid-client ----------------------------------------------------------------------


@pytest.mark.parametrize("method", AUTH_METHODS)
def test_openid_client_discovers_issues_and_introspects(in_process_shim: Shim, method: str) -> None:
    shim = in_process_shim
    partner = shim.partner(scopes=SCOPES)
    out = run_node(
        "openid_client.mjs",
        {
            "issuer": shim.issuer,
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
            "auth": method,
            "scope": "invoices:read",
            "wrong_secret": partner.client_secret + "x",
        },
    )

    # RFC 8414 section 3.3: the metadata issuer is the one discovery asked for.
    server = out["server"]
    assert server["issuer"] == shim.issuer
    assert server["token_endpoint"] == f"{shim.issuer}/oauth2/token"
    assert server["introspection_endpoint"] == f"{shim.issuer}/oauth2/introspection"
    assert method in server["token_endpoint_auth_methods_supported"]

    # What went on the wire: the grant, then introspection, each authenticated
    # with the configured method only (RFC 6749 section 2.3).
    grant, introspect = out["requests"]
    assert (grant["url"], introspect["url"]) == (
        server["token_endpoint"],
        server["introspection_endpoint"],
    )
    for request in (grant, introspect):
        headers = {k.lower(): v for k, v in request["headers"].items()}
        form = parse_qs(request["body"])
        if method == "client_secret_basic":
            raw = base64.b64decode(headers["authorization"].removeprefix("Basic ")).decode()
            # openid-client form-urlencodes both halves first, even "_" (RFC 6749
            # section 2.3.1): the server must decode them.
            assert [unquote_plus(part) for part in raw.split(":", 1)] == [
                partner.client_id,
                partner.client_secret,
            ]
            assert "client_secret" not in form
        else:
            assert "authorization" not in headers
            assert form["client_secret"] == [partner.client_secret]
    assert parse_qs(grant["body"])["grant_type"] == ["client_credentials"]

    token = out["token"]
    # oauth4webapi lower-cases token_type; RFC 6749 section 7.1 makes it case-insensitive.
    assert token["token_type"].lower() == "bearer"
    assert token["scope"] == "invoices:read"
    assert 0 < token["expires_in_helper"] <= 3600
    claims = verify_access_token(shim, token["access_token"], partner.org_id, partner.client_id)

    # RFC 7662 section 2.2.
    introspection = out["introspection"]
    assert introspection["active"] is True
    assert introspection["client_id"] == partner.client_id
    assert introspection["org_id"] == partner.org_id
    assert introspection["jti"] == claims["jti"]
    assert introspection["scope"] == "invoices:read"

    # RFC 6749 section 5.2: a wrong secret is invalid_client with 401; a client that
    # used the Authorization header gets a WWW-Authenticate challenge for its
    # scheme, which openid-client reports as the challenge (the body still says why).
    error = out["wrong_secret_error"]
    assert error is not None, out
    assert error["status"] == 401, error
    assert error["body"]["error"] == "invalid_client", error
    if method == "client_secret_basic":
        assert error["code"] == "OAUTH_WWW_AUTHENTICATE_CHALLENGE", error
        assert [c["scheme"] for c in error["challenges"]] == ["basic"], error
    else:
        assert error["error"] == "invalid_client", error
        assert error["challenges"] is None, error


# --- jose ---------------------------------------------------------------------------------


def test_jose_enforces_typ_issuer_and_audience(in_process_shim: Shim) -> None:
    shim = in_process_shim
    partner = shim.partner(scopes=SCOPES)
    token = issue(shim, partner)
    # The same claims, signed by the server's own current key, but typ "JWT":
    # RFC 9068 section 4 (and RFC 8725 section 3.11) make the verifier reject it,
    # so an ID token or other JWT cannot pass as an access token.
    kid, alg, key = shim.container.tokens.ring.current_signer()
    claims = jwt.decode(token, options={"verify_signature": False})
    plain_jwt = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})
    header, _, signature = token.split(".")
    forged = base64.urlsafe_b64encode(
        json.dumps({**claims, "org_id": "org_someone_else"}).encode()
    ).rstrip(b"=")
    tampered = f"{header}.{forged.decode()}.{signature}"

    results = jose_verify(
        shim,
        [
            {"label": "valid", "token": token},
            {"label": "other_audience", "token": token, "audience": "https://api.example"},
            {"label": "other_issuer", "token": token, "issuer": "https://auth.example"},
            {"label": "typ_jwt", "token": plain_jwt},
            {"label": "tampered", "token": tampered},
        ],
    )

    payload_ok = accepted(results["valid"])
    assert payload_ok["org_id"] == partner.org_id
    assert payload_ok["client_id"] == partner.client_id
    assert results["valid"]["header"]["typ"] == "at+jwt"
    assert results["valid"]["header"]["kid"] == kid
    for label, claim in (("other_audience", "aud"), ("other_issuer", "iss"), ("typ_jwt", "typ")):
        error = rejected(results[label])
        assert (error["code"], error["claim"]) == ("ERR_JWT_CLAIM_VALIDATION_FAILED", claim), label
    assert rejected(results["tampered"])["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"


def test_jose_rejects_a_token_whose_key_was_rotated_out(clocked_shim: ClockedShim) -> None:
    """The key lifecycle seen by a verifier: a token stays verifiable while its key is
    PREVIOUS (RFC 7517 key rollover), and is refused once the key is retired and no
    longer published. Real rotation, real retirement, a real remote JWKS."""
    shim = clocked_shim
    partner = shim.partner(scopes=SCOPES)
    old = issue(shim, partner)
    old_kid = jwt.get_unverified_header(old)["kid"]
    assert old_kid in published_kids(shim)

    current, _, _ = shim.container.tokens.keys.rotate(ENV, None, now=True)
    assert current.id != old_kid
    new = issue(shim, partner)
    assert jwt.get_unverified_header(new)["kid"] == current.id

    # Rotated but not retired: both verify.
    results = jose_verify(shim, [{"label": "old", "token": old}, {"label": "new", "token": new}])
    accepted(results["old"])
    accepted(results["new"])

    # Retirement comes a full token lifetime (plus leeway and refresh period)
    # after rotation; move the server's clock past it, let the periodic job
    # retire the key, and come back to real time, where the client's clock is.
    (previous,) = [k for k in shim.container.tokens.ring.list_keys() if k.id == old_kid]
    assert previous.state is SigningKeyState.PREVIOUS
    assert previous.retire_at is not None
    shim.clock.advance((previous.retire_at - shim.clock()).total_seconds() + 1)
    shim.container.tokens.ring.maintenance()
    shim.clock.reset()
    (retired,) = [k for k in shim.container.tokens.ring.list_keys() if k.id == old_kid]
    assert retired.state is SigningKeyState.RETIRED
    kids = published_kids(shim)
    assert old_kid not in kids
    assert current.id in kids

    # The old token has not expired (real time), so the only reason left to
    # refuse it is the key: jose finds no key with its kid in the JWKS.
    assert jwt.decode(old, options={"verify_signature": False})["exp"] > time.time() + 60
    results = jose_verify(shim, [{"label": "old", "token": old}, {"label": "new", "token": new}])
    assert rejected(results["old"])["code"] == "ERR_JWKS_NO_MATCHING_KEY"
    assert accepted(results["new"])["org_id"] == partner.org_id

    # The server agrees (RFC 7662 section 2.2: inactive is exactly {"active": false}).
    introspection = httpx.post(
        f"{shim.base_url}/oauth2/introspection",
        data={"token": old},
        headers={"authorization": f"Bearer {shim.admin_key}"},
        timeout=10,
    )
    assert introspection.status_code == 200, introspection.text
    assert introspection.json() == {"active": False}


def test_jose_verifies_the_tokens_of_every_signing_algorithm(clocked_shim: ClockedShim) -> None:
    """Tokens are signed by m2mauth's own compact-JWS signer, not a JWT library:
    Node's jose, a verifier nobody here wrote, accepts each algorithm's."""
    shim = clocked_shim
    partner = shim.partner(scopes=SCOPES)
    cases = []
    for algorithm in ("RS256", "EdDSA", "ES256"):
        # Twice: the first promotes the NEXT key made before; the second, one of this
        # algorithm. Every key stays published (PREVIOUS) for the one run of jose.
        for _ in range(2):
            shim.container.tokens.keys.rotate(ENV, algorithm, now=True)
        token = issue(shim, partner)
        assert jwt.get_unverified_header(token)["alg"] == algorithm
        cases.append({"label": algorithm, "token": token})
    results = jose_verify(shim, cases)
    for algorithm in ("RS256", "EdDSA", "ES256"):
        assert accepted(results[algorithm])["client_id"] == partner.client_id, algorithm


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_openid_client_private_key_jwt(in_process_shim: Shim, alg: str) -> None:
    """openid-client's own private_key_jwt: no secret anywhere, RS256 and ES256."""
    shim = in_process_shim
    key = new_key(alg)
    partner = shim.keyed_partner(jwks_of(key), scopes=SCOPES)
    out = run_node(
        "openid_client_private_key_jwt.mjs",
        {
            "issuer": shim.issuer,
            "client_id": partner.client_id,
            "private_key_pem": key.private_pem().decode(),
            "alg": alg,
            "kid": key.kid,
            "scope": "invoices:read",
        },
    )
    server = out["server"]
    assert "private_key_jwt" in server["token_endpoint_auth_methods_supported"]
    assert alg in server["token_endpoint_auth_signing_alg_values_supported"]
    jtis = set()
    for request in out["requests"]:
        assert request["url"] == server["token_endpoint"]
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert "authorization" not in headers
        form = parse_qs(request["body"])
        assert "client_secret" not in form
        assert form["client_assertion_type"] == [
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ]
        assertion = form["client_assertion"][0]
        assert jwt.get_unverified_header(assertion)["alg"] == alg
        claims = jwt.decode(assertion, options={"verify_signature": False})
        # openid-client addresses its assertions to the issuer (rfc7523bis).
        assert (claims["iss"], claims["sub"], claims["aud"]) == (
            partner.client_id,
            partner.client_id,
            shim.issuer,
        )
        jtis.add(claims["jti"])
    assert len(jtis) == 2
    assert len(out["tokens"]) == 2
    for token in out["tokens"]:
        assert token["scope"] == "invoices:read"
        verify_access_token(shim, token["access_token"], partner.org_id, partner.client_id)
