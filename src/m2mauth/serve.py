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
from m2mauth.http.server import bind, start_http_server
from m2mauth.startup import (
    Prepared,
    StartupError,
    prepare,
    prepare_app,
    start_serving,
    unbindable,
)
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
        if many:
            prepared = prepare(settings)
            return serve_workers(prepared, stop, lambda urls: _banner(prepared, urls, echo))
        # One process: the App that checked the store is the one that serves.
        app, prepared = prepare_app(settings)
        return serve_in_process(prepared, app, http, stop, echo)
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
    prepared: Prepared, app: App, http_socket: socket.socket, stop: threading.Event, echo: Echo
) -> int:
    running = start_serving(prepared, http_socket, app=app)
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
    echo(f"m2mauth is serving gRPC on {target} (store: {redact(settings.database_url)})")
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
        failure = unbindable("OAuth HTTP", "http", host, port, exc)
        _to_stderr(f"error: cannot start: {failure}")
        return failure.code
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
