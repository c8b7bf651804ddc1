"""Requests that do not parse are INVALID_ARGUMENT, for every service on the server.

grpcio (sync) deserializes a request before any servicer or error table sees
it. When the parser raises, grpcio logs "Exception deserializing message!"
with a traceback and answers INTERNAL, so garbage from a client looked like
our bug and a flood of it filled the log. The interceptor here gives every
method handler (ours, health, reflection) a deserializer that cannot raise:
a request that does not parse becomes a marker, and the wrapped behaviour
answers the marker with INVALID_ARGUMENT and an ``ErrorInfo`` (AIP-193),
logging nothing, as for any other malformed request. Protobuf refuses both a
corrupt wire format and a proto3 ``string`` that is not UTF-8.

The same wrapper answers a method that the proto declares but its servicer
leaves to the generated base class (grpc.health.v1 ``Health/List``, which
grpcio-health-checking 1.85 does not implement): the base raises
NotImplementedError, which grpcio logged with a traceback on every call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from m2mauth.grpc.errors import abort, to_status

REASON = "INVALID_REQUEST"


class Malformed:
    """What the tolerant deserializer returns for bytes that are not a request."""

    __slots__ = ("message_type",)

    def __init__(self, message_type: str) -> None:
        self.message_type = message_type


def _message_type(deserializer: Callable[[bytes], Any]) -> str:
    # Generated handlers pass Message.FromString, bound to the message class.
    cls = getattr(deserializer, "__self__", None)
    descriptor = getattr(cls, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    message_type = _message_type(deserializer)

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, or whatever else a parser raises on bad input
            return Malformed(message_type)

    return parse


def _refuse(context: grpc.ServicerContext, request: Malformed) -> None:
    abort(
        context,
        to_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is not a valid {request.message_type} message: its protobuf "
            "encoding is corrupt or a string field is not UTF-8",
            REASON,
        ),
    )


def _checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, Malformed):
            _refuse(context, request)
        yield request


def _unimplemented(context: grpc.ServicerContext, method: str) -> None:
    # The status grpcio gives a method it does not know, without the traceback.
    context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by this server")


def _tolerant_handler(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    parse = _tolerant(handler.request_deserializer)
    serialize = handler.response_serializer
    if handler.request_streaming:
        inner = handler.stream_stream if handler.response_streaming else handler.stream_unary

        def streaming(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            try:
                return inner(_checked(requests, context), context)
            except NotImplementedError:
                _unimplemented(context, method)

        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(streaming, parse, serialize)
        return grpc.stream_unary_rpc_method_handler(streaming, parse, serialize)

    inner = handler.unary_stream if handler.response_streaming else handler.unary_unary

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            _refuse(context, request)
        try:
            return inner(request, context)
        except NotImplementedError:
            _unimplemented(context, method)

    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(unary, parse, serialize)
    return grpc.unary_unary_rpc_method_handler(unary, parse, serialize)


class MalformedRequestInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Gives each method handler a deserializer that turns bad bytes into INVALID_ARGUMENT."""

    def __init__(self) -> None:
        # method -> (handler as found, its tolerant copy): built once per method,
        # not per call, as long as the server hands out the same handler.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._lock = threading.Lock()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        tolerant = _tolerant_handler(handler, method)
        with self._lock:
            self._wrapped[method] = (handler, tolerant)
        return tolerant
