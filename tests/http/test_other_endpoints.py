"""Introspection, revocation, JWKS, metadata, health, metrics and the OpenAPI document."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt
import pytest

from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.http.conftest import BACKENDS, Partner, Shim, running_shim
from tests.http.test_token_endpoint import basic, error_of
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_for


def token_for(http: httpx.Client, partner: Partner, **form: str) -> str:
    response = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", **form},
        headers=basic(partner.client_id, partner.client_secret),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def admin(shim: Shim) -> dict[str, str]:
    return {"authorization": f"Bearer {shim.admin_key}"}


# --- introspection (RFC 7662) -------------------------------------------------


def test_introspection_of_an_active_token(shim: Shim, http: httpx.Client, partner: Partner) -> None:
    token = token_for(http, partner, scope="invoices:read")
    for headers, data in (
        (basic(partner.client_id, partner.client_secret), {"token": token}),
        (
            {},
            {
                "token": token,
                "client_id": partner.client_id,
                "client_secret": partner.client_secret,
            },
        ),
        (admin(shim), {"token": token, "token_type_hint": "access_token"}),
    ):
        response = http.post("/oauth2/introspection", data=data, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        claims = jwt.decode(token, options={"verify_signature": False})
        assert body["active"] is True
        assert body["scope"] == "invoices:read"
        assert body["client_id"] == partner.client_id
        assert body["org_id"] == partner.org_id
        assert body["token_type"] == "Bearer"
        assert (body["exp"], body["iat"], body["jti"], body["iss"], body["sub"]) == (
            claims["exp"],
            claims["iat"],
            claims["jti"],
            claims["iss"],
            claims["sub"],
        )


def test_introspection_of_garbage_is_exactly_inactive(
    shim: Shim, http: httpx.Client, partner: Partner
) -> None:
    for token in ("garbage", "a.b.c", "x" * 5000):
        response = http.post("/oauth2/introspection", data={"token": token}, headers=admin(shim))
        assert response.status_code == 200
        assert response.json() == {"active": False}


def test_another_clients_token_is_inactive_to_a_client(
    shim: Shim, http: httpx.Client, partner: Partner
) -> None:
    other = shim.partner()
    token = token_for(http, partner)
    response = http.post(
        "/oauth2/introspection",
        data={"token": token},
        headers=basic(other.client_id, other.client_secret),
    )
    # RFC 7662 section 2.2 / 4: nothing about a token the caller may not see.
    assert response.json() == {"active": False}


def test_introspection_needs_a_caller(shim: Shim, http: httpx.Client, partner: Partner) -> None:
    token = token_for(http, partner)
    assert error_of(http.post("/oauth2/introspection", data={"token": token})) == (
        401,
        "invalid_client",
    )
    response = http.post(
        "/oauth2/introspection",
        data={"token": token},
        headers={"authorization": "Bearer m2m_ak_wrong"},
    )
    assert error_of(response) == (401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Bearer ")
    response = http.post(
        "/oauth2/introspection",
        data={"token": token},
        headers=basic(partner.client_id, "wrong"),
    )
    assert error_of(response) == (401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="m2mauth"'
    # The token parameter is required.
    assert error_of(http.post("/oauth2/introspection", data={}, headers=admin(shim))) == (
        400,
        "invalid_request",
    )
    # A Bearer key and client credentials at once: two methods.
    response = http.post(
        "/oauth2/introspection",
        data={"token": token, "client_id": partner.client_id, "client_secret": "x"},
        headers=admin(shim),
    )
    assert error_of(response) == (400, "invalid_request")


# --- revocation (RFC 7009) ----------------------------------------------------


def test_revoked_token_introspects_inactive(
    shim: Shim, http: httpx.Client, partner: Partner
) -> None:
    token = token_for(http, partner)
    auth = basic(partner.client_id, partner.client_secret)
    response = http.post("/oauth2/revoke", data={"token": token}, headers=auth)
    assert response.status_code == 200
    assert response.content == b""
    response = http.post("/oauth2/introspection", data={"token": token}, headers=admin(shim))
    assert response.json() == {"active": False}
    # Revoking again, or revoking garbage, is still 200 (RFC 7009 section 2.2).
    assert http.post("/oauth2/revoke", data={"token": token}, headers=auth).status_code == 200
    assert http.post("/oauth2/revoke", data={"token": "junk"}, headers=auth).status_code == 200


def test_admin_can_revoke_and_other_clients_cannot(
    shim: Shim, http: httpx.Client, partner: Partner
) -> None:
    other = shim.partner()
    token = token_for(http, partner)
    response = http.post(
        "/oauth2/revoke", data={"token": token}, headers=basic(other.client_id, other.client_secret)
    )
    assert error_of(response) == (400, "unauthorized_client")
    still = http.post("/oauth2/introspection", data={"token": token}, headers=admin(shim))
    assert still.json()["active"] is True
    assert (
        http.post("/oauth2/revoke", data={"token": token}, headers=admin(shim)).status_code == 200
    )
    gone = http.post("/oauth2/introspection", data={"token": token}, headers=admin(shim))
    assert gone.json() == {"active": False}


def test_revocation_needs_a_caller_and_a_token(
    shim: Shim, http: httpx.Client, partner: Partner
) -> None:
    assert error_of(http.post("/oauth2/revoke", data={"token": "x"})) == (401, "invalid_client")
    assert error_of(http.post("/oauth2/revoke", data={}, headers=admin(shim))) == (
        400,
        "invalid_request",
    )


# --- JWKS and metadata --------------------------------------------------------


def test_jwks_verifies_issued_tokens_on_both_paths(
    shim: Shim, http: httpx.Client, partner: Partner
) -> None:
    token = token_for(http, partner)
    kid = jwt.get_unverified_header(token)["kid"]
    for path in ("/oauth2/jwks", "/.well-known/jwks.json"):
        response = http.get(path)
        assert response.status_code == 200
        max_age = int(response.headers["cache-control"].split("max-age=")[1])
        # A cache may hold the document this long: it must not outlive the
        # pre-publication window in which a new key is announced before use.
        assert 0 < max_age <= shim.container.settings.jwks_max_age_seconds
        keys = response.json()["keys"]
        assert all("d" not in k for k in keys), "a private key part was published"
        key = jwt.PyJWKSet.from_dict(response.json())[kid]
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm_name],
            audience=shim.issuer,
            issuer=shim.issuer,
        )
        assert claims["org_id"] == partner.org_id


def test_metadata_lists_exactly_what_is_supported(shim: Shim, http: httpx.Client) -> None:
    response = http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    doc = response.json()
    base = shim.issuer
    assert doc["issuer"] == base
    assert doc["token_endpoint"] == f"{base}/oauth2/token"
    assert doc["jwks_uri"] == f"{base}/oauth2/jwks"
    assert doc["introspection_endpoint"] == f"{base}/oauth2/introspection"
    assert doc["revocation_endpoint"] == f"{base}/oauth2/revoke"
    assert doc["grant_types_supported"] == ["client_credentials"]
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]
    # RFC 8414 section 2: required when private_key_jwt is listed; never none or HMAC.
    assert doc["token_endpoint_auth_signing_alg_values_supported"] == [
        "RS256",
        "PS256",
        "ES256",
        "EdDSA",
    ]
    for endpoint in ("introspection", "revocation"):
        assert doc[f"{endpoint}_endpoint_auth_methods_supported"] == [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "bearer",
        ]
        assert (
            doc[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]
            == doc["token_endpoint_auth_signing_alg_values_supported"]
        )
    assert doc["access_token_signing_alg_values_supported"] == ["ES256"]
    # Every advertised endpoint answers here.
    for key in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
        path = urlsplit(doc[key]).path
        assert http.post(path, data={}).status_code != 404


def test_health_ready_and_metrics(shim: Shim, http: httpx.Client, partner: Partner) -> None:
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    token_for(http, partner)
    http.post("/oauth2/token", data={"grant_type": "client_credentials"})
    # Not on the OAuth port: the metrics listener is the operator's (tests/e2e/test_tls.py).
    assert http.get("/metrics").status_code == 404
    text = shim.metrics.render().decode()
    assert 'm2mauth_http_requests_total{endpoint="token",outcome="ok"} 1.0' in text
    assert 'm2mauth_http_requests_total{endpoint="token",outcome="invalid_client"} 1.0' in text
    # One series whatever the number of organizations, unless asked for per-org labels.
    assert "m2mauth_tokens_issued_total 1.0" in text
    assert partner.org_id not in text
    assert 'm2mauth_http_request_duration_seconds_count{endpoint="token"} 2.0' in text


def test_metrics_by_organization_when_asked(sqlite_url: str) -> None:
    migrate(sqlite_url)
    store = SqlStore(sqlite_url)
    try:
        with running_shim(store, "in_process", metrics_org_labels=True) as shim:
            partner = shim.partner()
            with shim.client() as http:
                token_for(http, partner)
            text = shim.metrics.render().decode()
            assert f'm2mauth_tokens_issued_total{{org_id="{partner.org_id}"}} 1.0' in text
    finally:
        store.close()


def test_openapi_document_matches_the_routes(shim: Shim, http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    routes = {
        "/oauth2/token": {"post"},
        "/oauth2/introspection": {"post"},
        "/oauth2/revoke": {"post"},
        "/oauth2/jwks": {"get"},
        "/.well-known/jwks.json": {"get"},
        "/.well-known/oauth-authorization-server": {"get"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/openapi.json": {"get"},
    }
    assert {path: set(ops) for path, ops in doc["paths"].items()} == routes
    # Every documented operation exists with that method (not 404/405).
    for path, ops in routes.items():
        for op in ops:
            response = http.request(op.upper(), path)
            assert response.status_code not in (404, 405), (op, path)


# --- the store is down: 503, never invalid_client -------------------------------


@pytest.fixture(params=BACKENDS)
def proxied_shim(
    request: pytest.FixtureRequest, postgres_url: str
) -> Iterator[tuple[Shim, TcpProxy]]:
    migrate(postgres_url)
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    store = SqlStore(urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}")))
    try:
        with running_shim(store, request.param) as shim:
            yield shim, proxy
    finally:
        proxy.cut()
        store.close()


def test_store_outage_is_503_temporarily_unavailable(
    proxied_shim: tuple[Shim, TcpProxy],
) -> None:
    shim, proxy = proxied_shim
    partner = shim.partner()
    with shim.client() as http:
        token = token_for(http, partner)
        # A client never seen by this process: its lookup must reach the store.
        fresh = shim.partner()
        proxy.cut()
        response = http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers=basic(fresh.client_id, fresh.client_secret),
        )
        assert error_of(response) == (503, "temporarily_unavailable")
        assert response.headers["retry-after"]
        response = http.post("/oauth2/introspection", data={"token": token}, headers=admin(shim))
        assert error_of(response) == (503, "temporarily_unavailable")
        response = http.post("/oauth2/revoke", data={"token": token}, headers=admin(shim))
        assert error_of(response) == (503, "temporarily_unavailable")
        assert wait_for(lambda: http.get("/readyz").status_code == 503)
        assert http.get("/healthz").status_code == 200

        proxy.restore()
        assert wait_for(lambda: http.get("/readyz").status_code == 200)
        assert token_for(http, fresh)


def test_a_secret_is_never_echoed(http: httpx.Client, partner: Partner) -> None:
    marker = secrets.token_hex(8)
    response = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers=basic(partner.client_id, f"{partner.client_secret}{marker}"),
    )
    assert response.status_code == 401
    assert marker not in response.text
