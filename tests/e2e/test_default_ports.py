"""`make test` beside `make run`: the suite runs with the default ports taken."""

from __future__ import annotations

import errno
import socket

import pytest

from tests.conftest import DEFAULT_PORTS


@pytest.mark.parametrize(("what", "port"), DEFAULT_PORTS.items())
def test_the_default_ports_are_taken_while_the_suite_runs(what: str, port: int) -> None:
    # Held by the session fixture in tests/conftest.py, or by a `make run` already
    # serving: either way, a test that bound this port instead of 0 has failed.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="in use") as info:
            sock.bind(("127.0.0.1", port))
    assert info.value.errno == errno.EADDRINUSE, f"{what} port {port}: {info.value}"
