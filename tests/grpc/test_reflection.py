"""Reflection describes the API and its errors, over v1alpha and v1.

A client with nothing but reflection (buf curl, grpcurl, a debugging UI) must
be able to turn a failed call's ``grpc-status-details-bin`` into an ErrorInfo
and its reason into an ``m2mauth.v1.ErrorReason`` value. These tests do exactly
that with descriptors fetched from the server into an empty pool, never the
ones compiled into this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from m2mauth.grpc.server import REFLECTION_V1, GrpcServer
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from m2mauth.v1 import token_service_pb2 as tok_pb
from m2mauth.v1 import token_service_pb2_grpc

V1_METHOD = f"/{REFLECTION_V1}/ServerReflectionInfo"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SqlStore]:
    """Reflection does not touch the store: SQLite only."""
    migrate(sqlite_url)
    sql_store = SqlStore(sqlite_url)
    yield sql_store
    sql_store.close()


@pytest.fixture
def channel(server: GrpcServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as chan:
        yield chan


def reflected_pool(channel: grpc.Channel) -> descriptor_pool.DescriptorPool:
    return descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))


def failed_issue_token(channel: grpc.Channel) -> grpc.RpcError:
    stub = token_service_pb2_grpc.TokenServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.IssueToken(
            tok_pb.IssueTokenRequest(
                grant_type="client_credentials", client_id="app_nobody", client_secret="wrong"
            )
        )
    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    return error


def test_reflection_describes_the_error_reason_enum(channel: grpc.Channel) -> None:
    pool = reflected_pool(channel)
    enum = pool.FindEnumTypeByName("m2mauth.v1.ErrorReason")
    assert enum.file.name == "m2mauth/v1/errors.proto"
    assert enum.values_by_name["ERROR_REASON_INVALID_CLIENT"].number == 9
    # The file options travel too: a client generating code from reflection
    # gets the same packages as one compiling the .proto files.
    assert enum.file.GetOptions().go_package.endswith("/m2mauth/v1;m2mauthv1")


def test_error_details_decode_with_reflected_descriptors_only(channel: grpc.Channel) -> None:
    error = failed_issue_token(channel)
    trailers = dict(error.trailing_metadata() or ())
    raw = trailers["grpc-status-details-bin"]
    assert isinstance(raw, bytes)

    pool = reflected_pool(channel)
    status_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))
    status: Any = status_class.FromString(raw)
    assert status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    (detail,) = status.details
    type_name = detail.type_url.rsplit("/", 1)[1]
    assert type_name == "google.rpc.ErrorInfo"
    info_class = message_factory.GetMessageClass(pool.FindMessageTypeByName(type_name))
    info: Any = info_class.FromString(detail.value)
    assert (info.domain, info.reason) == ("m2mauth", "INVALID_CLIENT")

    # errors.proto's rule, applied to reflected descriptors.
    reason = pool.FindEnumTypeByName("m2mauth.v1.ErrorReason")
    assert reason.values_by_name[f"ERROR_REASON_{info.reason}"].name == (
        "ERROR_REASON_INVALID_CLIENT"
    )


def test_every_error_detail_type_is_described(channel: grpc.Channel) -> None:
    pool = reflected_pool(channel)
    for name in ("google.rpc.ErrorInfo", "google.rpc.BadRequest", "google.rpc.Status"):
        assert pool.FindMessageTypeByName(name).full_name == name


def _v1_call(
    channel: grpc.Channel, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    """One request on grpc.reflection.v1; its messages are v1alpha's, field for field."""
    call = channel.stream_stream(
        V1_METHOD,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (reply,) = list(call(iter([request])))
    return reply


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_both_reflection_versions_list_the_services(channel: grpc.Channel, version: str) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    if version == "v1":
        reply = _v1_call(channel, request)
    else:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        (reply,) = list(stub.ServerReflectionInfo(iter([request])))
    names = {s.name for s in reply.list_services_response.service}
    assert {
        "m2mauth.v1.TokenService",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


def test_reflection_v1_finds_the_error_reason_file(channel: grpc.Channel) -> None:
    reply = _v1_call(
        channel,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="m2mauth.v1.ErrorReason"),
    )
    assert not reply.HasField("error_response"), reply.error_response
    (raw,) = reply.file_descriptor_response.file_descriptor_proto
    assert b"m2mauth/v1/errors.proto" in raw
