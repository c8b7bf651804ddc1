"""The HTTP error table covers every reason the service can return."""

from __future__ import annotations

from m2mauth.core import errors as domain
from m2mauth.grpc.errors import STATUS_CODES
from m2mauth.http.errors import HTTP_ERRORS, from_reason
from m2mauth.v1 import errors_pb2

PREFIX = "ERROR_REASON_"


def proto_reasons() -> set[str]:
    return {
        v.name.removeprefix(PREFIX)
        for v in errors_pb2.ErrorReason.DESCRIPTOR.values
        if v.number != 0
    }


def test_every_proto_reason_has_an_http_mapping() -> None:
    assert set(HTTP_ERRORS) == proto_reasons()


def test_every_domain_error_reason_is_in_the_proto_catalogue() -> None:
    reasons = {cls.reason for cls in STATUS_CODES}
    assert reasons <= proto_reasons()
    assert set(STATUS_CODES) == {
        cls
        for cls in vars(domain).values()
        if isinstance(cls, type) and issubclass(cls, domain.DomainError)
    } - {domain.DomainError}


def test_rfc_6749_codes() -> None:
    assert (
        from_reason("INVALID_CLIENT", "x").status,
        from_reason("INVALID_CLIENT", "x").error,
    ) == (
        401,
        "invalid_client",
    )
    assert from_reason("UNSUPPORTED_GRANT_TYPE", "x").error == "unsupported_grant_type"
    assert from_reason("INVALID_SCOPE", "x").error == "invalid_scope"
    assert from_reason("INVALID_TARGET", "x").error == "invalid_target"
    down = from_reason("STORE_UNAVAILABLE", "db at 10.0.0.1 refused")
    assert (down.status, down.error) == (503, "temporarily_unavailable")
    assert "10.0.0.1" not in down.description
    unknown = from_reason("SOMETHING_NEW", "internal detail")
    assert (unknown.status, unknown.error, unknown.description) == (
        500,
        "server_error",
        "internal error",
    )
