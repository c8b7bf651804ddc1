"""From a failed gRPC call to one line that says what went wrong and what to do.

m2mauth answers every error with a ``google.rpc.Status`` carrying an
``ErrorInfo{reason, domain: "m2mauth"}`` and, for a bad field, a
``BadRequest`` (AIP-193). A status WITHOUT that ErrorInfo did not come from
m2mauth's code: it is gRPC itself failing to reach the server (exit 3), or
something that is not m2mauth answering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from m2mauth.cli_support.failure import CommandFailed, ServerUnreachable
from m2mauth.cli_support.options import Connection

DOMAIN = "m2mauth"

# What to do, for the reasons where the server's message does not already say.
HINTS: dict[str, str] = {
    "ADMIN_KEY_INVALID": "check M2MAUTH_ADMIN_KEY or --admin-key: the server does not "
    "know this key (`m2mauth admin-key create` makes one)",
    "PERMISSION_DENIED": "this needs an environment admin key, not one scoped to an organization",
    "INVALID_CLIENT": "check the client id and secret (M2MAUTH_CLIENT_ID, "
    "M2MAUTH_CLIENT_SECRET) and that the application and its organization are enabled",
    "NOT_FOUND": "check the id (an admin key scoped to another organization cannot see it)",
}

# ... and where the fix is a flag of this CLI rather than a field of the API.
RPC_HINTS: dict[tuple[str, str], str] = {
    ("DeleteOrganization", "FAILED_PRECONDITION"): "pass --force to delete its applications too",
    ("CreateClientSecret", "SECRET_LIMIT_REACHED"): "see them with `m2mauth secrets list APP`, "
    "then `m2mauth secrets revoke APP SECRET`",
}


@dataclass
class ServerError:
    """The parts of a status that m2mauth's errors carry."""

    code: grpc.StatusCode
    message: str
    reason: str | None = None
    fields: list[str] = field(default_factory=list)


def read_status(err: grpc.RpcError) -> ServerError:
    code = err.code()
    message = err.details() or ""
    try:
        status = rpc_status.from_call(err)
    except ValueError:  # details that contradict the call's own code: ignore them
        status = None
    if status is None:
        return ServerError(code, message)
    found = ServerError(code, status.message or message)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == DOMAIN:
                found.reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.fields += [v.field for v in bad.field_violations]
    return found


def describe_rpc_error(
    err: grpc.RpcError, conn: Connection, *, rpc: str, connected: bool
) -> CommandFailed:
    """The one-line failure for ``err``, with exit code 1 (server said no) or 3 (no server).

    ``connected`` says whether the channel is connected: a deadline hit before
    it was means nothing answered at ``conn.server``.
    """
    error = read_status(err)
    if error.reason is None:
        return _without_m2mauth_details(error, conn, rpc=rpc, connected=connected)
    message = error.message
    for name in error.fields:
        if not message.startswith(f"{name}:"):
            message = f"{name}: {message}"
            break
    line = f"{message} ({error.reason})"
    hint = RPC_HINTS.get((rpc, error.reason)) or HINTS.get(error.reason)
    if hint:
        line = f"{line}; {hint}"
    return CommandFailed(line)


def _without_m2mauth_details(
    error: ServerError, conn: Connection, *, rpc: str, connected: bool
) -> CommandFailed:
    server, timeout = conn.server, conn.timeout
    code = error.code
    if code == grpc.StatusCode.UNAVAILABLE or (
        code == grpc.StatusCode.DEADLINE_EXCEEDED and not connected
    ):
        why = error.message or code.name
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            why = f"no answer within {timeout:g}s"
        if conn.uses_tls:
            what_to_do = "check --server and the TLS options (--ca-file, --tls-server-name)"
        else:
            what_to_do = (
                "is it running (`m2mauth serve --dev` starts one) and is --server or "
                "M2MAUTH_SERVER right? A TLS server also needs --tls or --ca-file"
            )
        return ServerUnreachable(
            f"cannot reach the m2mauth server at {server} ({why}): {what_to_do}"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CommandFailed(
            f"{rpc}: the server did not answer within {timeout:g}s; retry, or raise --timeout"
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return CommandFailed(
            f"the server at {server} does not implement {rpc} (UNIMPLEMENTED): "
            "upgrade it, or check that --server points at m2mauth"
        )
    return CommandFailed(f"{rpc} failed: {error.message or 'no details'} ({code.name})")
