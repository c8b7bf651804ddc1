"""Starting one server process: the checks done once before serving, and the
servers of one process (gRPC and OAuth HTTP over one :class:`~m2mauth.bootstrap.App`).

Used by ``serve`` in one process and by each worker of ``serve --processes N``.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from starlette.routing import Mount

from m2mauth.bootstrap import App, bootstrap, load_root_key
from m2mauth.client_address import parse_networks
from m2mauth.config import Settings
from m2mauth.core.errors import StoreUnavailable
from m2mauth.core.signing_keys import SigningKeyError
from m2mauth.database_urls import redact
from m2mauth.grpc.server import GrpcServer, create_server
from m2mauth.http.app import create_http_app
from m2mauth.http.console import create_console
from m2mauth.http.metrics import ShimMetrics, create_metrics_app
from m2mauth.http.server import STOP_MARGIN_SECONDS, HttpServer, start_http_server
from m2mauth.ratelimit.redis import RateLimitCollector, RedisCounters
from m2mauth.store import UnsupportedDatabaseUrl, open_store
from m2mauth.store.schema import SchemaError
from m2mauth.tls import GrpcServerTls, HttpServerTls, TlsError

log = logging.getLogger("m2mauth")


EXIT_BAD_SETTINGS = 2  # a setting, a port, the schema or the root key: the operator fixes it
EXIT_UNREACHABLE = 3  # the database did not answer


class StartupError(Exception):
    """The server cannot start; ``code`` is the process exit code.

    The message is one line that names the cause and the fix: the CLI prints it
    as it is, after "error: cannot start: ".
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str) -> str:
    """A driver's message on one line. psycopg puts its hint after a newline and a
    tab; SQLAlchemy appends a link to its own documentation, which says nothing
    about this database."""
    text = text.split("(Background on this error at:", 1)[0]
    return "; ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def driver_message(exc: BaseException) -> str:
    """What the database driver said, without the wrappers' prefixes."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, DBAPIError):
            return one_line(str(cause.orig))
        cause = cause.__cause__
    return one_line(str(exc))


def unreachable(exc: BaseException, url: str) -> StartupError:
    return StartupError(
        f"the database at {redact(url)} is unreachable ({driver_message(exc)}): "
        "check --database-url / M2MAUTH_DATABASE_URL and that the database server is running",
        EXIT_UNREACHABLE,
    )


def unbindable(what: str, flag: str, host: str, port: int, exc: OSError | None) -> StartupError:
    """The one line for an address that cannot be bound: which port, and the flag that
    moves it. ``what`` is "gRPC" or "OAuth HTTP"; ``flag`` is "grpc" or "http"."""
    address = f"{host}:{port}"
    if exc is None or exc.errno == errno.EADDRINUSE:
        # exc None: grpcio says only that it failed; the probe in serve.run has ruled
        # out the common case by then, so this is a port taken in between.
        cause = f"the {what} port {address} is already in use (by another m2mauth?)"
        fix = f"stop what holds it, or pass --{flag}-port PORT (0 picks a free one)"
    else:
        cause = f"cannot listen for {what} on {address} ({exc.strerror or exc})"
        fix = f"check --{flag}-host and --{flag}-port"
    return StartupError(f"{cause}: {fix}", EXIT_BAD_SETTINGS)


@dataclass(frozen=True)
class Prepared:
    settings: Settings
    root_key: bytes
    first_admin_key: str | None
    # With --processes N: the metrics port of each worker, reserved by the parent.
    metrics_ports: tuple[int, ...] = ()


def listener_tls(settings: Settings) -> tuple[GrpcServerTls | None, HttpServerTls | None]:
    """The TLS of the gRPC and HTTP listeners, files read and checked."""
    try:
        grpc_files, http_files = settings.grpc_tls(), settings.http_tls()
        return (
            GrpcServerTls(grpc_files, settings.tls_client_ca) if grpc_files else None,
            HttpServerTls(http_files) if http_files else None,
        )
    except TlsError as exc:
        raise StartupError(f"TLS: {exc}", EXIT_BAD_SETTINGS) from None


def prepare(settings: Settings) -> Prepared:
    """Everything done once, before any worker serves: schema, root key, signing
    keys, first admin key. The store is closed again: workers open their own."""
    app, prepared = prepare_app(settings, pool_size=1)
    app.close()
    return prepared


def prepare_app(settings: Settings, *, pool_size: int | None = None) -> tuple[App, Prepared]:
    """:func:`prepare`, keeping the App to serve with in this process (not started)."""
    listener_tls(settings)  # a bad certificate is said before any other work
    try:
        store = open_store(
            settings.database_url,
            pool_size=pool_size or 2 * settings.workers + 2,
            timeout=settings.store_timeout_seconds,
        )
    except UnsupportedDatabaseUrl as exc:
        raise StartupError(f"--database-url: {exc}", EXIT_BAD_SETTINGS) from None
    except DBAPIError as exc:
        raise unreachable(exc, settings.database_url) from None
    try:
        if settings.dev:
            store.migrate()
        store.check_schema()
        try:
            # load_root_key warns, wherever it is called, when it creates one.
            root, _ = load_root_key(settings)
        except (OSError, ValueError) as exc:
            raise StartupError(f"root key: {exc}", EXIT_BAD_SETTINGS) from None
        app = bootstrap(settings, store=store, root_key=root)
        app.owns_store = True
        # Signing keys exist before any worker serves (workers racing to create
        # the first key would each make one).
        app.tokens.ring.ensure_keys()
        first = app.admin_keys.bootstrap() if settings.dev else None
        return app, Prepared(settings, root, first)
    except BaseException as exc:
        store.close()
        if isinstance(exc, SchemaError | SigningKeyError):
            # SigningKeyError: a signing key this root key cannot decrypt (the wrong root key).
            raise StartupError(str(exc), EXIT_BAD_SETTINGS) from None
        if isinstance(exc, StoreUnavailable | DBAPIError):
            raise unreachable(exc, settings.database_url) from None
        raise


@dataclass
class Running:
    """One process's servers, stoppable in order."""

    grpc_port: int
    http_port: int
    metrics_port: int | None
    _stop: Callable[[], None]
    _reload_tls: Callable[[], None]

    def stop(self) -> None:
        self._stop()

    def reload_tls(self) -> None:
        """Read the certificate files again (SIGHUP): new handshakes use them."""
        self._reload_tls()


def console_mount(app: App, settings: Settings) -> Mount:
    """The web console over this process's core services (--console, on with --dev)."""
    return create_console(
        app.console_sessions,
        app.organizations,
        app.applications,
        app.audit,
        app.tokens.keys,
        # Behind a proxy that terminates TLS (--allow-plaintext) the browser is on https.
        secure_cookies=settings.http_tls() is not None or settings.allow_plaintext,
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )


def shim_metrics(app: App, settings: Settings) -> ShimMetrics:
    """The shim's metrics, with the shared rate-limit counters' health when in Redis."""
    metrics = ShimMetrics(org_labels=settings.metrics_org_labels)
    if isinstance(app.counters, RedisCounters):
        metrics.registry.register(RateLimitCollector(app.counters))
    return metrics


def start_serving(
    prepared: Prepared,
    http_socket: socket.socket,
    *,
    metrics_socket: socket.socket | None = None,
    reuse_port: bool = False,
    app: App | None = None,
) -> Running:
    """Start this process's App (bootstrapped here unless given) and gRPC and HTTP over
    it, and /metrics on ``metrics_socket`` when given."""
    settings = prepared.settings
    if app is None:
        app = bootstrap(settings, root_key=prepared.root_key)
    grpc_server: GrpcServer | None = None
    http_server: HttpServer | None = None
    try:
        grpc_tls, http_tls = listener_tls(settings)
        app.start()
        try:
            grpc_server = create_server(
                app.servicers,
                app.store.ping,
                settings.grpc_host,
                settings.grpc_port,
                workers=settings.workers,
                health_timeout=settings.store_timeout_seconds,
                reuse_port=reuse_port,
                max_concurrent_rpcs=settings.max_concurrent_rpcs,
                tls=grpc_tls,
            )
        except RuntimeError:  # grpcio's "Failed to bind to address": it says no more
            raise unbindable("gRPC", "grpc", settings.grpc_host, settings.grpc_port, None) from None
        metrics = shim_metrics(app, settings)
        http_server = start_http_server(
            create_http_app(
                app.http_backend,
                settings.issuer,
                metrics,
                trusted_proxies=parse_networks(settings.trusted_proxies),
                ready_timeout=settings.store_timeout_seconds,
                console=console_mount(app, settings) if settings.console else None,
            ),
            http_socket,
            grace=settings.grace_period_seconds,
            read_timeout=settings.http_read_timeout_seconds,
            keep_alive_timeout=settings.http_keep_alive_timeout_seconds,
            max_connections=settings.http_max_connections,
            tls=http_tls,
        )
        metrics_server = (
            start_http_server(create_metrics_app(metrics), metrics_socket, grace=1)
            if metrics_socket is not None
            else None
        )
    except BaseException as exc:
        # Whatever started is stopped: no thread, pool or port outlives a failed start.
        if http_server is not None:
            http_server.stop(0)
        if grpc_server is not None:
            grpc_server.stop(0)
        app.close()
        if isinstance(exc, StoreUnavailable):
            raise unreachable(exc, settings.database_url) from None
        raise

    def stop() -> None:
        grace = settings.grace_period_seconds
        # Not ready first, on both transports, so that load balancers route around
        # this process; then both listeners drain at once, each within the grace
        # period (one after the other took twice as long, and gRPC said NOT_SERVING
        # only once HTTP had drained); the background work flushes last.
        grpc_server.not_serving()
        http_server.not_ready()
        log.info("shutting down: health NOT_SERVING, draining in-flight calls for %g s", grace)
        grpc_stopped = grpc_server.begin_stop(grace)
        http_server.begin_stop(grace)
        if metrics_server is not None:
            metrics_server.begin_stop(1)
        if not grpc_stopped.wait(grace + STOP_MARGIN_SECONDS):
            log.error("the gRPC server did not stop within %g s", grace + STOP_MARGIN_SECONDS)
        if not http_server.wait_stopped():
            log.error("the HTTP server did not stop within %g s", grace + STOP_MARGIN_SECONDS)
        if metrics_server is not None:
            metrics_server.wait_stopped()
        app.close()
        log.info("stopped")

    def reload_tls() -> None:
        grpc_server.reload_tls()
        http_server.reload_tls()

    return Running(
        grpc_server.port,
        http_server.port,
        metrics_server.port if metrics_server is not None else None,
        stop,
        reload_tls,
    )
