"""The error contract as errors.proto states it, checked against the server.

On the wire, ``google.rpc.ErrorInfo.reason`` is the enum value's name without
its ``ERROR_REASON_`` prefix ("INVALID_CLIENT"); a client in any language maps
it back by looking up ``"ERROR_REASON_" + reason`` by name. These tests hold
the catalogue and the server's reasons to that rule, both ways.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from m2mauth.core import errors as domain
from m2mauth.grpc.errors import STATUS_CODES
from m2mauth.http.errors import HTTP_ERRORS
from m2mauth.v1 import errors_pb2

PREFIX = "ERROR_REASON_"
REPO_ROOT = Path(__file__).resolve().parents[2]
UNSPECIFIED = errors_pb2.ERROR_REASON_UNSPECIFIED


def server_reasons() -> set[str]:
    """Every reason the server can put in an ErrorInfo: one per domain error class,
    and INTERNAL for the unexpected (m2mauth.grpc.errors.translate_errors)."""
    return {cls.reason for cls in STATUS_CODES} | {domain.DomainError.reason}


def reason_to_enum(reason: str) -> int:
    """What errors.proto tells every client to do, written out in Python."""
    try:
        return errors_pb2.ErrorReason.Value(PREFIX + reason)
    except ValueError:
        return UNSPECIFIED


def enum_to_reason(value: int) -> str:
    return errors_pb2.ErrorReason.Name(errors_pb2.ErrorReason.ValueType(value)).removeprefix(PREFIX)


def test_the_catalogue_and_the_server_use_the_same_reasons() -> None:
    catalogue = {enum_to_reason(v.number) for v in errors_pb2.ErrorReason.DESCRIPTOR.values}
    assert catalogue - {"UNSPECIFIED"} == server_reasons()


@pytest.mark.parametrize(
    "value",
    [v.number for v in errors_pb2.ErrorReason.DESCRIPTOR.values if v.number != UNSPECIFIED],
)
def test_every_enum_value_round_trips_through_its_wire_reason(value: int) -> None:
    reason = enum_to_reason(value)
    assert reason in server_reasons()
    assert reason.isupper()
    assert not reason.startswith(PREFIX)
    assert reason_to_enum(reason) == value


def test_every_server_reason_maps_to_an_enum_value() -> None:
    for reason in server_reasons():
        assert reason_to_enum(reason) != UNSPECIFIED, reason


def test_a_reason_from_a_newer_server_maps_to_unspecified() -> None:
    assert reason_to_enum("SOMETHING_NEW") == UNSPECIFIED
    # UNSPECIFIED is never sent, so its name must not be mistaken for a reason.
    assert "UNSPECIFIED" not in server_reasons()


def test_the_http_shim_maps_the_same_strings() -> None:
    assert set(HTTP_ERRORS) == server_reasons()


def test_errors_proto_states_the_mapping() -> None:
    """The comment clients read says what these tests check."""
    lines = (REPO_ROOT / "protos/m2mauth/v1/errors.proto").read_text().splitlines()
    text = " ".join(line.strip().removeprefix("//").strip() for line in lines)
    assert 'the reason "INVALID_CLIENT" is ERROR_REASON_INVALID_CLIENT' in text
    assert 'look up "ERROR_REASON_" + reason by name' in text
