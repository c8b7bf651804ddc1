"""Serving the shim with uvicorn in a background thread (beside the gRPC server),
and stopping it gracefully: not ready first, then a drain bounded by the grace
period, where a request still running at its end gets a JSON 503."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from m2mauth.config import (
    HTTP_KEEP_ALIVE_TIMEOUT_SECONDS,
    HTTP_MAX_CONNECTIONS,
    HTTP_READ_TIMEOUT_SECONDS,
)
from m2mauth.http.connections import read_timeout_protocol
from m2mauth.http.errors import NO_STORE, unavailable
from m2mauth.tls import HttpServerTls

log = logging.getLogger("m2mauth.http")

# On every response, uvicorn's own (400, 503, 408) included: browsers must not
# guess a type other than the one sent (an error echoing input is never HTML).
RESPONSE_HEADERS = [("X-Content-Type-Options", "nosniff")]


# The route of m2mauth.http.app that load balancers probe: 503 from the moment a
# stop begins, before the listener closes.
READINESS_PATH = "/readyz"
# What a stop may take beyond the grace period: uvicorn's 0.1 s ticks, closing
# the connections, the lifespan's shutdown.
STOP_MARGIN_SECONDS = 2.0


class _Call:
    """One request in flight, and whether its answer is still the handler's to send."""

    __slots__ = ("_send", "cut_off", "started", "task")

    def __init__(self, send: Send, task: asyncio.Task[Any] | None) -> None:
        self._send = send
        self.task = task
        self.started = False
        self.cut_off = False

    async def send(self, message: Message) -> None:
        if self.cut_off:
            return  # a 503 went instead; the handler's late answer goes nowhere
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def unavailable(self) -> None:
        """RFC 6749 section 5.2's JSON, as for a database that does not answer."""
        err = unavailable()
        body = json.dumps(
            {"error": err.error, "error_description": "the server is shutting down; retry"}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in NO_STORE.items()),
            (b"retry-after", b"1"),
        ]
        await self._send({"type": "http.response.start", "status": 503, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


@dataclass
class _Drain:
    """ASGI middleware for a graceful stop.

    Once ``draining``, the readiness probe answers 503 ("shutting down").
    At :meth:`expire` (the grace period's end), every request whose handler has
    not started its answer gets a JSON 503 ``temporarily_unavailable`` at once.
    Without it uvicorn would cancel the handler, which (waiting in a thread on a
    hung database) answers nothing until the database does, and then uvicorn's
    plain-text 500, after a traceback in the log.
    """

    app: ASGIApp
    draining: bool = False
    calls: set[_Call] = field(default_factory=set)
    server_state: Any = None  # uvicorn's, to stop it waiting for abandoned handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.draining and scope["path"] == READINESS_PATH:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"shutting down\n"})
            return
        call = _Call(send, asyncio.current_task())
        self.calls.add(call)
        try:
            await self.app(scope, receive, call.send)
        except asyncio.CancelledError:
            if not call.cut_off:
                raise
            # Cancelled after it was answered: nothing more to say.
        finally:
            self.calls.discard(call)

    def expire(self) -> None:
        """The grace period is over: answer what is still waiting, abandon it."""
        waiting = [call for call in self.calls if not call.started and not call.cut_off]
        if waiting:
            log.warning("grace period over: %d request(s) answered 503", len(waiting))
        for call in waiting:
            call.cut_off = True
            answered = asyncio.ensure_future(call.unavailable())
            if call.task is not None:
                # Once answered, uvicorn has nothing to wait for: cancel the handler
                # (a thread it waits on may not end soon) and stop counting it.
                answered.add_done_callback(functools.partial(self._abandon, call.task))

    def _abandon(self, task: asyncio.Task[Any], _answered: object) -> None:
        task.cancel()
        if self.server_state is not None:
            self.server_state.tasks.discard(task)


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
    _drain: _Drain
    tls: HttpServerTls | None = None
    _stop_began: float | None = None
    _grace: float = 0.0

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def reload_tls(self) -> None:
        """Reload the certificate on the serving loop (see HttpServerTls.reload)."""
        if self.tls is not None:
            self._loop.call_soon_threadsafe(self.tls.reload)

    def not_ready(self) -> None:
        """/readyz answers 503 from now on; everything else is still served."""
        self._drain.draining = True

    def begin_stop(self, grace: float = 5.0) -> None:
        """Not ready, stop accepting, and let in-flight requests finish within
        ``grace`` seconds; those still running then get a JSON 503. Returns at once."""
        if self._stop_began is not None:
            return
        self._stop_began, self._grace = time.monotonic(), grace
        self.not_ready()
        self._server.should_exit = True
        with contextlib.suppress(RuntimeError):  # the loop has already ended
            self._loop.call_soon_threadsafe(self._loop.call_later, grace, self._drain.expire)

    def wait_stopped(self) -> bool:
        """Wait for :meth:`begin_stop` to finish, at most the grace period and a margin
        from its start; whether it did."""
        assert self._stop_began is not None, "begin_stop first"
        deadline = self._stop_began + self._grace + STOP_MARGIN_SECONDS
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace``), run lifespan."""
        self.begin_stop(grace)
        if not self.wait_stopped():
            log.error("the HTTP server did not stop within %g s", grace + STOP_MARGIN_SECONDS)


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
    drain = _Drain(app)
    config = uvicorn.Config(
        drain,
        http=read_timeout_protocol(read_timeout),
        log_level=log_level.lower(),
        # uvicorn's loggers propagate to ours (JSON, repeated lines rate-limited)
        # instead of getting their own stderr handler.
        log_config=None,
        access_log=False,
        # The client's address is the socket's unless --trusted-proxies says
        # otherwise (m2mauth.client_address); uvicorn would trust 127.0.0.1.
        proxy_headers=False,
        # A backstop only: at the grace period's end the drain has answered what
        # was left (_Drain.expire), a second before uvicorn would cancel it.
        timeout_graceful_shutdown=math.ceil(grace) + 1,
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
    drain.server_state = server.server_state
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
        port=sock.getsockname()[1],
        _server=server,
        _thread=thread,
        _loop=loop,
        _drain=drain,
        tls=tls,
    )


async def _serve(server: _ThreadedServer, sock: socket.socket, started: threading.Event) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    started.set()
    await task
