"""The verified token of the request being handled, for handlers behind an integration.

The gRPC interceptors and the ASGI middleware put the VerifiedToken in a
context variable for exactly the duration of the handler (in the thread or task
that runs it); ``current_token()`` reads it and ``require_scopes`` guards a
handler with it. Outside a protected request there is no token, and both raise
MissingToken: a handler that forgot its protection fails closed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from m2mauth.verify.errors import MissingToken
from m2mauth.verify.tokens import VerifiedToken

_current: ContextVar[VerifiedToken | None] = ContextVar("m2mauth_verified_token", default=None)

F = TypeVar("F", bound=Callable[..., Any])


def current_token() -> VerifiedToken:
    """The VerifiedToken of the request being handled; MissingToken if there is none."""
    token = _current.get()
    if token is None:
        raise MissingToken("a bearer token is required")
    return token


def current_org_id() -> str:
    """The caller's organization: scope every data access by it."""
    return current_token().org_id


@contextmanager
def token_context(token: VerifiedToken) -> Iterator[VerifiedToken]:
    """Make ``token`` the current one inside the block (integrations and tests)."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)


def set_current_token(token: VerifiedToken | None) -> None:
    """Set the current token in the running context (for ``contextvars.Context.run``)."""
    _current.set(token)


def require_scopes(*scopes: str) -> Callable[[F], F]:
    """Decorate a handler so it runs only if the current token has every one of ``scopes``.

    Works on plain functions, coroutine functions, and (async) generator functions,
    so on gRPC servicer methods (sync or aio) and on ASGI/Starlette endpoints. Raises
    InsufficientScope (403 / PERMISSION_DENIED through the integrations).
    """
    if not scopes:
        raise ValueError("require_scopes needs at least one scope")

    def decorate(handler: F) -> F:
        if inspect.isasyncgenfunction(handler):

            @functools.wraps(handler)
            async def async_gen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                current_token().require_scopes(*scopes)
                async for item in handler(*args, **kwargs):
                    yield item

            return cast("F", async_gen_wrapper)
        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                current_token().require_scopes(*scopes)
                return await handler(*args, **kwargs)

            return cast("F", async_wrapper)

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            current_token().require_scopes(*scopes)
            return handler(*args, **kwargs)

        return cast("F", wrapper)

    return decorate
