"""How the shim reaches the TokenService: in-process, or over gRPC.

Both implement :class:`TokenBackend` and raise :class:`~m2mauth.http.errors.
OAuthError` built from the ErrorInfo reason of the service's status, so the
shim behaves identically either way (the same test suite runs on both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from m2mauth.core.blocking import WouldBlock, non_blocking
from m2mauth.http.errors import OAuthError, from_reason, unavailable
from m2mauth.v1 import token_service_pb2 as pb
from m2mauth.v1 import token_service_pb2_grpc

STATUS_DETAILS_KEY = "grpc-status-details-bin"
# The edge's channel to its core. grpcio's reconnect backoff starts at 1 s and
# grows 1.6 times per failed attempt up to 2 minutes: an edge whose core was down
# for a few seconds answered 503 for 10-26 s more after the core was back. Here
# attempts start at 100 ms and are never more than 1 s apart, so the edge is back
# within about a second of its core; one connection attempt a second per edge
# process costs the core nothing. ``min_reconnect_backoff_ms`` is the time an
# attempt may take to connect (20 s by default): a core that does not answer the
# handshake is tried again after 2 s, not 20.
RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.min_reconnect_backoff_ms", 2000),
)
DEFAULT_THREADS = 8
_NOT_RUN = object()
M = TypeVar("M")


class TokenBackend(Protocol):
    # ``source``: the HTTP caller's address, for the audit log. In process it
    # reaches the servicer as the peer; over gRPC the upstream sees the edge's.
    async def issue_token(
        self, request: pb.IssueTokenRequest, *, source: str = ""
    ) -> pb.IssueTokenResponse: ...

    async def introspect(
        self, request: pb.IntrospectRequest, admin_key: str | None, *, source: str = ""
    ) -> pb.IntrospectResponse: ...

    async def revoke_token(
        self, request: pb.RevokeTokenRequest, admin_key: str | None, *, source: str = ""
    ) -> pb.RevokeTokenResponse: ...

    async def get_jwks(self) -> pb.GetJwksResponse: ...

    async def ready(self) -> bool:
        """Whether the service can answer (its store, or the upstream, is reachable)."""
        ...

    async def close(self) -> None: ...


def error_from_status(status: status_pb2.Status | None) -> OAuthError:
    if status is None:
        return unavailable()
    reason = "INTERNAL"
    retry_after: int | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = max(1, retry.retry_delay.seconds + (retry.retry_delay.nanos > 0))
    return from_reason(reason, status.message, retry_after)


def status_from_trailers(trailers: Any) -> status_pb2.Status | None:
    for key, value in trailers or ():
        if key == STATUS_DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None


def _metadata(admin_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {admin_key}"),) if admin_key else ()


# --- in-process ---------------------------------------------------------------


class _LocalAbort(Exception):
    def __init__(self, status: Any) -> None:
        super().__init__(getattr(status, "details", "aborted"))
        self.status = status


class LocalContext:
    """The part of ``grpc.ServicerContext`` the servicers use, for in-process calls."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = (), source: str = "") -> None:
        self._metadata = metadata
        self._source = source
        self._code: Any = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def abort_with_status(self, status: Any) -> None:
        self._code = status.code
        raise _LocalAbort(status)

    def abort(self, code: Any, details: str) -> None:
        self._code = code
        raise _LocalAbort(status_pb2.Status(code=code.value[0], message=details))

    def code(self) -> Any:
        return self._code

    def peer(self) -> str:
        """The HTTP caller's address in gRPC's peer format (the port is not kept)."""
        if not self._source:
            return "in-process"
        return f"ipv6:[{self._source}]:0" if ":" in self._source else f"ipv4:{self._source}:0"


class InProcessBackend:
    """Calls the TokenService servicer in this process: no serialisation, no socket."""

    def __init__(
        self, servicer: Any, ping: Callable[[], None], *, threads: int = DEFAULT_THREADS
    ) -> None:
        self._servicer = servicer
        self._ping = ping
        self._threads = threads
        self._limiter: anyio.CapacityLimiter | None = None

    def _thread_limiter(self) -> anyio.CapacityLimiter:
        # At most ``threads`` calls wait on the store at once (anyio's default is
        # 40): more would only queue for a pooled connection, or open and close
        # overflow ones, and convoy on the GIL. Made on the loop, at first use.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._threads)
        return self._limiter

    async def _call(
        self,
        method: Callable[[M, Any], Any],
        request: M,
        admin_key: str | None,
        *,
        source: str = "",
        try_inline: bool = False,
    ) -> Any:
        def run() -> Any:
            try:
                return method(request, LocalContext(_metadata(admin_key), source))
            except _LocalAbort as abort:
                return abort

        result: Any = _NOT_RUN
        if try_inline:
            # On the loop when it needs no store (see m2mauth.core.blocking);
            # WouldBlock comes before any I/O or side effect, so re-running is safe.
            try:
                with non_blocking():
                    result = run()
            except WouldBlock:
                result = _NOT_RUN
        if result is _NOT_RUN:
            # Off the event loop: the call waits on the store.
            result = await anyio.to_thread.run_sync(run, limiter=self._thread_limiter())
        if isinstance(result, _LocalAbort):
            raise error_from_status(status_from_trailers(result.status.trailing_metadata))
        return result

    async def issue_token(
        self, request: pb.IssueTokenRequest, *, source: str = ""
    ) -> pb.IssueTokenResponse:
        result: pb.IssueTokenResponse = await self._call(
            self._servicer.IssueToken, request, None, source=source, try_inline=True
        )
        return result

    async def introspect(
        self, request: pb.IntrospectRequest, admin_key: str | None, *, source: str = ""
    ) -> pb.IntrospectResponse:
        result: pb.IntrospectResponse = await self._call(
            self._servicer.Introspect, request, admin_key, source=source, try_inline=True
        )
        return result

    async def revoke_token(
        self, request: pb.RevokeTokenRequest, admin_key: str | None, *, source: str = ""
    ) -> pb.RevokeTokenResponse:
        result: pb.RevokeTokenResponse = await self._call(
            self._servicer.RevokeToken, request, admin_key, source=source
        )
        return result

    async def get_jwks(self) -> pb.GetJwksResponse:
        result: pb.GetJwksResponse = await self._call(
            self._servicer.GetJwks, pb.GetJwksRequest(), None, try_inline=True
        )
        return result

    async def ready(self) -> bool:
        try:
            # Abandoned if /readyz's deadline passes first (the ping ends at the
            # store's own bound).
            await anyio.to_thread.run_sync(self._ping, abandon_on_cancel=True)
        except Exception:
            return False
        return True

    async def close(self) -> None:
        return None


# --- remote (serve-http --upstream) ----------------------------------------------


class GrpcBackend:
    """Calls an m2mauth gRPC server; the edge host holds no keys and no database."""

    def __init__(
        self,
        target: str,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._target = target
        self._credentials = credentials  # None: plaintext (a loopback core, or a sidecar)
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._token_stub: token_service_pb2_grpc.TokenServiceStub | None = None

    def _open(self) -> grpc.aio.Channel:
        # A grpc.aio channel belongs to the event loop it is created on: the
        # serving loop, which exists only once the server runs.
        if self._channel is None:
            self._channel = (
                grpc.aio.insecure_channel(self._target, options=RECONNECT_OPTIONS)
                if self._credentials is None
                else grpc.aio.secure_channel(
                    self._target, self._credentials, options=RECONNECT_OPTIONS
                )
            )
            self._token_stub = token_service_pb2_grpc.TokenServiceStub(self._channel)
        return self._channel

    @property
    def _stub(self) -> token_service_pb2_grpc.TokenServiceStub:
        if self._token_stub is None:
            self._open()
        assert self._token_stub is not None
        return self._token_stub

    async def _call(self, method: Any, request: Any, admin_key: str | None) -> Any:
        try:
            return await method(request, metadata=_metadata(admin_key), timeout=self._timeout)
        except grpc.aio.AioRpcError as err:
            status = status_from_trailers(err.trailing_metadata())
            if status is None and err.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                raise unavailable() from None
            raise error_from_status(status) from None

    async def issue_token(
        self, request: pb.IssueTokenRequest, *, source: str = ""
    ) -> pb.IssueTokenResponse:
        result: pb.IssueTokenResponse = await self._call(self._stub.IssueToken, request, None)
        return result

    async def introspect(
        self, request: pb.IntrospectRequest, admin_key: str | None, *, source: str = ""
    ) -> pb.IntrospectResponse:
        result: pb.IntrospectResponse = await self._call(self._stub.Introspect, request, admin_key)
        return result

    async def revoke_token(
        self, request: pb.RevokeTokenRequest, admin_key: str | None, *, source: str = ""
    ) -> pb.RevokeTokenResponse:
        result: pb.RevokeTokenResponse = await self._call(
            self._stub.RevokeToken, request, admin_key
        )
        return result

    async def get_jwks(self) -> pb.GetJwksResponse:
        result: pb.GetJwksResponse = await self._call(self._stub.GetJwks, pb.GetJwksRequest(), None)
        return result

    async def ready(self) -> bool:
        try:
            reply = await health_pb2_grpc.HealthStub(self._open()).Check(
                health_pb2.HealthCheckRequest(service="m2mauth.v1.TokenService"), timeout=2
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._token_stub = None
