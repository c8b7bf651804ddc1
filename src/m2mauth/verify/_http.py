"""The little HTTP the kit needs (JWKS GET, introspection POST): stdlib urllib only.

Like pyjwt's ``PyJWKClient`` it follows no redirects and accepts only http(s)
URLs; unlike it, it bounds the response size and the total time, and returns the
headers (for ``Cache-Control``). Plain http is refused except to a loopback host
unless the caller opts in: tokens and client secrets travel over it (RFC 6750
section 5.3, RFC 7662 section 4).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

_CHUNK = 64 * 1024


class HttpFailure(Exception):
    """The request did not produce a complete response (network, timeout, too large)."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Message
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: a JWKS or introspection URL is configured, not discovered."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_http: bool) -> str:
    """Return ``url`` if it is https (or http to loopback, or http when allowed)."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme == "https" or (scheme == "http" and (allow_http or _is_loopback(parsed.hostname))):
        if not parsed.hostname:
            raise ValueError(f"URL has no host: {url!r}")
        return url
    if scheme == "http":
        raise ValueError(
            f"refusing plain http to a non-loopback host: {url!r} (pass allow_http=True "
            "only on a network you trust)"
        )
    raise ValueError(f"only http(s) URLs are supported: {url!r}")


class AddressRefused(OSError):
    """The host's address is not one this exchange may connect to."""


class _Exchange:
    """The sockets of one exchange, cut at its deadline when the host is untrusted.

    Socket timeouts bound each read, not their sum: a server that sends a byte
    just inside the timeout (headers, TLS handshake or body) would hold the
    caller for hours. For a host someone else chose, a timer shuts every socket
    of the exchange down when the time is up, and a blocked read then fails.
    The verify kit's own calls (the operator's JWKS and introspection URLs) skip
    the timer: a thread per introspection would cost more than it guards.
    """

    def __init__(
        self, timeout: float, peer_allowed: Callable[[str], bool] | None, cut: bool
    ) -> None:
        self._peer_allowed = peer_allowed
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._expired = False
        # A thread per exchange: only where the other end is not trusted.
        self._timer = threading.Timer(timeout, self._expire) if cut else None
        if self._timer is not None:
            self._timer.daemon = True

    def __enter__(self) -> _Exchange:
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def connect(self, address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        """socket.create_connection, then the peer's address checked (the address
        actually connected to: a name resolving elsewhere later changes nothing)."""
        sock = socket.create_connection(address, *args, **kwargs)
        peer = str(sock.getpeername()[0])
        if self._peer_allowed is not None and not self._peer_allowed(peer):
            sock.close()
            raise AddressRefused(f"{address[0]} is {peer}, an address not allowed here")
        self.track(sock)
        return sock

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self._expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def handlers(self, ssl_context: ssl.SSLContext | None) -> list[Any]:
        exchange = self

        class Connection(http.client.HTTPConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._create_connection = exchange.connect

        class SecureConnection(http.client.HTTPSConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._create_connection = exchange.connect

            def connect(self) -> None:
                # HTTPSConnection.connect, with the TLS socket tracked before its
                # handshake (which a slow server can drag out too). No proxy
                # tunnel: this client never uses one.
                http.client.HTTPConnection.connect(self)
                sock = self._context.wrap_socket(  # type: ignore[attr-defined]
                    self.sock, server_hostname=self.host, do_handshake_on_connect=False
                )
                exchange.track(sock)
                sock.do_handshake()
                self.sock = sock

        class Handler(urllib.request.HTTPHandler):
            def http_open(self, req: urllib.request.Request) -> Any:
                return self.do_open(Connection, req)

        class SecureHandler(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> Any:
                return self.do_open(SecureConnection, req, context=ssl_context)

        return [Handler(), SecureHandler()]


def _shut(sock: socket.socket) -> None:
    # The plain socket call, also on a TLS socket: it unblocks a read in progress
    # in another thread without touching the TLS state. On a closed socket (the
    # exchange ended) it fails harmlessly: the object knows it is closed.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def request(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float,
    max_bytes: int,
    ssl_context: ssl.SSLContext | None = None,
    peer_allowed: Callable[[str], bool] | None = None,
    env_proxies: bool = True,
    untrusted: bool = False,
) -> HttpResponse:
    """One HTTP exchange; any HTTP status is returned, transport failures raise.
    ``timeout`` bounds each socket operation and is checked between reads of the
    body; with ``untrusted`` (a host someone else chose) a timer cuts the
    connection at ``timeout`` whatever the host does. ``peer_allowed``: the IP
    addresses it may connect to (checked on the connected socket).
    ``env_proxies``: whether the proxy variables of the environment apply (a
    server fetching on someone else's behalf says no: its request must go where
    the URL says)."""
    if urlparse(url).scheme.lower() not in ("http", "https"):
        raise ValueError(f"only http(s) URLs are supported: {url!r}")
    req = urllib.request.Request(  # noqa: S310
        url, data=data, headers=dict(headers or {}), method=method
    )
    deadline = time.monotonic() + timeout
    try:
        with _Exchange(timeout, peer_allowed, untrusted) as exchange:
            handlers: list[Any] = [_NoRedirect(), *exchange.handlers(ssl_context)]
            if not env_proxies:
                handlers.append(urllib.request.ProxyHandler({}))
            opener = urllib.request.build_opener(*handlers)
            try:
                response = opener.open(req, timeout=timeout)
            except HTTPError as err:
                response = err  # a non-2xx answer is still an answer
            with response:
                status = int(response.getcode() or 0)
                response_headers = response.headers
                body = _read_bounded(response, max_bytes, deadline)
    except (URLError, TimeoutError, OSError, http.client.HTTPException, ValueError) as err:
        raise HttpFailure(_reason(err)) from err
    return HttpResponse(status=status, headers=response_headers, body=body)


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None)  # URLError wraps the socket's error
    if isinstance(reason, AddressRefused):
        return str(reason)
    if isinstance(err, AddressRefused):
        return str(err)
    if isinstance(reason, BaseException):
        return type(reason).__name__
    return type(err).__name__


def _read_bounded(response: Any, max_bytes: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise HttpFailure("response took too long")
        chunk: bytes = response.read(min(_CHUNK, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise HttpFailure("response too large")
