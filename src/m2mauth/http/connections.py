"""uvicorn's HTTP protocol with a read timeout: a client must send its request in time.

uvicorn (0.54, httptools) closes a connection only when it is idle after a
response (``timeout_keep_alive``). A connection that was just opened, or that
sends its request line and headers a byte at a time, is never closed: measured,
a client sending one header byte every half second was still connected after
20 s. Enough such clients hold every connection slot (slowloris), and a body
trickled the same way holds a handler waiting for it.

Here every request must arrive whole (headers and body) within ``seconds`` of
the connection opening (the first request) or of its first byte (the next
ones on a keep-alive connection). The wait for the handler's answer is not
counted. A client that is too slow gets ``408 Request Timeout`` (RFC 9110
section 15.5.9, "the server ... SHOULD send a 'close' connection option") if
the handler has not seen the request yet, and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _timeout_response(seconds: float, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = json.dumps(
        {
            "error": "invalid_request",
            "error_description": f"the request was not received within {seconds:g} s",
        }
    ).encode()
    head = [b"HTTP/1.1 408 Request Timeout"]
    head += [name + b": " + value for name, value in default_headers]
    head += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class ReadTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes connections whose request does not arrive in time."""

    read_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        # Between the first byte of a request and the end of its headers: the
        # handler has not been started, so the answer on timeout is ours to send.
        self._in_headers = False

    def _arm(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        # (A pipelined request's 408 must not cut into the previous response.)
        if self._in_headers and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(
                _timeout_response(self.read_timeout, self.server_state.default_headers)
            )
        # Otherwise the connection is silent, or a handler is waiting for the body:
        # closing makes it see a disconnect.
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._arm()  # a no-op for the first request: its clock runs from connecting

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def read_timeout_protocol(seconds: float) -> type[ReadTimeoutProtocol]:
    """The protocol class for one server, with its timeout (uvicorn builds one per connection)."""
    return type("ReadTimeoutProtocol", (ReadTimeoutProtocol,), {"read_timeout": seconds})
