"""The ASGI middleware under a real uvicorn (port 0): Starlette and a bare ASGI app."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from m2mauth.verify import (
    HttpJwksSource,
    IntrospectionClient,
    JwksCache,
    MissingToken,
    TokenVerifier,
    current_token,
    require_scopes,
)
from m2mauth.verify.asgi import BearerAuthMiddleware, Message, Scope, scope_token
from tests.verify.support import (
    AUDIENCE,
    ISSUER,
    ORG_ID,
    OTHER_ORG_ID,
    FakeClock,
    LocalIssuer,
    SigningKey,
    http_call,
    mint,
    serve_asgi,
)


async def whoami(request: Request) -> Response:
    token = request.state.verified_token
    assert current_token() is token
    return JSONResponse({"org_id": token.org_id, "client_id": token.client_id})


def sync_whoami(request: Request) -> Response:
    # Starlette runs sync endpoints in a worker thread; the token must be visible there.
    return JSONResponse({"org_id": current_token().org_id})


@require_scopes("admin")
async def admin(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def org_projects(request: Request) -> Response:
    current_token().require_org(request.path_params["org_id"])
    return JSONResponse({"org_id": request.path_params["org_id"], "projects": []})


async def healthz(request: Request) -> Response:
    try:
        current_token()
    except MissingToken:
        return PlainTextResponse("ok")
    return PlainTextResponse("token leaked", status_code=500)


def starlette_app(verifier: TokenVerifier, **options: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/sync-whoami", sync_whoami),
            Route("/admin", admin),
            Route("/orgs/{org_id}/projects", org_projects),
            Route("/healthz", healthz),
        ],
        middleware=[
            Middleware(
                BearerAuthMiddleware,
                verifier=verifier,
                public_paths=["/healthz"],
                realm="probe",
                **options,
            )
        ],
    )


@pytest.fixture
def base_url(verifier: TokenVerifier) -> Iterator[str]:
    with serve_asgi(starlette_app(verifier)) as url:
        yield url


def test_a_valid_token_reaches_async_and_sync_endpoints(rsa_key: SigningKey, base_url: str) -> None:
    token = mint(rsa_key)
    reply = http_call(f"{base_url}/whoami", token=token)
    assert reply.status == 200
    assert reply.body["org_id"] == ORG_ID
    assert http_call(f"{base_url}/sync-whoami", token=token).body == {"org_id": ORG_ID}


def test_no_token_is_401_with_a_bare_challenge(base_url: str) -> None:
    reply = http_call(f"{base_url}/whoami")
    assert reply.status == 401
    # RFC 6750 section 3.1: no error code when the request carried no token.
    assert reply.headers["www-authenticate"] == 'Bearer realm="probe"'
    assert reply.headers["cache-control"] == "no-store"
    assert reply.body == {"error_description": "a bearer token is required"}


def test_an_invalid_token_is_401_invalid_token(
    rsa_key: SigningKey, attacker_key: SigningKey, base_url: str
) -> None:
    reply = http_call(f"{base_url}/whoami", token=mint(attacker_key, headers={"kid": rsa_key.kid}))
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == (
        'Bearer realm="probe", error="invalid_token", '
        'error_description="the token\'s signature is invalid"'
    )
    assert reply.body == {
        "error": "invalid_token",
        "error_description": "the token's signature is invalid",
    }


@pytest.mark.parametrize(
    "make_token",
    [
        lambda key: mint(key, exp=1, iat=0),
        lambda key: mint(key, headers={"typ": "JWT"}),
        lambda key: mint(key, iss=ISSUER[:-1]),
        lambda key: mint(key, headers={"kid": "unknown"}),
        lambda key: mint(key, headers={"crit": ["x"], "x": 1}),
        lambda key: mint(key, padding="A" * 8000),  # over 8 KiB, under uvicorn's header limit
    ],
    ids=["expired", "wrong-typ", "iss-prefix", "unknown-kid", "crit", "oversized"],
)
def test_bad_tokens_are_401(make_token: Any, rsa_key: SigningKey, base_url: str) -> None:
    reply = http_call(f"{base_url}/whoami", token=make_token(rsa_key))
    assert reply.status == 401
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]


def test_another_scheme_is_treated_as_no_token(rsa_key: SigningKey, base_url: str) -> None:
    reply = http_call(f"{base_url}/whoami", headers=[("Authorization", "Basic dXNlcjpwYXNz")])
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Bearer realm="probe"'


def test_two_authorization_headers_are_400_invalid_request(
    rsa_key: SigningKey, base_url: str
) -> None:
    url = urlparse(base_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    token = mint(rsa_key)
    connection.putrequest("GET", "/whoami")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 400
    assert 'error="invalid_request"' in (response.getheader("www-authenticate") or "")
    connection.close()


def test_require_scopes_on_an_endpoint_is_403_insufficient_scope(
    rsa_key: SigningKey, base_url: str
) -> None:
    reply = http_call(f"{base_url}/admin", token=mint(rsa_key, scope="projects:read"))
    assert reply.status == 403
    assert reply.headers["www-authenticate"] == (
        'Bearer realm="probe", error="insufficient_scope", '
        'error_description="the token lacks a required scope", scope="admin"'
    )
    assert http_call(f"{base_url}/admin", token=mint(rsa_key, scope="admin")).status == 200


def test_middleware_wide_scopes(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    with serve_asgi(starlette_app(verifier, required_scopes=["projects:read"])) as url:
        assert http_call(f"{url}/whoami", token=mint(rsa_key, scope="projects:read")).status == 200
        reply = http_call(f"{url}/whoami", token=mint(rsa_key, scope="other"))
        assert reply.status == 403
        assert 'scope="projects:read"' in reply.headers["www-authenticate"]


def test_another_organizations_resource_is_403(rsa_key: SigningKey, base_url: str) -> None:
    token = mint(rsa_key)
    assert http_call(f"{base_url}/orgs/{ORG_ID}/projects", token=token).status == 200
    reply = http_call(f"{base_url}/orgs/{OTHER_ORG_ID}/projects", token=token)
    assert reply.status == 403
    # RFC 6750 section 3.1: a valid token without the privilege is insufficient_scope.
    assert reply.body == {
        "error": "insufficient_scope",
        "error_description": "the token's organization may not access this resource",
    }
    assert reply.headers["www-authenticate"] == (
        'Bearer realm="probe", error="insufficient_scope", '
        'error_description="the token\'s organization may not access this resource"'
    )


def test_public_paths_need_no_token_and_see_none(rsa_key: SigningKey, base_url: str) -> None:
    assert http_call(f"{base_url}/healthz").status == 200
    assert http_call(f"{base_url}/healthz", token=mint(rsa_key)).status == 200


def test_unreachable_keys_are_503(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    issuer.jwks_status = 500
    cache = JwksCache(HttpJwksSource(f"{issuer_url}/jwks"), clock=clock)
    with serve_asgi(starlette_app(TokenVerifier(ISSUER, AUDIENCE, jwks=cache))) as url:
        reply = http_call(f"{url}/whoami", token=mint(rsa_key))
    assert reply.status == 503
    assert reply.headers["retry-after"] == "5"
    assert "www-authenticate" not in reply.headers


def test_introspection_sees_revocation(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, jwks_cache: JwksCache
) -> None:
    client = IntrospectionClient(f"{issuer_url}/introspect", bearer_token="adm_key")
    verifier = TokenVerifier(ISSUER, AUDIENCE, jwks=jwks_cache, introspection=client)
    live, revoked = mint(rsa_key), mint(rsa_key)
    issuer.introspection[live] = {"active": True}
    with serve_asgi(starlette_app(verifier, introspect=True)) as url:
        assert http_call(f"{url}/whoami", token=live).status == 200
        reply = http_call(f"{url}/whoami", token=revoked)
    assert reply.status == 401
    assert reply.body["error_description"] == "the token is not active"


# --- any ASGI app, driven directly ----------------------------------------------------


async def bare_app(scope: Scope, receive: Any, send: Any) -> None:
    token = scope_token(scope)
    body = json.dumps({"org_id": token.org_id, "ctx": current_token().org_id}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def drive(app: Any, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(token: str | None, state: dict[str, Any] | None = None) -> Scope:
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    scope: Scope = {"type": "http", "path": "/", "headers": headers}
    if state is not None:
        scope["state"] = state
    return scope


def test_a_bare_asgi_app_gets_the_token_in_scope_state(
    rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    shared_state = {"db": "pool"}  # lifespan state the server shares between requests
    app = BearerAuthMiddleware(bare_app, verifier)
    sent = drive(app, http_scope(mint(rsa_key), shared_state))
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"]) == {"org_id": ORG_ID, "ctx": ORG_ID}
    assert shared_state == {"db": "pool"}  # not mutated: no token leaks to the next request
    refused = drive(app, http_scope(None))
    assert refused[0]["status"] == 401


def test_websocket_handshakes_are_refused_with_1008(verifier: TokenVerifier) -> None:
    app = BearerAuthMiddleware(bare_app, verifier)
    sent = drive(app, {"type": "websocket", "path": "/ws", "headers": []})
    assert sent == [
        {"type": "websocket.close", "code": 1008, "reason": "a bearer token is required"}
    ]


def test_lifespan_passes_through(verifier: TokenVerifier) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    drive(BearerAuthMiddleware(app, verifier), {"type": "lifespan"})
    assert seen == ["lifespan"]


def test_a_token_error_after_the_response_started_is_not_swallowed(
    rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        current_token().require_scopes("admin")

    with pytest.raises(Exception, match="lacks a required scope"):
        drive(BearerAuthMiddleware(app, verifier), http_scope(mint(rsa_key)))
