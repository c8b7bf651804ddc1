"""A request that is not a valid message is the caller's error, not ours.

grpcio deserializes a request before any servicer runs; a failure there is
logged with a traceback and answered INTERNAL ("Exception deserializing
request!"), so a flood of garbage filled the log with tracebacks. Every
method of every service on the server (ours, health and reflection) must
answer INVALID_ARGUMENT with an ErrorInfo instead, and log no traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from m2mauth.grpc.server import GrpcServer
from m2mauth.store.schema import migrate
from m2mauth.v1 import (
    admin_key_service_pb2,
    application_service_pb2,
    audit_service_pb2,
    key_service_pb2,
    organization_service_pb2,
    token_service_pb2,
)
from tests.grpc.rich_errors import rich_error

SERVICE_FILES = (
    admin_key_service_pb2.DESCRIPTOR,
    application_service_pb2.DESCRIPTOR,
    audit_service_pb2.DESCRIPTOR,
    key_service_pb2.DESCRIPTOR,
    organization_service_pb2.DESCRIPTOR,
    token_service_pb2.DESCRIPTOR,
    health_pb2.DESCRIPTOR,
    reflection_pb2.DESCRIPTOR,
)
REFLECTION_V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
# A varint that never ends: no message of any type parses from it.
TRUNCATED = b"\x08\xff\xff\xff"


def _methods() -> list[descriptor.MethodDescriptor]:
    return [
        method
        for file in SERVICE_FILES
        for service in file.services_by_name.values()
        for method in service.methods
    ]


def _path(method: descriptor.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def invalid_utf8(message: descriptor.Descriptor) -> bytes | None:
    """A message whose first string field holds bytes that are not UTF-8, if it has one
    (proto3 strings must be valid UTF-8)."""
    for field in message.fields:
        if field.type == descriptor.FieldDescriptor.TYPE_STRING:
            return bytes([field.number << 3 | 2, 2]) + b"\xff\xfe"
    return None


def call_raw(
    channel: grpc.Channel, path: str, client_streaming: bool, server_streaming: bool, body: bytes
) -> None:
    """Send ``body`` as the request of ``path`` and read the whole reply."""
    if client_streaming and server_streaming:
        for _ in channel.stream_stream(path)(iter([body]), timeout=10):
            pass
    elif server_streaming:
        for _ in channel.unary_stream(path)(body, timeout=10):
            pass
    elif client_streaming:
        channel.stream_unary(path)(iter([body]), timeout=10)
    else:
        channel.unary_unary(path)(body, timeout=10)


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    """SQLite only: parsing happens before any store is touched."""
    migrate(sqlite_url)
    return sqlite_url


@pytest.fixture
def channel(server: GrpcServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


# (method path, client streaming, server streaming, request bytes)
Case = tuple[str, bool, bool, bytes]
CASES: list[Case] = [
    (_path(m), m.client_streaming, m.server_streaming, body)
    for m in _methods()
    for body in (TRUNCATED, invalid_utf8(m.input_type))
    if body is not None
] + [(REFLECTION_V1, True, True, TRUNCATED)]


def test_a_malformed_request_is_invalid_argument_without_a_traceback(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    # One server for every case (a server per case would cost seconds each).
    wrong: list[str] = []
    for path, client_streaming, server_streaming, body in CASES:
        with pytest.raises(grpc.RpcError) as info:
            call_raw(channel, path, client_streaming, server_streaming, body)
        err = rich_error(info.value)
        if (err.code, err.reason, err.domain) != (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "m2mauth",
        ) or "is not a valid" not in err.message:
            wrong.append(f"{path} {body!r}: {err}")
    assert not wrong, "\n".join(wrong)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= 40], caplog.text


def test_the_cases_cover_every_service() -> None:
    # A service added later is covered without editing this test; this says it is.
    services = {path.split("/")[1] for path, *_ in CASES}
    assert "m2mauth.v1.TokenService" in services
    assert "grpc.health.v1.Health" in services
    assert len(services) == 9
    assert {path for path, *_ in CASES} >= {_path(m) for m in _methods()}


def test_a_declared_but_unimplemented_method_is_unimplemented_without_a_traceback(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    # grpc.health.v1 declares List; grpcio-health-checking's servicer leaves it to
    # the generated base class, which raises NotImplementedError.
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary("/grpc.health.v1.Health/List")(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Health/List is not implemented" in info.value.details()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= 40], caplog.text
