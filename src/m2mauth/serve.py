"""Running the server: start-up checks, bootstrap, serve (in one process or in
several sharing the ports), graceful stop."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError

from m2mauth.app import build_container, load_root_key
from m2mauth.config import Settings
from m2mauth.core.errors import StoreUnavailable
from m2mauth.core.signing_keys import SigningKeyError
from m2mauth.grpc.server import create_server
from m2mauth.grpc.token_servicer import TokenServicer
from m2mauth.http.app import create_http_app
from m2mauth.http.backend import GrpcBackend, InProcessBackend
from m2mauth.http.server import bind, start_http_server
from m2mauth.store.schema import SchemaError, migrate
from m2mauth.store.sql import SqlStore

log = logging.getLogger("m2mauth")

Echo = Callable[[str], None]


class StartupError(Exception):
    """The server cannot start; ``code`` is the process exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def unreachable(exc: Exception) -> StartupError:
    return StartupError(f"the database is unreachable: {exc.__cause__ or exc}", 3)


@dataclass(frozen=True)
class Prepared:
    settings: Settings
    root_key: bytes
    first_admin_key: str | None


def run(settings: Settings, stop: threading.Event, echo: Echo = print) -> int:
    """Serve until ``stop`` is set; return the process exit code."""
    many = settings.processes > 1
    reserved: list[socket.socket] = []
    try:
        try:
            # Bound first: with --http-port 0 the default issuer needs the real port.
            # With several processes the parent only reserves the ports (bound, not
            # listening); each worker binds them again with SO_REUSEPORT.
            http = bind(settings.http_host, settings.http_port, listen=not many, reuse_port=many)
            reserved.append(http)
            if many:
                reserved.append(
                    bind(settings.grpc_host, settings.grpc_port, listen=False, reuse_port=True)
                )
        except OSError as exc:
            raise StartupError(f"cannot bind: {exc}", 2) from None
        settings = _resolve_ports(settings, reserved)
        prepared = prepare(settings)
        if many:
            from m2mauth.workers import serve_workers  # noqa: PLC0415 (it imports us)

            return serve_workers(prepared, stop, lambda urls: _banner(prepared, urls, echo))
        return serve_in_process(prepared, http, stop, echo)
    except StartupError as exc:
        echo(f"m2mauth: cannot start: {exc}")
        return exc.code
    finally:
        for sock in reserved:
            sock.close()


def _resolve_ports(settings: Settings, reserved: list[socket.socket]) -> Settings:
    changes: dict[str, Any] = {}
    if not settings.http_port:
        changes["http_port"] = reserved[0].getsockname()[1]
    if len(reserved) > 1 and not settings.grpc_port:
        changes["grpc_port"] = reserved[1].getsockname()[1]
    return dataclasses.replace(settings, **changes).with_defaults() if changes else settings


def prepare(settings: Settings) -> Prepared:
    """Everything done once, before serving: schema, root key, signing keys, bootstrap."""
    try:
        if settings.dev:
            migrate(settings.database_url)
        store = SqlStore(settings.database_url)
    except (StoreUnavailable, DBAPIError) as exc:
        raise unreachable(exc) from None
    try:
        store.check_schema()
        try:
            root, created = load_root_key(settings)
        except (OSError, ValueError) as exc:
            raise StartupError(f"root key: {exc}", 2) from None
        if created:
            log.warning(
                "created a new root key in %s (mode 0600); it encrypts signing keys and keys "
                "credential hashes: back it up, and set M2MAUTH_ROOT_KEY in production",
                settings.root_key_file,
            )
        container = build_container(settings, store, root)
        # Signing keys exist before any worker serves (workers racing to create
        # the first key would each make one).
        container.tokens.ring.ensure_keys()
        first = container.admin_keys.bootstrap() if settings.dev else None
        return Prepared(settings, root, first)
    except SchemaError as exc:
        raise StartupError(str(exc), 2) from None
    except SigningKeyError as exc:
        # A signing key that this root key cannot decrypt: the wrong root key.
        raise StartupError(str(exc), 2) from None
    except StoreUnavailable as exc:
        raise unreachable(exc) from None
    finally:
        store.close()


@dataclass
class Running:
    """One process's servers, stoppable in order."""

    grpc_port: int
    http_port: int
    _stop: Callable[[], None]

    def stop(self) -> None:
        self._stop()


def start_serving(
    prepared: Prepared, http_socket: socket.socket, *, reuse_port: bool = False
) -> Running:
    """Open the store and start gRPC and HTTP in this process."""
    settings = prepared.settings
    # A connection for every thread that may hold one at once (gRPC's and the
    # shim's, ``workers`` each, plus background flushes): below that, SQLAlchemy
    # opens and closes overflow connections per request under load.
    store = SqlStore(settings.database_url, pool_size=2 * settings.workers + 2)
    container = build_container(settings, store, prepared.root_key)
    try:
        container.tokens.start()
    except StoreUnavailable as exc:
        container.tokens.close()
        store.close()
        raise unreachable(exc) from None
    grpc_server = create_server(
        container,
        settings.grpc_host,
        settings.grpc_port,
        workers=settings.workers,
        reuse_port=reuse_port,
    )
    backend = InProcessBackend(
        TokenServicer(container.tokens, container.admin_keys), store.ping, threads=settings.workers
    )
    http_server = start_http_server(
        create_http_app(backend, settings.issuer),
        http_socket,
        grace=settings.grace_period_seconds,
    )

    def stop() -> None:
        log.info("shutting down: health NOT_SERVING, draining in-flight calls")
        http_server.stop(settings.grace_period_seconds)
        grpc_server.stop(settings.grace_period_seconds)
        container.tokens.close()
        store.close()
        log.info("stopped")

    return Running(grpc_server.port, http_server.port, stop)


def serve_in_process(
    prepared: Prepared, http_socket: socket.socket, stop: threading.Event, echo: Echo
) -> int:
    running = start_serving(prepared, http_socket)
    settings = prepared.settings
    _banner(
        prepared,
        (
            f"{settings.grpc_host}:{running.grpc_port}",
            f"http://{settings.http_host}:{running.http_port}",
        ),
        echo,
    )
    stop.wait()
    running.stop()
    return 0


def _banner(prepared: Prepared, urls: tuple[str, str], echo: Echo) -> None:
    settings = prepared.settings
    target, http_url = urls
    log.info(
        "serving",
        extra={
            "grpc_target": target,
            "http_url": http_url,
            "issuer": settings.issuer,
            "processes": settings.processes,
        },
    )
    echo(f"m2mauth is serving gRPC on {target} (store: {_redact(settings.database_url)})")
    echo(f"OAuth over HTTP on {http_url} (issuer {settings.issuer})")
    if settings.processes > 1:
        echo(f"{settings.processes} processes share these ports")
    if prepared.first_admin_key:
        echo("")
        echo("This is a new database. Its first admin key (shown only now):")
        echo("")
        echo(f"    export M2MAUTH_ADMIN_KEY={prepared.first_admin_key}")
        echo("")
        echo("Send it as gRPC metadata `authorization: Bearer $M2MAUTH_ADMIN_KEY`.")
        echo("Next: create an organization, an application and a client secret; see README.md.")
    echo("Press Ctrl+C to stop.")


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}" if ":" in creds else url
    return url


def run_http_edge(
    upstream: str,
    host: str,
    port: int,
    issuer: str,
    stop: threading.Event,
    echo: Echo = print,
    grace: float = 10.0,
) -> int:
    """Serve only the OAuth HTTP endpoints, as a gRPC client of ``upstream``.

    The edge host holds no database credentials and no private keys: every
    decision is made by the upstream TokenService.
    """
    try:
        sock = bind(host, port)
    except OSError as exc:
        echo(f"m2mauth: cannot start: HTTP {host}:{port}: {exc}")
        return 2
    url = f"http://{host}:{sock.getsockname()[1]}"
    http_server = start_http_server(
        create_http_app(GrpcBackend(upstream), issuer or url), sock, grace=grace
    )
    log.info("serving HTTP", extra={"http_url": url, "upstream": upstream})
    echo(f"OAuth over HTTP on {url}, calling the TokenService at {upstream}")
    echo("Press Ctrl+C to stop.")
    stop.wait()
    http_server.stop(grace)
    sock.close()
    return 0
