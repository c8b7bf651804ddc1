"""The gRPC server: servicers, health, reflection, store watching, graceful stop.

Sync grpcio with a thread pool: the store layer (SQLAlchemy, psycopg) is
synchronous, and the token path is CPU-bound signing that no event loop would
make faster in one process; scaling across cores is done with processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from m2mauth.config import MAX_CONCURRENT_RPCS
from m2mauth.core.errors import StoreUnavailable
from m2mauth.database_urls import STORE_TIMEOUT_SECONDS
from m2mauth.grpc.admin_key_servicer import AdminKeyServicer
from m2mauth.grpc.key_servicer import KeyServicer
from m2mauth.grpc.malformed import MalformedRequestInterceptor
from m2mauth.grpc.management import ApplicationServicer, AuditServicer, OrganizationServicer
from m2mauth.grpc.token_servicer import TokenServicer
from m2mauth.tls import GrpcServerTls
from m2mauth.v1 import (
    admin_key_service_pb2,
    admin_key_service_pb2_grpc,
    application_service_pb2,
    application_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    errors_pb2,
    key_service_pb2,
    key_service_pb2_grpc,
    organization_service_pb2,
    organization_service_pb2_grpc,
    token_service_pb2,
    token_service_pb2_grpc,
)

log = logging.getLogger("m2mauth.server")

SERVICE_NAMES = (
    admin_key_service_pb2.DESCRIPTOR.services_by_name["AdminKeyService"].full_name,
    token_service_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
    key_service_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name,
    organization_service_pb2.DESCRIPTOR.services_by_name["OrganizationService"].full_name,
    application_service_pb2.DESCRIPTOR.services_by_name["ApplicationService"].full_name,
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
)

# Files reflection must be able to describe although no service mentions them:
# errors carry a google.rpc.Status with an ErrorInfo whose reason names an
# m2mauth.v1.ErrorReason value, and a client (buf curl, grpcurl) needs their
# descriptors to show the details as more than base64. Reflection serves any
# file of the default pool, and importing a module is what puts it there.
ERROR_FILES = (errors_pb2.DESCRIPTOR, status_pb2.DESCRIPTOR, error_details_pb2.DESCRIPTOR)

# grpcio-reflection (1.85) serves only grpc.reflection.v1alpha. v1 has the same
# messages, field for field, in a new package, so the same servicer answers it.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def add_reflection(server: grpc.Server, service_names: tuple[str, ...]) -> None:
    """Serve reflection v1alpha and v1 for ``service_names`` and every loaded file."""
    names = (*service_names, reflection.SERVICE_NAME, REFLECTION_V1)
    servicer = reflection.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        REFLECTION_V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))


class StoreHealthWatcher:
    """Reports NOT_SERVING while the store is unreachable or hung, SERVING when it is back.

    grpc.health.v1 (overall "" and each service) follows the store without a
    restart, so load balancers route around a replica that lost its database.
    A probe that has not answered within ``timeout`` seconds counts as a
    failure: it runs on a thread of its own, so that a hung database cannot
    hang the watcher, and no second probe starts while one is still waiting.
    """

    def __init__(
        self,
        probe: Callable[[], None],
        servicer: health.HealthServicer,
        interval: float,
        timeout: float = STORE_TIMEOUT_SECONDS,
    ) -> None:
        self._probe = probe
        self._health = servicer
        self._interval = interval
        self._timeout = timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-health", daemon=True)
        self._pending: futures.Future[None] | None = None
        self.serving: bool | None = None

    def _probe_within_timeout(self) -> str:
        """'' if the store answered in time, else why not."""
        if self._pending is None or self._pending.done():
            self._pending = self._start_probe()
        try:
            self._pending.result(timeout=self._timeout)
        except futures.TimeoutError:
            return f"no answer within {self._timeout:g} s"
        except StoreUnavailable as exc:
            return str(exc.__cause__ or exc)
        return ""

    def _start_probe(self) -> futures.Future[None]:
        # A daemon thread, not an executor's: a probe stuck past every bound must
        # not keep the process from exiting.
        future: futures.Future[None] = futures.Future()

        def run() -> None:
            try:
                self._probe()
            except BaseException as exc:  # handed to the watcher, which decides
                future.set_exception(exc)
            else:
                future.set_result(None)

        threading.Thread(target=run, name="store-probe", daemon=True).start()
        return future

    def check_once(self) -> bool:
        failure = self._probe_within_timeout()
        ok = not failure
        if not ok and self.serving is not False:
            log.warning("store unreachable; health NOT_SERVING: %s", failure)
        if ok and self.serving is False:
            log.info("store reachable again; health SERVING")
        if not self._stop.is_set():
            self._set(
                health_pb2.HealthCheckResponse.SERVING
                if ok
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
        self.serving = ok
        return ok

    def _set(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            self._health.set(name, status)

    def start(self) -> None:
        self.check_once()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.check_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + self._timeout + 5)


@dataclass(frozen=True)
class Servicers:
    """Every m2mauth service of one process, built once by the composition root."""

    organizations: OrganizationServicer
    applications: ApplicationServicer
    audit: AuditServicer
    tokens: TokenServicer
    keys: KeyServicer
    admin_keys: AdminKeyServicer


@dataclass
class GrpcServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    watcher: StoreHealthWatcher
    tls: GrpcServerTls | None = None
    _not_serving: bool = False
    _stopped: threading.Event | None = None

    def reload_tls(self) -> None:
        """Read the certificate files again; new handshakes present what they hold."""
        if self.tls is not None:
            self.tls.reload()

    def not_serving(self) -> None:
        """grpc.health.v1 says NOT_SERVING (overall and every service) from now on,
        whatever the store does; calls are still served."""
        if self._not_serving:
            return
        self._not_serving = True
        # The health servicer ignores every later set(): the watcher cannot undo it.
        self.health.enter_graceful_shutdown()
        # Its thread may be waiting for a hung database: stopped beside, so that the
        # drain does not wait for it.
        threading.Thread(target=self.watcher.stop, name="store-health-stop", daemon=True).start()

    def begin_stop(self, grace: float) -> threading.Event:
        """NOT_SERVING, then stop accepting calls and let those in flight finish
        within ``grace`` seconds (grpcio cancels the rest). Returns at once; the
        Event is set once stopped."""
        if self._stopped is None:
            self.not_serving()
            self._stopped = self.server.stop(grace)
        return self._stopped

    def stop(self, grace: float) -> None:
        """Graceful stop: NOT_SERVING first, then let in-flight calls finish."""
        self.begin_stop(grace).wait()


def create_server(
    servicers: Servicers,
    store_probe: Callable[[], None],
    host: str,
    port: int,
    *,
    workers: int = 8,
    health_interval: float = 2.0,
    health_timeout: float = STORE_TIMEOUT_SECONDS,
    reuse_port: bool = False,
    max_concurrent_rpcs: int = MAX_CONCURRENT_RPCS,
    tls: GrpcServerTls | None = None,
) -> GrpcServer:
    """Build and start the server; port 0 binds a free port (returned).

    ``store_probe`` raises StoreUnavailable while the store is unreachable;
    health follows it, and counts a probe that takes over ``health_timeout``
    seconds as a failure. ``reuse_port``: worker processes of one ``serve --processes N``
    share the port (SO_REUSEPORT); otherwise a second server on the port is an error.
    ``tls``: serve TLS only (and mutual TLS when it has a client CA), never plaintext
    beside it. ``max_concurrent_rpcs``: calls admitted at once, running or waiting for
    one of the ``workers`` threads; grpcio refuses the next with RESOURCE_EXHAUSTED, so
    a burst cannot queue without bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[("grpc.so_reuseport", 1 if reuse_port else 0)],
        # Before any other interceptor: a request that does not parse is the
        # caller's INVALID_ARGUMENT, not INTERNAL with a traceback.
        interceptors=[MalformedRequestInterceptor()],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    organization_service_pb2_grpc.add_OrganizationServiceServicer_to_server(
        servicers.organizations, server
    )
    application_service_pb2_grpc.add_ApplicationServiceServicer_to_server(
        servicers.applications, server
    )
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(servicers.audit, server)
    token_service_pb2_grpc.add_TokenServiceServicer_to_server(servicers.tokens, server)
    key_service_pb2_grpc.add_KeyServiceServicer_to_server(servicers.keys, server)
    admin_key_service_pb2_grpc.add_AdminKeyServiceServicer_to_server(servicers.admin_keys, server)

    health_servicer = health.HealthServicer(
        experimental_non_blocking=True,
        experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=1),
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    add_reflection(server, (*SERVICE_NAMES, health.SERVICE_NAME))
    address = f"{host}:{port}"
    if tls is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, tls.credentials())
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    watcher = StoreHealthWatcher(store_probe, health_servicer, health_interval, health_timeout)
    server.start()
    watcher.start()
    return GrpcServer(server=server, port=bound, health=health_servicer, watcher=watcher, tls=tls)
