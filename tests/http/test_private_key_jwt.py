"""private_key_jwt over the HTTP shim (RFC 7523 section 2.2): the form fields, the
RFC 6749 section 5.2 answers, and nothing of the assertion in any answer or log."""

from __future__ import annotations

import logging

import httpx
import jwt
import pytest

from m2mauth.core.private_key_jwt import JWT_BEARER_ASSERTION_TYPE
from tests.assertions import assertion, claims_for, jwks_of, new_key, sign
from tests.http.conftest import ENV, Shim
from tests.http.test_other_endpoints import admin
from tests.http.test_token_endpoint import basic


def post_token(http: httpx.Client, client_assertion: str, **form: str) -> httpx.Response:
    return http.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER_ASSERTION_TYPE,
            "client_assertion": client_assertion,
            **form,
        },
    )


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "EdDSA"])
def test_a_partner_with_a_key_and_no_secret_gets_a_token(
    shim: Shim, http: httpx.Client, alg: str
) -> None:
    key = new_key(alg)
    partner = shim.keyed_partner(jwks_of(key), scopes=("invoices:read",))
    response = post_token(
        http, assertion(key, partner.client_id, shim.token_endpoint), scope="invoices:read"
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == partner.client_id
    assert claims["org_id"] == partner.org_id
    assert response.json()["scope"] == "invoices:read"


def test_every_failure_is_401_invalid_client_and_says_nothing_more(
    shim: Shim, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    key, stranger = new_key("ES256"), new_key("ES256")
    partner = shim.keyed_partner(jwks_of(key))
    secret_partner = shim.partner()
    good = claims_for(partner.client_id, shim.token_endpoint)
    replayed = sign(key, claims_for(partner.client_id, shim.token_endpoint))
    assert post_token(http, replayed).status_code == 200
    cases = {
        "replayed": replayed,
        "wrong aud": sign(key, {**good, "aud": "https://elsewhere.test/token"}),
        "expired": sign(key, {**good, "exp": good["iat"] - 600}),
        "missing exp": sign(key, {k: v for k, v in good.items() if k != "exp"}),
        "alg none": jwt.encode(good, "", algorithm="none"),
        "not our key": sign(stranger, good),
        "another client": sign(key, claims_for(secret_partner.client_id, shim.token_endpoint)),
    }
    with caplog.at_level(logging.INFO):
        for name, signed in cases.items():
            response = post_token(http, signed)
            assert response.status_code == 401, name
            assert response.json() == {
                "error": "invalid_client",
                "error_description": "client authentication failed",
            }, name
            # No Authorization header was used, so no Basic challenge (RFC 6749 5.2).
            assert "basic" not in response.headers.get("www-authenticate", "").lower()
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    for signed in cases.values():
        assert signed not in logged


def test_a_secret_for_a_keyed_application_is_refused(shim: Shim, http: httpx.Client) -> None:
    key = new_key()
    partner = shim.keyed_partner(jwks_of(key))
    _, secret = shim.container.applications.create_secret(ENV, partner.app_id, None)
    response = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers=basic(partner.client_id, secret),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("form", "with_basic", "mentions"),
    [
        ({"client_assertion_type": "urn:example:other"}, False, "client_assertion_type"),
        ({"client_assertion": ""}, False, "client_assertion"),
        ({"client_secret": "m2m_cs_x"}, False, "one client authentication method"),
        ({}, True, "one client authentication method"),
    ],
)
def test_a_malformed_assertion_request_is_400_invalid_request(
    shim: Shim, http: httpx.Client, form: dict[str, str], with_basic: bool, mentions: str
) -> None:
    key = new_key()
    partner = shim.keyed_partner(jwks_of(key))
    data = {
        "grant_type": "client_credentials",
        "client_id": partner.client_id,
        "client_assertion_type": JWT_BEARER_ASSERTION_TYPE,
        "client_assertion": assertion(key, partner.client_id, shim.token_endpoint),
        **form,
    }
    headers = basic(partner.client_id, "m2m_cs_x") if with_basic else {}
    response = http.post("/oauth2/token", data=data, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert mentions in response.json()["error_description"]


def test_a_keyed_partner_introspects_and_revokes_its_token_with_assertions(
    shim: Shim, http: httpx.Client
) -> None:
    """RFC 7662 section 2.1 and RFC 7009 section 2.1 callers authenticate like
    the token endpoint's: a fresh assertion per request (aud: the issuer)."""
    key = new_key()
    partner = shim.keyed_partner(jwks_of(key))
    token = post_token(http, assertion(key, partner.client_id, shim.token_endpoint)).json()[
        "access_token"
    ]

    def as_partner(path: str) -> httpx.Response:
        return http.post(
            path,
            data={
                "token": token,
                "client_assertion_type": JWT_BEARER_ASSERTION_TYPE,
                "client_assertion": assertion(key, partner.client_id, shim.issuer),
            },
        )

    introspection = as_partner("/oauth2/introspection")
    assert introspection.status_code == 200, introspection.text
    assert introspection.json()["active"] is True
    assert introspection.json()["org_id"] == partner.org_id
    assert as_partner("/oauth2/revoke").status_code == 200
    assert as_partner("/oauth2/introspection").json() == {"active": False}
    # Another keyed partner's view of that token: its own tokens only.
    other_key = new_key()
    other = shim.keyed_partner(jwks_of(other_key))
    seen = http.post(
        "/oauth2/introspection",
        data={
            "token": token,
            "client_assertion_type": JWT_BEARER_ASSERTION_TYPE,
            "client_assertion": assertion(other_key, other.client_id, shim.issuer),
        },
    )
    assert seen.json() == {"active": False}
    # An assertion and the admin key's Bearer header together: one method only.
    both = http.post(
        "/oauth2/introspection",
        data={
            "token": token,
            "client_assertion_type": JWT_BEARER_ASSERTION_TYPE,
            "client_assertion": assertion(key, partner.client_id, shim.issuer),
        },
        headers=admin(shim),
    )
    assert both.status_code == 400
