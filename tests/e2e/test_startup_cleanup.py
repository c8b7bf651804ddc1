"""A start that fails half-way leaves nothing running: no background thread, no open store."""

from __future__ import annotations

import secrets
import socket
import threading

import pytest

from m2mauth.config import Settings
from m2mauth.http.server import bind
from m2mauth.startup import Prepared, StartupError, start_serving

JOB_THREADS = ("usage-flush", "maintenance")


def test_a_taken_grpc_port_is_one_clear_error_and_stops_what_started(sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        http = bind("127.0.0.1", 0)
        settings = Settings(
            database_url=sqlite_url,
            root_key="unused",
            grpc_port=port,
            http_port=http.getsockname()[1],
            dev=True,
            signing_algorithm="ES256",
        ).with_defaults()
        from m2mauth.store.schema import migrate  # noqa: PLC0415

        migrate(sqlite_url)
        prepared = Prepared(settings, secrets.token_bytes(32), None)
        try:
            with pytest.raises(StartupError) as info:
                start_serving(prepared, http)
        finally:
            http.close()
    assert info.value.code == 2
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "--grpc-port" in message
    assert not [t.name for t in threading.enumerate() if t.name in JOB_THREADS]
