"""The shim's transport under abuse, on a real socket: clients that disconnect,
dawdle (slowloris), hoard connections, or probe what server this is."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from m2mauth import logs
from m2mauth.bootstrap import bootstrap
from m2mauth.http.app import create_http_app
from m2mauth.http.backend import InProcessBackend
from m2mauth.http.metrics import ShimMetrics
from m2mauth.http.server import bind, start_http_server
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.http.conftest import shim_settings
from tests.waiting import wait_for

FORM = "application/x-www-form-urlencoded"
TOKEN_HEAD = b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: " + FORM.encode() + b"\r\n"


@dataclass
class Served:
    port: int
    metrics: ShimMetrics

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture
def serve(sqlite_url: str) -> Iterator[Callable[..., Served]]:
    """Start the shim (in-process backend) with the given transport options."""
    migrate(sqlite_url)
    with ExitStack() as stack:
        store = SqlStore(sqlite_url)
        stack.callback(store.close)

        def start(**options: Any) -> Served:
            sock = bind("127.0.0.1", 0)
            stack.callback(sock.close)
            settings = shim_settings(sock.getsockname()[1])
            app = bootstrap(settings, store=store, root_key=secrets.token_bytes(32))
            app.start()
            stack.callback(app.close)
            backend = InProcessBackend(app.servicers.tokens, store.ping)
            metrics = ShimMetrics()
            http = start_http_server(
                create_http_app(backend, settings.issuer, metrics), sock, grace=1, **options
            )
            stack.callback(http.stop, 1)
            return Served(http.port, metrics)

        yield start


@pytest.fixture
def served(serve: Callable[..., Served]) -> Served:
    return serve()


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log lines that would page someone: errors and tracebacks."""
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= 40]


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (monotonic)."""
    sock.settimeout(limit)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {limit} s")
    return received, time.monotonic()


@contextmanager
def dribbling(sock: socket.socket, data: bytes, interval: float) -> Iterator[None]:
    """Send ``data`` a byte every ``interval`` s from a thread, until closed."""
    stop = threading.Event()

    def run() -> None:
        for byte in data:
            if stop.wait(interval):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(5):
        with served.connect() as sock:
            sock.sendall(TOKEN_HEAD + b"Content-Length: 100\r\n\r\ngrant_type=client_")
            time.sleep(0.05)  # the handler is now waiting for the rest of the body
    # The handler saw the disconnect: the metrics count it, as a client's error.
    assert wait_for(lambda: b'outcome="invalid_request"' in served.metrics.render(), 5)
    assert b'outcome="server_error"' not in served.metrics.render()
    assert problems(caplog) == []


def test_headers_sent_a_byte_at_a_time_are_cut_off(serve: Callable[..., Served]) -> None:
    served = serve(read_timeout=1.0)
    with served.connect() as sock:
        opened = time.monotonic()
        with dribbling(sock, TOKEN_HEAD + b"X-Pad: " + b"a" * 1000, 0.05):
            received, closed = read_until_closed(sock, 10)
    assert 0.9 <= closed - opened <= 3, closed - opened
    assert received.startswith(b"HTTP/1.1 408 ")
    assert b"x-content-type-options: nosniff" in received.lower()
    assert b'"error": "invalid_request"' in received


def test_a_connection_that_says_nothing_is_closed(serve: Callable[..., Served]) -> None:
    served = serve(read_timeout=0.5)
    with served.connect() as sock:
        opened = time.monotonic()
        received, closed = read_until_closed(sock, 10)
    assert received == b""
    assert 0.4 <= closed - opened <= 3


def test_a_body_sent_a_byte_at_a_time_is_cut_off(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    served = serve(read_timeout=1.0)
    with served.connect() as sock:
        opened = time.monotonic()
        sock.sendall(TOKEN_HEAD + b"Content-Length: 5000\r\n\r\n")
        with dribbling(sock, b"grant_type=client_credentials" * 100, 0.05):
            _, closed = read_until_closed(sock, 10)
    assert 0.9 <= closed - opened <= 3
    assert problems(caplog) == []


def test_each_request_on_a_keep_alive_connection_gets_its_own_time(
    serve: Callable[..., Served],
) -> None:
    served = serve(read_timeout=0.6, keep_alive_timeout=5)
    with served.connect() as sock:
        started = time.monotonic()
        answers = 0
        # One connection throughout, well past one read timeout from its opening.
        while time.monotonic() - started < 2:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while not received.endswith(b"ok\n"):
                chunk = sock.recv(4096)
                assert chunk, f"closed after {time.monotonic() - started:.1f} s"
                received += chunk
            assert received.startswith(b"HTTP/1.1 200 ")
            answers += 1
            time.sleep(0.2)
    assert answers >= 5


def test_an_idle_keep_alive_connection_is_closed(serve: Callable[..., Served]) -> None:
    served = serve(keep_alive_timeout=1)
    with served.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = time.monotonic()
        received, closed = read_until_closed(sock, 10)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert 0.9 <= closed - answered <= 3


def test_connections_beyond_the_limit_are_refused_at_once(serve: Callable[..., Served]) -> None:
    served = serve(max_connections=3)
    held = [served.connect() for _ in range(3)]
    try:
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        # Three keep-alive connections are open: a fourth is one too many.
        with served.client() as http:
            reply = http.get("/healthz")
        assert reply.status_code == 503
        assert reply.headers["x-content-type-options"] == "nosniff"
    finally:
        for sock in held:
            sock.close()
    with served.client() as http:
        assert wait_for(lambda: http.get("/healthz").status_code == 200, 5)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("POST", "/oauth2/token", 400),
        ("GET", "/oauth2/token", 405),
        ("GET", "/nothing-here", 404),
        ("GET", "/oauth2/jwks", 200),
    ],
)
def test_responses_do_not_name_the_server_and_forbid_sniffing(
    served: Served, method: str, path: str, status: int
) -> None:
    with served.client() as http:
        reply = http.request(method, path)
    assert reply.status_code == status
    assert "server" not in reply.headers
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "date" in reply.headers  # RFC 9110 section 6.6.1: an origin server with a clock


def test_uvicorns_own_answers_forbid_sniffing_too(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        received, _ = read_until_closed(sock, 10)
    assert received.startswith(b"HTTP/1.1 400 ")
    assert b"x-content-type-options: nosniff" in received.lower()
    assert b"server:" not in received.lower()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_flood_of_garbage_writes_a_bounded_log(serve: Callable[..., Served]) -> None:
    # Undo what an earlier test's default uvicorn config did (its own handler, no
    # propagation); the server under test must route uvicorn's lines to ours again.
    logging.getLogger("uvicorn").propagate = True
    served = serve()
    lines = logs.rate_limit_repeated_lines(Lines())
    root = logging.getLogger()
    root.addHandler(lines)
    try:
        for _ in range(50):
            with served.connect() as sock:
                sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                read_until_closed(sock, 10)
    finally:
        root.removeHandler(lines)
    # uvicorn warns once per bad request; the server's handler lets a burst through.
    invalid = [m for m in lines.messages if "Invalid HTTP request" in m]
    assert len(invalid) == logs.REPEATED_LINES_BURST
