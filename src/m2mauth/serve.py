"""Running the server: bind, prepare, serve (in one process or in several sharing
the ports), graceful stop; and the HTTP-only edge."""

from __future__ import annotations

import dataclasses
import logging
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from m2mauth.bootstrap import App
from m2mauth.config import Settings
from m2mauth.database_urls import redact
from m2mauth.http.app import create_http_app
from m2mauth.http.backend import GrpcBackend
from m2mauth.http.metrics import ShimMetrics, create_metrics_app
from m2mauth.http.server import bind, start_http_server
from m2mauth.startup import (
    EXIT_BAD_SETTINGS,
    Prepared,
    StartupError,
    listener_tls,
    prepare,
    prepare_app,
    start_serving,
    unbindable,
)
from m2mauth.tls import TlsError, on_sighup, upstream_credentials
from m2mauth.workers import serve_workers

log = logging.getLogger("m2mauth")

Echo = Callable[[str], None]


def run(settings: Settings, stop: threading.Event, echo: Echo = print) -> int:
    """Serve until ``stop`` is set; return the process exit code.

    A failure to start is one line on stderr that names the cause and the fix.
    """
    many = settings.processes > 1
    reserved: list[socket.socket] = []
    try:
        # Bound first: with --http-port 0 the default issuer needs the real port.
        # With several processes the parent only reserves the ports (bound, not
        # listening); each worker binds them again with SO_REUSEPORT.
        http_address = (settings.http_host, settings.http_port)
        reserved.append(_bind_or_explain("OAuth HTTP", "http", *http_address, many=many))
        grpc_address = (settings.grpc_host, settings.grpc_port)
        grpc_probe = _bind_or_explain("gRPC", "grpc", *grpc_address, many=many, listen=False)
        if many:
            reserved.append(grpc_probe)
        else:
            # One process: grpcio binds the port itself and, when it cannot, says only
            # "Failed to bind" after the store is opened. Asking first gives the reason
            # before any work is done.
            grpc_probe.close()
        http = reserved[0]
        settings = _resolve_ports(settings, reserved)
        # /metrics: one port per process (worker i on --metrics-port + i), so that a
        # scrape sees one whole process, never whichever worker the kernel picked.
        metrics_sockets = [
            _bind_or_explain(
                "metrics",
                "metrics",
                settings.metrics_host,
                settings.metrics_port + i if settings.metrics_port else 0,
                many=many,
            )
            for i in range(settings.processes)
        ]
        reserved += metrics_sockets
        metrics_ports = tuple(sock.getsockname()[1] for sock in metrics_sockets)
        if many:
            prepared = dataclasses.replace(prepare(settings), metrics_ports=metrics_ports)
            return serve_workers(prepared, stop, lambda urls: _banner(prepared, urls, echo))
        # One process: the App that checked the store is the one that serves.
        app, prepared = prepare_app(settings)
        prepared = dataclasses.replace(prepared, metrics_ports=metrics_ports)
        return serve_in_process(prepared, app, http, metrics_sockets[0], stop, echo)
    except StartupError as exc:
        _to_stderr(f"error: cannot start: {exc}")
        return exc.code
    finally:
        for sock in reserved:
            sock.close()


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _bind_or_explain(
    what: str, flag: str, host: str, port: int, *, many: bool, listen: bool = True
) -> socket.socket:
    """Bind host:port, or raise the StartupError that names the port and the flag
    that moves it. With ``many`` processes the port is only reserved (SO_REUSEPORT,
    not listening)."""
    try:
        return bind(host, port, listen=listen and not many, reuse_port=many)
    except OSError as exc:
        raise unbindable(what, flag, host, port, exc) from None


def _resolve_ports(settings: Settings, reserved: list[socket.socket]) -> Settings:
    changes: dict[str, Any] = {}
    if not settings.http_port:
        changes["http_port"] = reserved[0].getsockname()[1]
    if len(reserved) > 1 and not settings.grpc_port:
        changes["grpc_port"] = reserved[1].getsockname()[1]
    return dataclasses.replace(settings, **changes).with_defaults() if changes else settings


def serve_in_process(
    prepared: Prepared,
    app: App,
    http_socket: socket.socket,
    metrics_socket: socket.socket,
    stop: threading.Event,
    echo: Echo,
) -> int:
    running = start_serving(prepared, http_socket, metrics_socket=metrics_socket, app=app)
    uninstall = on_sighup(running.reload_tls)
    settings = prepared.settings
    _banner(
        prepared,
        (
            f"{settings.grpc_host}:{running.grpc_port}",
            f"{_http_scheme(settings)}://{settings.http_host}:{running.http_port}",
        ),
        echo,
    )
    stop.wait()
    uninstall()
    running.stop()
    return 0


def _http_scheme(settings: Settings) -> str:
    return "https" if settings.http_tls() else "http"


def _grpc_security(settings: Settings) -> str:
    if settings.grpc_tls() is None:
        return "plaintext"
    return "mutual TLS" if settings.tls_client_ca else "TLS"


def _metrics_line(settings: Settings, ports: tuple[int, ...]) -> str:
    host = settings.metrics_host
    if len(ports) == 1:
        return f"Prometheus metrics on http://{host}:{ports[0]}/metrics"
    each = ", ".join(str(port) for port in ports)
    return f"Prometheus metrics on http://{host}:PORT/metrics, one port per process: {each}"


def _banner(prepared: Prepared, urls: tuple[str, str], echo: Echo) -> None:
    settings = prepared.settings
    target, http_url = urls
    log.info(
        "serving",
        extra={
            "grpc_target": target,
            "grpc_security": _grpc_security(settings),
            "http_url": http_url,
            "issuer": settings.issuer,
            "processes": settings.processes,
            "metrics_ports": list(prepared.metrics_ports),
        },
    )
    echo(
        f"m2mauth is serving gRPC on {target}, {_grpc_security(settings)} "
        f"(store: {redact(settings.database_url)})"
    )
    echo(f"OAuth over HTTP on {http_url} (issuer {settings.issuer})")
    if settings.console:
        echo(f"Web console on {http_url}/console/ (sign in with an admin key)")
    echo(_metrics_line(settings, prepared.metrics_ports))
    if settings.processes > 1:
        echo(f"{settings.processes} processes share these ports")
    for warning in settings.plaintext_warnings():
        # --dev: trying m2mauth out from another machine on the LAN is allowed, and
        # said once it serves (a start that fails says only why).
        log.warning("no TLS (allowed under --dev): %s", warning)
        echo(f"warning: no TLS (allowed under --dev): {warning}")
    if prepared.first_admin_key:
        echo("")
        echo("This is a new database. Its first admin key (shown only now):")
        echo("")
        echo(f"    export M2MAUTH_ADMIN_KEY={prepared.first_admin_key}")
        echo("")
        echo("Send it as gRPC metadata `authorization: Bearer $M2MAUTH_ADMIN_KEY`.")
        echo("Next: create an organization, an application and a client secret; see README.md.")
    echo("Press Ctrl+C to stop.")


def run_http_edge(settings: Settings, stop: threading.Event, echo: Echo = print) -> int:
    """Serve only the OAuth HTTP endpoints, as a gRPC client of ``settings.upstream``.

    The edge host holds no database credentials and no private keys: every
    decision is made by the upstream TokenService.
    """
    host, port = settings.http_host, settings.http_port
    target, upstream_tls = settings.upstream_target()
    sockets: list[socket.socket] = []
    try:
        _, http_tls = listener_tls(settings)
        try:
            credentials = (
                upstream_credentials(
                    settings.upstream_ca, settings.upstream_cert, settings.upstream_key
                )
                if upstream_tls
                else None
            )
        except TlsError as exc:
            raise StartupError(f"upstream TLS: {exc}", EXIT_BAD_SETTINGS) from None
        sockets.append(_bind_or_explain("OAuth HTTP", "http", host, port, many=False))
        metrics_address = (settings.metrics_host, settings.metrics_port)
        sockets.append(_bind_or_explain("metrics", "metrics", *metrics_address, many=False))
    except StartupError as failure:
        for sock in sockets:
            sock.close()
        _to_stderr(f"error: cannot start: {failure}")
        return failure.code
    http, metrics_socket = sockets
    url = f"{'https' if http_tls else 'http'}://{host}:{http.getsockname()[1]}"
    metrics = ShimMetrics(org_labels=settings.metrics_org_labels)
    http_server = start_http_server(
        create_http_app(GrpcBackend(target, credentials), settings.issuer or url, metrics),
        http,
        grace=settings.grace_period_seconds,
        read_timeout=settings.http_read_timeout_seconds,
        keep_alive_timeout=settings.http_keep_alive_timeout_seconds,
        max_connections=settings.http_max_connections,
        tls=http_tls,
    )
    metrics_server = start_http_server(create_metrics_app(metrics), metrics_socket, grace=1)
    # The upstream's client certificate is read once: a new one takes a restart.
    uninstall = on_sighup(http_server.reload_tls)
    hop = "TLS" if upstream_tls else "plaintext"
    log.info("serving HTTP", extra={"http_url": url, "upstream": target, "upstream_tls": hop})
    echo(f"OAuth over HTTP on {url}, calling the TokenService at {target} ({hop})")
    echo(_metrics_line(settings, (metrics_server.port,)))
    echo("Press Ctrl+C to stop.")
    stop.wait()
    uninstall()
    # As a full server does (startup.start_serving): /readyz 503 first, then the
    # drain, bounded by the grace period.
    http_server.begin_stop(settings.grace_period_seconds)
    metrics_server.begin_stop(1)
    http_server.wait_stopped()
    metrics_server.wait_stopped()
    for sock in sockets:
        sock.close()
    return 0
