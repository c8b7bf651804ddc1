"""The gRPC session a client command talks over: channel, TLS, credentials, deadline.

One :func:`open_session` per command. Every call through :meth:`Session.call`
carries the admin key (if any) as ``authorization: Bearer`` metadata and the
``--timeout`` deadline; a failed call leaves the ``with`` block as a
one-line :class:`~m2mauth.cli_support.failure.CommandFailed`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import grpc

from m2mauth.cli_support.failure import usage_failure
from m2mauth.cli_support.options import Connection
from m2mauth.cli_support.rpc_errors import describe_rpc_error, read_status
from m2mauth.v1 import (
    admin_key_service_pb2_grpc,
    application_service_pb2_grpc,
    audit_service_pb2_grpc,
    key_service_pb2_grpc,
    organization_service_pb2_grpc,
    token_service_pb2_grpc,
)

# grpc_connectivity_state GRPC_CHANNEL_READY (grpc/impl/connectivity_state.h).
CONNECTIVITY_READY = 2
MAX_PAGE_SIZE = 100  # larger page sizes are clamped to this by the server
NO_ADMIN_KEY = "no admin key: set M2MAUTH_ADMIN_KEY or pass --admin-key"


def build_channel(conn: Connection) -> grpc.Channel:
    """An insecure channel, or a TLS one when any TLS option is given."""
    options: list[tuple[str, Any]] = [("grpc.primary_user_agent", _user_agent())]
    if not conn.uses_tls:
        return grpc.insecure_channel(conn.server, options=options)
    roots = conn.ca_file.read_bytes() if conn.ca_file else None  # None: the default roots
    if roots is not None and b"-----BEGIN CERTIFICATE-----" not in roots:
        raise usage_failure(f"--ca-file {conn.ca_file}: no PEM certificate in it")
    if conn.tls_server_name:
        options.append(("grpc.ssl_target_name_override", conn.tls_server_name))
    chain = key = None
    if conn.tls_client_cert is not None and conn.tls_client_key is not None:
        chain, key = conn.tls_client_cert.read_bytes(), conn.tls_client_key.read_bytes()
        if b"-----BEGIN CERTIFICATE-----" not in chain:
            raise usage_failure(f"--tls-client-cert {conn.tls_client_cert}: no PEM certificate")
        if b"PRIVATE KEY-----" not in key:
            raise usage_failure(f"--tls-client-key {conn.tls_client_key}: no PEM private key")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key, certificate_chain=chain
    )
    return grpc.secure_channel(conn.server, credentials, options=options)


def _user_agent() -> str:
    try:
        return f"m2mauth-cli/{metadata.version('m2mauth')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "m2mauth-cli"


class Session:
    """Stubs of every m2mauth service over one channel, and the call helper."""

    def __init__(self, conn: Connection, *, send_admin_key: bool) -> None:
        self._conn = conn
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {conn.admin_key}"),)
            if send_admin_key and conn.admin_key
            else ()
        )
        self._channel = build_channel(conn)
        self.orgs = organization_service_pb2_grpc.OrganizationServiceStub(self._channel)
        self.apps = application_service_pb2_grpc.ApplicationServiceStub(self._channel)
        self.audit = audit_service_pb2_grpc.AuditServiceStub(self._channel)
        self.keys = key_service_pb2_grpc.KeyServiceStub(self._channel)
        self.tokens = token_service_pb2_grpc.TokenServiceStub(self._channel)
        self.admin_keys = admin_key_service_pb2_grpc.AdminKeyServiceStub(self._channel)

    def _connected(self) -> bool:
        """Whether the channel is connected to the server right now.

        grpcio has no public synchronous query: ``subscribe`` starts a polling
        thread that raises (and prints a traceback) if the channel is closed
        under it, which a short-lived command always does. So this asks the
        underlying channel directly; if that ever goes away, a deadline is
        taken as "not connected" (exit 3), the likelier cause.
        """
        try:
            state = self._channel._channel.check_connectivity_state(False)
        except Exception:  # a private API: any change means "unknown"
            return False
        return bool(state == CONNECTIVITY_READY)

    def call(self, method: Callable[..., Any], request: Any) -> Any:
        """Call one unary RPC with the session's metadata and deadline."""
        return self._call(method, request, stale_is_none=False)

    def call_unless_stale(self, method: Callable[..., Any], request: Any) -> Any | None:
        """As :meth:`call`, but None when the server refuses a conditional update
        whose etag no longer matches (AIP-154): to be read and made again."""
        return self._call(method, request, stale_is_none=True)

    def _call(self, method: Callable[..., Any], request: Any, *, stale_is_none: bool) -> Any:
        try:
            return method(request, timeout=self._conn.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            if stale_is_none and read_status(err).reason == "ETAG_MISMATCH":
                return None
            rpc = request.DESCRIPTOR.name.removesuffix("Request")
            raise describe_rpc_error(
                err, self._conn, rpc=rpc, connected=self._connected()
            ) from None

    def collect(
        self, method: Callable[..., Any], request: Any, items: str, limit: int | None
    ) -> list[Any]:
        """Page through a List RPC (AIP-158) until the end, or until ``limit`` items."""
        found: list[Any] = []
        while True:
            wanted = MAX_PAGE_SIZE if limit is None else min(MAX_PAGE_SIZE, limit - len(found))
            request.page_size = wanted
            reply = self.call(method, request)
            found.extend(getattr(reply, items))
            if not reply.next_page_token or (limit is not None and len(found) >= limit):
                return found[:limit]
            request.page_token = reply.next_page_token

    def close(self) -> None:
        self._channel.close()


@contextmanager
def open_session(conn: Connection, *, admin: bool = True) -> Iterator[Session]:
    """A session for one command; ``admin`` requires (and sends) the admin key."""
    if admin and not conn.admin_key:
        raise usage_failure(NO_ADMIN_KEY)
    session = Session(conn, send_admin_key=admin)
    try:
        yield session
    finally:
        session.close()
