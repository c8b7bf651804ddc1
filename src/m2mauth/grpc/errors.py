"""The one table from domain errors to gRPC status codes (AIP-193).

Every error leaves as a ``google.rpc.Status`` carrying an ``ErrorInfo`` with
``domain: "m2mauth"`` and the reason, plus a ``BadRequest`` field violation
when a field is to blame. Anything unexpected becomes INTERNAL with no
internals in the message; the traceback goes to the server log only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from m2mauth.core import errors

DOMAIN = "m2mauth"
log = logging.getLogger("m2mauth.grpc")

STATUS_CODES: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidField: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidPageToken: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.SecretLimitReached: grpc.StatusCode.FAILED_PRECONDITION,
    errors.AdminKeyInvalid: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.InvalidClient: grpc.StatusCode.UNAUTHENTICATED,
    errors.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UnsupportedGrantType: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidScope: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidTarget: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UnauthorizedClient: grpc.StatusCode.PERMISSION_DENIED,
    errors.StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.IssuerMismatch: grpc.StatusCode.FAILED_PRECONDITION,
    errors.EtagMismatch: grpc.StatusCode.ABORTED,
    errors.RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.QuotaExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_code_for(exc: errors.DomainError) -> grpc.StatusCode:
    """Look up the most specific class of ``exc`` in the table."""
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return grpc.StatusCode.INTERNAL


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    field: str | None = None,
    metadata: dict[str, str] | None = None,
) -> status_pb2.Status:
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata or {}))
    ]
    if field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    return status_pb2.Status(code=code.value[0], message=message, details=details)


def domain_status(exc: errors.DomainError) -> status_pb2.Status:
    code = status_code_for(exc)
    field = getattr(exc, "field", None)
    if code != grpc.StatusCode.INVALID_ARGUMENT:
        field = None
    status = to_status(code, exc.message, exc.reason, field, exc.metadata)
    if isinstance(exc, errors.RateLimited):
        # AIP-193: RetryInfo says when to retry, QuotaFailure what was exhausted.
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.seconds = exc.retry_after_seconds
        violation = error_details_pb2.QuotaFailure.Violation(
            subject=exc.subject, description=exc.description
        )
        status.details.append(_pack(retry))
        status.details.append(_pack(error_details_pb2.QuotaFailure(violations=[violation])))
    return status


def abort(context: grpc.ServicerContext, status: status_pb2.Status) -> NoReturn:
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


F = TypeVar("F", bound=Callable[..., Any])


def translate_errors(method: F) -> F:
    """Wrap a servicer method: domain errors -> their status, others -> INTERNAL."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except errors.DomainError as exc:
            if isinstance(exc, errors.StoreUnavailable):
                log.warning("store unavailable in %s: %s", method.__name__, exc.__cause__ or exc)
            abort(context, domain_status(exc))
        except Exception:
            # abort_with_status raises an Exception subclass of grpc's own; let it pass.
            if context.code() is not None:
                raise
            log.exception("unexpected error in %s", method.__name__)
            abort(
                context,
                to_status(
                    grpc.StatusCode.INTERNAL,
                    "internal error; see the server log",
                    "INTERNAL",
                ),
            )

    return wrapper  # type: ignore[return-value]
