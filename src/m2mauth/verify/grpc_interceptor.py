"""gRPC server interceptors that authenticate calls with m2mauth access tokens (sync and aio).

The token comes from the ``authorization: Bearer <token>`` metadata entry (the
gRPC form of RFC 6750 section 2.1). A refused call ends with UNAUTHENTICATED
(no, bad or expired token), PERMISSION_DENIED (valid token, missing scope or
another organization's resource) or UNAVAILABLE (keys or introspection
unreachable), a caller-safe message, and a ``www-authenticate`` trailing
metadata entry holding the RFC 6750 section 3 challenge.

Verification runs inside the wrapped handler, not in ``intercept_service``: the
sync server calls interceptors on its single polling thread, where a JWKS fetch
would stall every call, and the handler's thread is where the token must be
visible. The sync interceptor runs the handler (and each step of a streamed
response) inside a copy of the context holding the token, so ``current_token()``
works in the server's thread pool and never leaks into the next call run by
that thread (grpcio 1.85 also runs each call in a fresh context; the copy keeps
this true whatever the version). The aio interceptor sets it in the call's own task.

Handlers raising a TokenError (``require_scopes``, ``VerifiedToken.require_org``)
are answered the same way as a refused token.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from typing import Any, NoReturn, cast

import grpc
import grpc.aio

from m2mauth.verify.bearer import bearer_token, www_authenticate
from m2mauth.verify.context import _current, set_current_token
from m2mauth.verify.errors import AccessDenied, TokenError, VerifierUnavailable
from m2mauth.verify.tokens import VerifiedToken
from m2mauth.verify.verifier import TokenVerifier

# The one error table of this transport; first match wins.
_GRPC_CODES: tuple[tuple[type[TokenError], grpc.StatusCode], ...] = (
    (VerifierUnavailable, grpc.StatusCode.UNAVAILABLE),
    (AccessDenied, grpc.StatusCode.PERMISSION_DENIED),
    (TokenError, grpc.StatusCode.UNAUTHENTICATED),  # MissingToken, InvalidRequest, InvalidToken
)


def grpc_status_code(error: TokenError) -> grpc.StatusCode:
    """The status code a refused call ends with."""
    return next(code for kind, code in _GRPC_CODES if isinstance(error, kind))


class _Policy:
    """Which methods are protected and with which scopes; shared by both interceptors."""

    def __init__(
        self,
        verifier: TokenVerifier,
        methods: Collection[str] | None,
        public_methods: Collection[str],
        required_scopes: Mapping[str, Collection[str]] | None,
        introspect: bool,
        realm: str | None,
    ) -> None:
        self.verifier = verifier
        self.methods = None if methods is None else frozenset(methods)
        self.public_methods = frozenset(public_methods)
        self.required_scopes = {m: tuple(s) for m, s in (required_scopes or {}).items()}
        self.introspect = introspect
        self.realm = realm
        for method in [*(self.methods or ()), *self.public_methods, *self.required_scopes]:
            if not method.startswith("/") or method.count("/") != 2:
                raise ValueError(f"not a full method name like /pkg.Service/Method: {method!r}")
        for method in self.required_scopes:
            if not self.protects(method):
                raise ValueError(f"scopes are required for {method}, which is not protected")

    def protects(self, method: str) -> bool:
        if method in self.public_methods:
            return False
        return self.methods is None or method in self.methods

    def authorization(self, context: Any) -> str:
        metadata = context.invocation_metadata() or ()
        return bearer_token(
            [value for key, value in metadata if key == "authorization" and isinstance(value, str)]
        )

    def trailing_metadata(self, error: TokenError) -> tuple[tuple[str, str], ...]:
        challenge = www_authenticate(error, self.realm)
        return (("www-authenticate", challenge),) if challenge else ()


def _method_handler_factory(handler: Any) -> Callable[..., Any]:
    streaming = (bool(handler.request_streaming), bool(handler.response_streaming))
    factories: dict[tuple[bool, bool], Callable[..., Any]] = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    return factories[streaming]


def _behavior(handler: Any) -> Callable[..., Any]:
    behavior = cast(
        "Callable[..., Any] | None",
        handler.unary_unary
        or handler.unary_stream
        or handler.stream_unary
        or handler.stream_stream,
    )
    if behavior is None:
        raise TypeError("the RPC method handler has no behavior")
    return behavior


def _rewrap(handler: Any, behavior: Callable[..., Any]) -> Any:
    return _method_handler_factory(handler)(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class TokenAuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """For ``grpc.server(..., interceptors=[TokenAuthInterceptor(verifier)])``.

    ``methods``: the full method names to protect (default: all); ``public_methods``:
    names never protected (e.g. ``/grpc.health.v1.Health/Check``); ``required_scopes``:
    scopes per method; ``introspect``: also ask the issuer (revocation-aware).
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        methods: Collection[str] | None = None,
        public_methods: Collection[str] = (),
        required_scopes: Mapping[str, Collection[str]] | None = None,
        introspect: bool = False,
        realm: str | None = None,
    ) -> None:
        self._policy = _Policy(
            verifier, methods, public_methods, required_scopes, introspect, realm
        )

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not self._policy.protects(method):
            return handler
        behavior = _behavior(handler)
        authenticate = functools.partial(self._authenticate, method)
        if handler.response_streaming:

            def streaming(request: Any, context: Any) -> Iterator[Any]:
                ctx = self._enter(authenticate, context)
                try:
                    responses = ctx.run(behavior, request, context)
                except TokenError as err:
                    self._abort(context, err)
                return self._iterate(ctx, iter(responses), context)

            return _rewrap(handler, streaming)

        def unary(request: Any, context: Any) -> Any:
            ctx = self._enter(authenticate, context)
            try:
                return ctx.run(behavior, request, context)
            except TokenError as err:
                self._abort(context, err)

        return _rewrap(handler, unary)

    def _authenticate(self, method: str, context: Any) -> VerifiedToken:
        policy = self._policy
        raw = policy.authorization(context)
        verify = (
            policy.verifier.verify_and_introspect if policy.introspect else policy.verifier.verify
        )
        token = verify(raw)
        token.require_scopes(*policy.required_scopes.get(method, ()))
        return token

    def _enter(
        self, authenticate: Callable[[Any], VerifiedToken], context: Any
    ) -> contextvars.Context:
        """Authenticate; return a fresh context holding the token (abort on failure)."""
        try:
            token = authenticate(context)
        except TokenError as err:
            self._abort(context, err)
        ctx = contextvars.copy_context()
        ctx.run(set_current_token, token)
        return ctx

    def _iterate(
        self, ctx: contextvars.Context, responses: Iterator[Any], context: Any
    ) -> Iterator[Any]:
        # Each step of the handler's generator runs in the token's context.
        while True:
            try:
                item = ctx.run(next, responses)
            except StopIteration:
                return
            except TokenError as err:
                self._abort(context, err)
            yield item

    def _abort(self, context: Any, error: TokenError) -> NoReturn:
        metadata = self._policy.trailing_metadata(error)
        if metadata:
            context.set_trailing_metadata(metadata)
        context.abort(grpc_status_code(error), error.description)
        raise AssertionError("unreachable: grpc's abort raises")  # pragma: no cover


class AsyncTokenAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """For ``grpc.aio.server(interceptors=[AsyncTokenAuthInterceptor(verifier)])``.

    Same options as TokenAuthInterceptor. Verification never blocks the event loop
    (``TokenVerifier.averify``).
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        methods: Collection[str] | None = None,
        public_methods: Collection[str] = (),
        required_scopes: Mapping[str, Collection[str]] | None = None,
        introspect: bool = False,
        realm: str | None = None,
    ) -> None:
        self._policy = _Policy(
            verifier, methods, public_methods, required_scopes, introspect, realm
        )

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not self._policy.protects(method):
            return handler
        behavior = _behavior(handler)
        authenticate = functools.partial(self._authenticate, method)
        if handler.response_streaming and (
            inspect.isasyncgenfunction(behavior) or inspect.isgeneratorfunction(behavior)
        ):

            async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
                reset = _current.set(await self._enter(authenticate, context))
                try:
                    responses = behavior(request, context)
                    if inspect.isasyncgen(responses):
                        async for item in responses:
                            yield item
                    else:
                        for item in responses:
                            yield item
                except TokenError as err:
                    await self._abort(context, err)
                finally:
                    with contextlib.suppress(ValueError):  # finalised in another context
                        _current.reset(reset)

            return _rewrap(handler, streaming)

        # Unary responses, and streaming handlers that write with context.write().
        async def call(request: Any, context: Any) -> Any:
            reset = _current.set(await self._enter(authenticate, context))
            try:
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except TokenError as err:
                await self._abort(context, err)
            finally:
                _current.reset(reset)

        return _rewrap(handler, call)

    async def _authenticate(self, method: str, context: Any) -> VerifiedToken:
        policy = self._policy
        raw = policy.authorization(context)
        if policy.introspect:
            token = await policy.verifier.averify_and_introspect(raw)
        else:
            token = await policy.verifier.averify(raw)
        token.require_scopes(*policy.required_scopes.get(method, ()))
        return token

    async def _enter(
        self, authenticate: Callable[[Any], Awaitable[VerifiedToken]], context: Any
    ) -> VerifiedToken:
        try:
            return await authenticate(context)
        except TokenError as err:
            await self._abort(context, err)

    async def _abort(self, context: Any, error: TokenError) -> NoReturn:
        await context.abort(
            grpc_status_code(error),
            error.description,
            trailing_metadata=self._policy.trailing_metadata(error),
        )
        raise AssertionError("unreachable: grpc's abort raises")  # pragma: no cover
