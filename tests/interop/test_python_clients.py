"""Python OAuth client libraries obtain, introspect and revoke tokens from the shim.

authlib (over requests and over httpx) and requests-oauthlib build their own
requests: their quirks, not ours, decide what goes on the wire. Each test also
records what the library actually sent, so a library that silently fell back
to another client authentication method fails the test instead of passing it.
"""

from __future__ import annotations

import asyncio
import base64
import warnings
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import httpx
import jwt
import pytest
from authlib.integrations.requests_client import (  # type: ignore[import-untyped]
    OAuth2Session as AuthlibSession,
)
from authlib.oauth2.rfc7523 import PrivateKeyJWT  # type: ignore[import-untyped]
from oauthlib.oauth2 import BackendApplicationClient  # type: ignore[import-untyped]
from requests_oauthlib import OAuth2Session as OAuthlibSession  # type: ignore[import-untyped]

from m2mauth.core.private_key_jwt import JWT_BEARER_ASSERTION_TYPE
from tests.assertions import ClientKey, jwks_of, new_key
from tests.http.conftest import Partner, Shim
from tests.interop.conftest import verify_access_token

with warnings.catch_warnings():
    # authlib 1.9 prefers the httpx2 package and warns when it falls back to httpx,
    # which is what we pin (and what its users mostly have): still supported, so
    # the warning is noise in every run. Its removal would fail this import, loudly.
    warnings.filterwarnings(
        "ignore", message="The httpx module is deprecated", category=DeprecationWarning
    )
    from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
        AsyncOAuth2Client,
    )

AUTH_METHODS = ("client_secret_basic", "client_secret_post")
SCOPES = ("invoices:read", "invoices:write")


def server_metadata(shim: Shim) -> dict[str, Any]:
    """RFC 8414 metadata: clients take endpoints from it, never from our path constants."""
    response = httpx.get(f"{shim.base_url}/.well-known/oauth-authorization-server", timeout=10)
    assert response.status_code == 200, response.text
    metadata: dict[str, Any] = response.json()
    assert metadata["issuer"] == shim.issuer
    return metadata


def assert_client_auth(method: str, headers: dict[str, str], body: str, partner: Partner) -> None:
    """The request authenticated with ``method`` and only with it (RFC 6749 section 2.3)."""
    form = parse_qs(body)
    authorization = headers.get("authorization", "")
    if method == "client_secret_basic":
        # RFC 6749 section 2.3.1: Basic over the form-urlencoded id and secret.
        scheme, _, value = authorization.partition(" ")
        assert scheme.lower() == "basic", headers
        client_id, _, secret = base64.b64decode(value).decode().partition(":")
        assert (unquote_plus(client_id), unquote_plus(secret)) == (
            partner.client_id,
            partner.client_secret,
        )
        assert "client_secret" not in form, form
    else:
        assert authorization == "", headers
        assert form["client_id"] == [partner.client_id], form
        assert form["client_secret"] == [partner.client_secret], form


# --- authlib over requests ----------------------------------------------------------


@pytest.mark.parametrize("method", AUTH_METHODS)
def test_authlib_requests_session(shim: Shim, method: str) -> None:
    partner = shim.partner(scopes=SCOPES)
    metadata = server_metadata(shim)
    assert method in metadata["token_endpoint_auth_methods_supported"]
    sent: list[tuple[str, dict[str, str], str]] = []

    def record(response: Any, *args: object, **kwargs: object) -> None:
        request = response.request
        body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
        sent.append((request.url, {k.lower(): v for k, v in request.headers.items()}, body))

    with AuthlibSession(
        partner.client_id,
        partner.client_secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        scope="invoices:read",
    ) as session:
        session.hooks["response"].append(record)
        token = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")

        assert sent[-1][0] == metadata["token_endpoint"]
        assert_client_auth(method, sent[-1][1], sent[-1][2], partner)
        assert token["token_type"] == "Bearer"
        assert token["scope"] == "invoices:read"
        assert token["expires_in"] > 0
        claims = verify_access_token(shim, token["access_token"], partner.org_id, partner.client_id)
        assert claims["scope"] == "invoices:read"

        # RFC 7662 section 2.1 and RFC 7009 section 2.1 with the same client authentication.
        access_token = token["access_token"]
        introspection = session.introspect_token(
            metadata["introspection_endpoint"], token=access_token
        )
        assert introspection.status_code == 200, introspection.text
        assert_client_auth(method, sent[-1][1], sent[-1][2], partner)
        body = introspection.json()
        assert body["active"] is True
        assert (body["org_id"], body["jti"]) == (partner.org_id, claims["jti"])

        revocation = session.revoke_token(metadata["revocation_endpoint"], token=access_token)
        assert revocation.status_code == 200, revocation.text
        assert_client_auth(method, sent[-1][1], sent[-1][2], partner)
        after = session.introspect_token(metadata["introspection_endpoint"], token=access_token)
        assert after.json() == {"active": False}


# --- authlib over httpx (asyncio) ------------------------------------------------------


@pytest.mark.parametrize("method", AUTH_METHODS)
def test_authlib_async_httpx_client(shim: Shim, method: str) -> None:
    partner = shim.partner(scopes=SCOPES)
    metadata = server_metadata(shim)
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        # httpx runs request hooks after the auth flow: this is what goes on the wire.
        sent.append(request)

    async def fetch() -> dict[str, Any]:
        async with AsyncOAuth2Client(
            partner.client_id,
            partner.client_secret,
            token_endpoint_auth_method=method,
            scope="invoices:write",
            event_hooks={"request": [record]},
            timeout=10,
        ) as client:
            token: dict[str, Any] = await client.fetch_token(
                metadata["token_endpoint"], grant_type="client_credentials"
            )
            return token

    token = asyncio.run(fetch())

    assert len(sent) == 1
    request = sent[0]
    assert str(request.url) == metadata["token_endpoint"]
    media_type = request.headers["content-type"].split(";")[0].strip()
    assert media_type == "application/x-www-form-urlencoded"
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert_client_auth(method, headers, request.content.decode(), partner)
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "invoices:write"
    claims = verify_access_token(shim, token["access_token"], partner.org_id, partner.client_id)
    assert claims["scope"] == "invoices:write"


# --- requests-oauthlib -----------------------------------------------------------------


def test_requests_oauthlib_backend_application_client(
    shim: Shim, monkeypatch: pytest.MonkeyPatch
) -> None:
    # oauthlib refuses http:// (RFC 6749 section 3.2 requires TLS); the test server
    # is plain HTTP on loopback, so allow it for this test only.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    partner = shim.partner(scopes=SCOPES)
    metadata = server_metadata(shim)
    sent: list[dict[str, str]] = []

    def record(response: Any, *args: object, **kwargs: object) -> None:
        sent.append({k.lower(): v for k, v in response.request.headers.items()})

    session = OAuthlibSession(client=BackendApplicationClient(client_id=partner.client_id))
    session.hooks["response"].append(record)
    with session:
        token = session.fetch_token(
            token_url=metadata["token_endpoint"],
            client_id=partner.client_id,
            client_secret=partner.client_secret,
        )

    # requests-oauthlib defaults to HTTP Basic (client_secret_basic).
    assert sent[-1]["authorization"].startswith("Basic ")
    assert token["token_type"] == "Bearer"
    # No scope asked: every scope of the application (RFC 6749 section 3.3).
    assert set(token["scope"]) == set(SCOPES)
    claims = verify_access_token(shim, token["access_token"], partner.org_id, partner.client_id)
    assert set(claims["scope"].split()) == set(SCOPES)


# --- authlib's own private_key_jwt (RFC 7523) ------------------------------------------


def _authlib_key(key: ClientKey) -> Any:
    """The key as authlib's PrivateKeyJWT takes it (a joserfc key object)."""
    from joserfc.jwk import ECKey, RSAKey  # noqa: PLC0415 - authlib's own dependency

    kind = RSAKey if key.alg == "RS256" else ECKey
    return kind.import_key(key.private_pem())


def _assert_private_key_jwt(body: str, headers: dict[str, str], partner: Partner) -> dict[str, Any]:
    """What authlib sent: an RFC 7523 assertion in the body, no secret, no Basic."""
    form = parse_qs(body)
    assert "authorization" not in headers, headers
    assert "client_secret" not in form, form
    assert form["client_assertion_type"] == [JWT_BEARER_ASSERTION_TYPE], form
    header = jwt.get_unverified_header(form["client_assertion"][0])
    claims: dict[str, Any] = jwt.decode(
        form["client_assertion"][0], options={"verify_signature": False}
    )
    assert (claims["iss"], claims["sub"]) == (partner.client_id, partner.client_id)
    return {"header": header, "claims": claims}


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_authlib_private_key_jwt_with_requests(shim: Shim, alg: str) -> None:
    key = new_key(alg)
    partner = shim.keyed_partner(jwks_of(key), scopes=SCOPES)
    metadata = server_metadata(shim)
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert alg in metadata["token_endpoint_auth_signing_alg_values_supported"]
    sent: list[tuple[dict[str, str], str]] = []

    def record(response: Any, *args: object, **kwargs: object) -> None:
        request = response.request
        body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
        sent.append(({k.lower(): v for k, v in request.headers.items()}, body))

    with AuthlibSession(
        partner.client_id,
        _authlib_key(key),
        token_endpoint_auth_method=PrivateKeyJWT(
            metadata["token_endpoint"], alg=alg, headers={"kid": key.kid}
        ),
        scope="invoices:read",
    ) as session:
        session.hooks["response"].append(record)
        for _ in range(2):  # a new assertion (jti) each time: no replay
            token = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
            assert token["token_type"] == "Bearer"
            claims = verify_access_token(
                shim, token["access_token"], partner.org_id, partner.client_id
            )
            assert claims["scope"] == "invoices:read"
    first, second = (_assert_private_key_jwt(body, h, partner) for h, body in sent)
    assert first["header"]["alg"] == alg
    assert first["claims"]["aud"] == metadata["token_endpoint"]
    assert first["claims"]["jti"] != second["claims"]["jti"]


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_authlib_private_key_jwt_with_async_httpx(shim: Shim, alg: str) -> None:
    key = new_key(alg)
    partner = shim.keyed_partner(jwks_of(key), scopes=SCOPES)
    metadata = server_metadata(shim)
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    async def fetch() -> dict[str, Any]:
        async with AsyncOAuth2Client(
            partner.client_id,
            _authlib_key(key),
            token_endpoint_auth_method=PrivateKeyJWT(
                metadata["token_endpoint"], alg=alg, headers={"kid": key.kid}
            ),
            scope="invoices:write",
            event_hooks={"request": [record]},
            timeout=10,
        ) as client:
            token: dict[str, Any] = await client.fetch_token(
                metadata["token_endpoint"], grant_type="client_credentials"
            )
            return token

    token = asyncio.run(fetch())
    assert len(sent) == 1
    headers = {k.lower(): v for k, v in sent[0].headers.items()}
    assert (
        _assert_private_key_jwt(sent[0].content.decode(), headers, partner)["header"]["alg"] == alg
    )
    claims = verify_access_token(shim, token["access_token"], partner.org_id, partner.client_id)
    assert claims["scope"] == "invoices:write"
