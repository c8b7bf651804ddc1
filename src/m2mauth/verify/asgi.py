"""ASGI middleware: authenticates requests by m2mauth access token (Starlette or any ASGI app).

Pure ASGI, no framework import. The token comes from ``Authorization: Bearer``
(RFC 6750 section 2.1; the query and form-body methods of sections 2.2 and 2.3
are not accepted). A refused request gets, per RFC 6750 section 3:

* 401 with ``WWW-Authenticate: Bearer error="invalid_token"`` (no error code when
  there was no token at all, section 3.1),
* 400 ``error="invalid_request"`` for two Authorization headers,
* 403 ``error="insufficient_scope"`` for a valid token that lacks a scope (with
  ``scope="..."``) or reaches into another organization,
* 503 with ``Retry-After`` when keys or introspection are unreachable,

with a JSON body ``{"error", "error_description"}`` and ``Cache-Control: no-store``.

An accepted request runs with the VerifiedToken in ``scope["state"]["verified_token"]``
(Starlette: ``request.state.verified_token``) and in ``current_token()``. A TokenError
raised by the app before it starts its response (``require_scopes``,
``VerifiedToken.require_org``) is answered the same way. WebSocket handshakes are
authenticated too and refused with close code 1008 (policy violation).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from m2mauth.verify.bearer import bearer_token, www_authenticate
from m2mauth.verify.context import _current
from m2mauth.verify.errors import (
    AccessDenied,
    InvalidRequest,
    MissingToken,
    TokenError,
    VerifierUnavailable,
)
from m2mauth.verify.tokens import VerifiedToken
from m2mauth.verify.verifier import TokenVerifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATE_KEY = "verified_token"

# The one error table of this transport; first match wins.
_HTTP_STATUS: tuple[tuple[type[TokenError], int], ...] = (
    (VerifierUnavailable, 503),
    (AccessDenied, 403),
    (InvalidRequest, 400),
    (TokenError, 401),  # MissingToken, InvalidToken
)
_WEBSOCKET_POLICY_VIOLATION = 1008


def http_status(error: TokenError) -> int:
    """The HTTP status a refused request gets."""
    return next(status for kind, status in _HTTP_STATUS if isinstance(error, kind))


def scope_token(scope: Scope) -> VerifiedToken:
    """The VerifiedToken the middleware stored in ``scope``; MissingToken if none."""
    token = (scope.get("state") or {}).get(STATE_KEY)
    if not isinstance(token, VerifiedToken):
        raise MissingToken("a bearer token is required")
    return token


class BearerAuthMiddleware:
    """``Starlette(middleware=[Middleware(BearerAuthMiddleware, verifier=verifier)])``.

    ``public_paths``: exact paths served without a token (health checks);
    ``required_scopes``: scopes every protected request needs (per-route needs:
    ``require_scopes``); ``introspect``: also ask the issuer (revocation-aware).
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: TokenVerifier,
        *,
        public_paths: Collection[str] = (),
        required_scopes: Collection[str] = (),
        introspect: bool = False,
        realm: str | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.public_paths = frozenset(public_paths)
        self.required_scopes = tuple(required_scopes)
        self.introspect = introspect
        self.realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self.public_paths:
            await self.app(scope, receive, send)
            return
        try:
            token = await self._authenticate(scope)
        except TokenError as err:
            await self._refuse(scope, send, err)
            return

        # A copy: the server may share the state dict between requests (lifespan state).
        scope = {**scope, "state": {**(scope.get("state") or {}), STATE_KEY: token}}
        started = False

        async def send_and_track(message: Message) -> None:
            nonlocal started
            if message["type"] in ("http.response.start", "websocket.accept", "websocket.close"):
                started = True
            await send(message)

        reset = _current.set(token)
        try:
            await self.app(scope, receive, send_and_track)
        except TokenError as err:
            if started:
                raise
            await self._refuse(scope, send, err)
        finally:
            _current.reset(reset)

    async def _authenticate(self, scope: Scope) -> VerifiedToken:
        values = [
            value.decode("latin-1")
            for name, value in scope.get("headers") or ()
            if name.lower() == b"authorization"
        ]
        raw = bearer_token(values)
        if self.introspect:
            token = await self.verifier.averify_and_introspect(raw)
        else:
            token = await self.verifier.averify(raw)
        token.require_scopes(*self.required_scopes)
        return token

    async def _refuse(self, scope: Scope, send: Send, error: TokenError) -> None:
        if scope["type"] == "websocket":
            await send(
                {
                    "type": "websocket.close",
                    "code": _WEBSOCKET_POLICY_VIOLATION,
                    "reason": error.description,
                }
            )
            return
        body: dict[str, str] = {"error_description": error.description}
        if error.error_code is not None:
            body = {"error": error.error_code, **body}
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"cache-control", b"no-store"),
        ]
        challenge = www_authenticate(error, self.realm)
        if challenge is not None:
            headers.append((b"www-authenticate", challenge.encode()))
        if isinstance(error, VerifierUnavailable):
            headers.append((b"retry-after", b"5"))
        await send(
            {"type": "http.response.start", "status": http_status(error), "headers": headers}
        )
        await send({"type": "http.response.body", "body": payload})
