"""The shim's transport under abuse, on a real socket: clients that disconnect,
dawdle (slowloris), hoard connections, or probe what server this is."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.http.conftest import Shim, running_shim
from tests.waiting import wait_for

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def served(sqlite_url: str, request: pytest.FixtureRequest) -> Iterator[Shim]:
    """The shim in process; ``@pytest.mark.parametrize("served", [{...}], indirect=True)``
    passes settings."""
    migrate(sqlite_url)
    store = SqlStore(sqlite_url)
    settings = getattr(request, "param", {})
    try:
        with running_shim(store, "in_process", **settings) as running:
            yield running
    finally:
        store.close()


def connect(shim: Shim) -> socket.socket:
    port = int(shim.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log lines that would page someone: errors and tracebacks."""
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= 40]


def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(
    served: Shim, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(5):
        with connect(served) as sock:
            sock.sendall(
                b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: " + FORM.encode() + b"\r\nContent-Length: 100\r\n\r\n"
                b"grant_type=client_"
            )
            time.sleep(0.05)  # the handler is now waiting for the rest of the body
    # The handler saw the disconnect: the metrics count it, as a client's error.
    with served.client() as http:
        assert wait_for(lambda: 'outcome="invalid_request"' in http.get("/metrics").text, 5)
        assert 'outcome="server_error"' not in http.get("/metrics").text
    assert problems(caplog) == []
