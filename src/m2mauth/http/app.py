"""The OAuth 2.0 HTTP endpoints (Starlette), over a :class:`TokenBackend`.

Paths are those of WorkOS Connect, so a client switches by base URL.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import anyio
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from m2mauth.client_address import Network
from m2mauth.core.echo import shown
from m2mauth.core.policy import TOKEN_ENDPOINT_PATH
from m2mauth.core.registry import SUPPORTED
from m2mauth.database_urls import STORE_TIMEOUT_SECONDS
from m2mauth.http import forms
from m2mauth.http.backend import TokenBackend
from m2mauth.http.errors import NO_STORE, OAuthError, invalid_request
from m2mauth.http.metrics import ShimMetrics
from m2mauth.http.openapi import openapi_document
from m2mauth.v1 import token_service_pb2 as pb

# RFC 6749 section 5.1: token responses "MUST include ... Cache-Control: no-store"
# and "Pragma: no-cache"; the same for anything carrying token data.
REALM = "m2mauth"
log = logging.getLogger("m2mauth.http")

Handler = Callable[[Request], Awaitable[Response]]


def _error_response(err: OAuthError, *, basic: bool = False, bearer: bool = False) -> Response:
    headers = dict(NO_STORE)
    if err.status == 401 and basic:
        # RFC 6749 section 5.2: 401 with WWW-Authenticate matching the scheme used.
        headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    elif err.status == 401 and bearer:
        headers["WWW-Authenticate"] = f'Bearer realm="{REALM}", error="invalid_token"'
    elif err.status == 503:
        headers["Retry-After"] = "1"
    if err.retry_after is not None:
        # RFC 6585 section 4: 429 says how long to wait.
        headers["Retry-After"] = str(err.retry_after)
    return JSONResponse(
        {"error": err.error, "error_description": err.description},
        status_code=err.status,
        headers=headers,
    )


class OAuthEndpoints:
    """The handlers; each parses, calls the backend once, and renders."""

    def __init__(
        self,
        backend: TokenBackend,
        issuer: str,
        metrics: ShimMetrics,
        trusted_proxies: Sequence[Network] = (),
        ready_timeout: float = STORE_TIMEOUT_SECONDS,
    ) -> None:
        self.backend = backend
        self.trusted_proxies = tuple(trusted_proxies)
        self.ready_timeout = ready_timeout
        self.issuer = issuer.rstrip("/")
        self._issuer_mismatch_logged = False
        self.metrics = metrics
        self.document = openapi_document(self.issuer)

    def observed(self, name: str, handler: Handler) -> Handler:
        """Count and time a handler, and render its OAuthError as RFC 6749 JSON."""

        async def wrapped(request: Request) -> Response:
            started = time.perf_counter()
            outcome = "ok"
            try:
                response = await handler(request)
            except OAuthError as err:
                outcome = err.error
                auth = request.headers.get("authorization", "").lower()
                response = _error_response(
                    err, basic=auth.startswith("basic"), bearer=auth.startswith("bearer")
                )
            self.metrics.observe(name, outcome, time.perf_counter() - started)
            return response

        return wrapped

    async def token(self, request: Request) -> Response:
        form = await forms.read_form(request)
        who = forms.caller(request, form, allow_admin_key=False)
        if "resource" in form and "audience" in form and form["resource"] != form["audience"]:
            raise invalid_request("send the audience as resource or audience, not both")
        reply = await self.backend.issue_token(
            pb.IssueTokenRequest(
                grant_type=form.get("grant_type", ""),
                client_id=who.client_id,
                client_secret=who.client_secret,
                client_assertion_type=who.client_assertion_type,
                client_assertion=who.client_assertion,
                scope=form.get("scope", ""),
                audience=form.get("resource", form.get("audience", "")),
            ),
            source=self.source(request),
        )
        self.metrics.token_issued(reply.access_token)
        body: dict[str, Any] = {
            "access_token": reply.access_token,
            "token_type": reply.token_type,
            "expires_in": reply.expires_in,
        }
        if reply.scope:
            body["scope"] = reply.scope
        return JSONResponse(body, headers=NO_STORE)

    async def introspection(self, request: Request) -> Response:
        form = await forms.read_form(request)
        who = forms.caller(request, form, allow_admin_key=True)
        reply = await self.backend.introspect(
            pb.IntrospectRequest(
                token=_token_param(form),
                token_type_hint=form.get("token_type_hint", ""),
                client_id=who.client_id,
                client_secret=who.client_secret,
                client_assertion_type=who.client_assertion_type,
                client_assertion=who.client_assertion,
            ),
            who.admin_key,
            source=self.source(request),
        )
        return JSONResponse(introspection_json(reply), headers=NO_STORE)

    async def revoke(self, request: Request) -> Response:
        form = await forms.read_form(request)
        who = forms.caller(request, form, allow_admin_key=True)
        await self.backend.revoke_token(
            pb.RevokeTokenRequest(
                token=_token_param(form),
                token_type_hint=form.get("token_type_hint", ""),
                client_id=who.client_id,
                client_secret=who.client_secret,
                client_assertion_type=who.client_assertion_type,
                client_assertion=who.client_assertion,
            ),
            who.admin_key,
            source=self.source(request),
        )
        # RFC 7009 section 2.2: 200, and the client ignores the body.
        return Response(status_code=200, headers=NO_STORE)

    async def jwks(self, request: Request) -> Response:
        reply = await self.backend.get_jwks()
        keys = [json_format.MessageToDict(k, preserving_proto_field_name=True) for k in reply.keys]
        return JSONResponse(
            {"keys": keys},
            headers={"Cache-Control": f"public, max-age={reply.max_age_seconds}"},
        )

    async def metadata(self, request: Request) -> Response:
        reply = await self.backend.get_jwks()
        base = self.issuer
        # The tokens' iss, from the server that signs them: an edge whose own
        # --issuer differs cannot advertise another (RFC 8414 section 3.3 then makes
        # clients refuse the document, rather than tokens later fail to verify).
        issuer = reply.issuer or base
        if issuer.rstrip("/") != base and not self._issuer_mismatch_logged:
            self._issuer_mismatch_logged = True
            log.warning(
                "this server's --issuer is %s but the tokens it hands out are issued by %s: "
                "RFC 8414 clients will refuse its metadata; give it --issuer %s",
                base,
                issuer,
                issuer,
            )
        methods = SUPPORTED.client_auth_methods
        algorithms = list(SUPPORTED.assertion_signing_algorithms)
        # RFC 8414 section 2: exactly what this server supports, nothing more
        # (the core's registry says what that is).
        document = {
            "issuer": issuer,
            "token_endpoint": f"{base}{TOKEN_ENDPOINT_PATH}",
            "jwks_uri": f"{base}/oauth2/jwks",
            "introspection_endpoint": f"{base}/oauth2/introspection",
            "revocation_endpoint": f"{base}/oauth2/revoke",
            "grant_types_supported": list(SUPPORTED.grant_types),
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": list(methods),
            # RFC 8414 section 2: the JWS algorithms of private_key_jwt assertions,
            # which "MUST be present" wherever private_key_jwt is listed.
            "token_endpoint_auth_signing_alg_values_supported": algorithms,
            "introspection_endpoint_auth_methods_supported": [*methods, "bearer"],
            "introspection_endpoint_auth_signing_alg_values_supported": algorithms,
            "revocation_endpoint_auth_methods_supported": [*methods, "bearer"],
            "revocation_endpoint_auth_signing_alg_values_supported": algorithms,
            "access_token_signing_alg_values_supported": sorted({k.alg for k in reply.keys}),
        }
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})

    def source(self, request: Request) -> str:
        return forms.request_source(request, self.trusted_proxies)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(self, request: Request) -> Response:
        # A probe with a deadline: a store that does not answer in time is as
        # unready as one that refuses, and the prober (a load balancer) must get
        # its answer before its own timeout, not hang with the database.
        ready = False
        with anyio.move_on_after(self.ready_timeout):
            ready = await self.backend.ready()
        if ready:
            return PlainTextResponse("ready\n")
        return PlainTextResponse("store unavailable\n", status_code=503)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.document)


def _token_param(form: dict[str, str]) -> str:
    if "token" not in form:
        raise invalid_request("the token parameter is required")
    return form["token"]


def create_http_app(
    backend: TokenBackend,
    issuer: str,
    metrics: ShimMetrics | None = None,
    *,
    trusted_proxies: Sequence[Network] = (),
    ready_timeout: float = STORE_TIMEOUT_SECONDS,
    console: Mount | None = None,
) -> Starlette:
    """``ready_timeout``: /readyz answers 503 when the store has not answered
    within this many seconds. ``console``: the web console's mount, when it is on
    (m2mauth.http.console); it renders its own errors as pages."""
    e = OAuthEndpoints(backend, issuer, metrics or ShimMetrics(), trusted_proxies, ready_timeout)
    routes: list[BaseRoute] = [
        Route(TOKEN_ENDPOINT_PATH, e.observed("token", e.token), methods=["POST"]),
        Route(
            "/oauth2/introspection",
            e.observed("introspection", e.introspection),
            methods=["POST"],
        ),
        Route("/oauth2/revoke", e.observed("revoke", e.revoke), methods=["POST"]),
        Route("/oauth2/jwks", e.observed("jwks", e.jwks), methods=["GET"]),
        Route("/.well-known/jwks.json", e.observed("jwks", e.jwks), methods=["GET"]),
        Route(
            "/.well-known/oauth-authorization-server",
            e.observed("metadata", e.metadata),
            methods=["GET"],
        ),
        Route("/healthz", e.healthz, methods=["GET"]),
        Route("/readyz", e.readyz, methods=["GET"]),
        Route("/openapi.json", e.openapi, methods=["GET"]),
    ]
    if console is not None:
        routes.append(console)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.close()

    return Starlette(
        routes=routes,
        exception_handlers={
            405: _method_not_allowed,
            404: _not_found,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )


def introspection_json(reply: pb.IntrospectResponse) -> dict[str, Any]:
    """RFC 7662 section 2.2. An inactive token is exactly {"active": false}."""
    if not reply.active:
        return {"active": False}
    body: dict[str, Any] = {
        "active": True,
        "scope": reply.scope,
        "client_id": reply.client_id,
        "token_type": reply.token_type,
        "exp": reply.exp,
        "iat": reply.iat,
        "sub": reply.sub,
        "aud": reply.aud[0] if len(reply.aud) == 1 else list(reply.aud),
        "iss": reply.iss,
        "jti": reply.jti,
        "org_id": reply.org_id,
    }
    return body


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    allow = getattr(exc, "headers", None) or {}
    return JSONResponse(
        {"error": "invalid_request", "error_description": f"{request.method} is not allowed here"},
        status_code=405,
        headers={**allow, **NO_STORE},
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        # The path is the caller's input: echoed only if it cannot be a secret.
        {"error": "not_found", "error_description": f"no endpoint at {shown(request.url.path)}"},
        status_code=404,
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    # Our bug: logged with its traceback here, never sent to the caller.
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": "server_error", "error_description": "internal error"},
        status_code=500,
        headers=NO_STORE,
    )
