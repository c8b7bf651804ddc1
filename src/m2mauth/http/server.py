"""Serving the shim with uvicorn in a background thread (beside the gRPC server)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass

import uvicorn
import uvloop
from starlette.applications import Starlette

from m2mauth.config import (
    HTTP_KEEP_ALIVE_TIMEOUT_SECONDS,
    HTTP_MAX_CONNECTIONS,
    HTTP_READ_TIMEOUT_SECONDS,
)
from m2mauth.http.connections import read_timeout_protocol
from m2mauth.tls import HttpServerTls

log = logging.getLogger("m2mauth.http")

# On every response, uvicorn's own (400, 503, 408) included: browsers must not
# guess a type other than the one sent (an error echoing input is never HTML).
RESPONSE_HEADERS = [("X-Content-Type-Options", "nosniff")]


class _ThreadedServer(uvicorn.Server):
    # Signals belong to the main thread, which owns shutdown of both servers.
    def install_signal_handlers(self) -> None:
        return None


@dataclass
class HttpServer:
    port: int
    _server: _ThreadedServer
    _thread: threading.Thread
    _loop: asyncio.AbstractEventLoop
    tls: HttpServerTls | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def reload_tls(self) -> None:
        """Reload the certificate on the serving loop (see HttpServerTls.reload)."""
        if self.tls is not None:
            self._loop.call_soon_threadsafe(self.tls.reload)

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace``), run lifespan."""
        self._server.should_exit = True
        self._thread.join(timeout=grace + 5)


def bind(host: str, port: int, *, listen: bool = True, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to host:port (port 0: a free one).

    ``reuse_port``: several worker processes bind the same port and the kernel
    spreads connections between them (SO_REUSEPORT). A socket bound but not
    listening reserves the port without being handed connections.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections
    # only when the socket says it is TCP; without it, a response written in two
    # parts waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        if listen:
            sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def start_http_server(
    app: Starlette,
    sock: socket.socket,
    *,
    grace: float = 5.0,
    log_level: str = "warning",
    read_timeout: float = HTTP_READ_TIMEOUT_SECONDS,
    keep_alive_timeout: int = HTTP_KEEP_ALIVE_TIMEOUT_SECONDS,
    max_connections: int = HTTP_MAX_CONNECTIONS,
    tls: HttpServerTls | None = None,
) -> HttpServer:
    """Start serving ``app`` on a socket from :func:`bind`; with ``tls``, HTTPS only.

    A request must arrive whole within ``read_timeout`` seconds
    (:mod:`m2mauth.http.connections`); an idle keep-alive connection is closed
    after ``keep_alive_timeout``; beyond ``max_connections`` open connections
    (or requests in flight) uvicorn answers 503 at once.
    """
    config = uvicorn.Config(
        app,
        http=read_timeout_protocol(read_timeout),
        log_level=log_level.lower(),
        # uvicorn's loggers propagate to ours (JSON, repeated lines rate-limited)
        # instead of getting their own stderr handler.
        log_config=None,
        access_log=False,
        # The client's address is the socket's unless --trusted-proxies says
        # otherwise (m2mauth.client_address); uvicorn would trust 127.0.0.1.
        proxy_headers=False,
        timeout_graceful_shutdown=int(grace) or None,
        timeout_keep_alive=keep_alive_timeout,
        # uvicorn counts the connection being served among those open: +1 makes
        # max_connections the number served at once.
        limit_concurrency=max_connections + 1,
        # No "server: uvicorn": what runs here is nobody's business.
        server_header=False,
        headers=RESPONSE_HEADERS,
        lifespan="on",
        # uvicorn serves with the context this returns; keeping it ours is what lets
        # a SIGHUP load a new certificate into it (HttpServerTls.reload).
        ssl_context_factory=(lambda *_: tls.context) if tls is not None else None,
    )
    server = _ThreadedServer(config)
    started = threading.Event()
    # uvloop: the event loop in C (uvicorn's own default when installed).
    loop = uvloop.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(_serve(server, sock, started))
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="http", daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the HTTP server did not start")
    return HttpServer(
        port=sock.getsockname()[1], _server=server, _thread=thread, _loop=loop, tls=tls
    )


async def _serve(server: _ThreadedServer, sock: socket.socket, started: threading.Event) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    started.set()
    await task
