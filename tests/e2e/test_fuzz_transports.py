"""Random bytes, forms and headers at every RPC and HTTP endpoint of a real server.

Whatever arrives, the answer is a client error or a success, never INTERNAL,
UNKNOWN or a 5xx, and the server's log (JSON, as in production) holds no
error and no traceback. The number of examples is bounded so the suite stays
fast; each run draws new ones.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import grpc
import httpx
import pytest
from google.protobuf import descriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m2mauth.bootstrap import bootstrap
from m2mauth.config import Settings
from m2mauth.grpc.server import create_server
from m2mauth.http.app import create_http_app
from m2mauth.http.server import bind, start_http_server
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from m2mauth.v1 import (
    admin_key_service_pb2,
    application_service_pb2,
    audit_service_pb2,
    key_service_pb2,
    organization_service_pb2,
    token_service_pb2,
)
from tests.e2e.test_no_secret_is_kept import ServerLog

SERVICE_FILES = (
    admin_key_service_pb2.DESCRIPTOR,
    application_service_pb2.DESCRIPTOR,
    audit_service_pb2.DESCRIPTOR,
    key_service_pb2.DESCRIPTOR,
    organization_service_pb2.DESCRIPTOR,
    token_service_pb2.DESCRIPTOR,
    health_pb2.DESCRIPTOR,
    reflection_pb2.DESCRIPTOR,
)
METHODS = [
    method
    for file in SERVICE_FILES
    for service in file.services_by_name.values()
    for method in service.methods
]
# Codes that say "the server failed", where the caller did.
SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Served:
    grpc_target: str
    http_url: str
    admin_key: str
    log: ServerLog

    def assert_log_is_clean(self) -> None:
        for line in self.log.lines.getvalue().splitlines():
            entry = json.loads(line)
            assert "exception" not in entry, line
            assert entry["level"] not in ("error", "critical"), line


@pytest.fixture
def served(sqlite_url: str) -> Iterator[Served]:
    migrate(sqlite_url)
    store = SqlStore(sqlite_url)
    log = ServerLog()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(log)
    root.setLevel(logging.INFO)
    logging.getLogger("uvicorn").propagate = True  # see tests/http/test_abuse.py
    sock = bind("127.0.0.1", 0)
    config = Settings(
        database_url="unused", root_key="unused", http_port=sock.getsockname()[1]
    ).with_defaults()
    app = bootstrap(config, store=store, root_key=secrets.token_bytes(32))
    app.start()
    grpc_server = create_server(app.servicers, store.ping, "127.0.0.1", 0, workers=4)
    http = start_http_server(create_http_app(app.http_backend, config.issuer), sock, grace=1)
    _, admin_key = app.admin_keys.create_local(None)
    try:
        yield Served(
            f"127.0.0.1:{grpc_server.port}", f"http://127.0.0.1:{http.port}", admin_key, log
        )
    finally:
        http.stop(1)
        grpc_server.stop(0)
        app.close()
        sock.close()
        store.close()
        root.removeHandler(log)
        root.setLevel(previous)


def _call(
    channel: grpc.Channel,
    method: descriptor.MethodDescriptor,
    body: bytes,
    md: list[tuple[str, str]],
) -> grpc.StatusCode:
    """Send ``body`` as the request of ``method``; the call's status code."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.server_streaming:
        # A stream may stay open (a health watch): its first answer is enough.
        if method.client_streaming:
            replies = channel.stream_stream(path)(iter([body]), timeout=10, metadata=md)
        else:
            replies = channel.unary_stream(path)(body, timeout=10, metadata=md)
        try:
            next(replies, None)
        except grpc.RpcError as err:
            return err.code()
        replies.cancel()
        return grpc.StatusCode.OK
    try:
        channel.unary_unary(path)(body, timeout=10, metadata=md)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_random_bytes_at_every_rpc(served: Served) -> None:
    with grpc.insecure_channel(served.grpc_target) as channel:

        @FUZZ
        @given(
            method=st.sampled_from(METHODS),
            body=st.binary(max_size=300),
            authenticated=st.booleans(),
        )
        def check(method: descriptor.MethodDescriptor, body: bytes, authenticated: bool) -> None:
            md = [("authorization", f"Bearer {served.admin_key}")] if authenticated else []
            code = _call(channel, method, body, md)
            assert code not in SERVER_FAULTS, (method.full_name, body, code)

        check()
    served.assert_log_is_clean()


ENDPOINTS = [
    "/oauth2/token",
    "/oauth2/introspection",
    "/oauth2/revoke",
    "/oauth2/jwks",
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
]
PARAMETERS = [
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "audience",
    "resource",
    "token",
    "token_type_hint",
]
# Header values as HTTP carries them: visible Latin-1, spaces and tabs.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
).map(str.strip)
form = st.lists(
    st.tuples(st.sampled_from(PARAMETERS) | st.text(max_size=10), st.text(max_size=40)),
    max_size=6,
)
authorization = st.one_of(
    st.none(),
    st.builds(lambda v: f"Basic {v}".strip(), header_text),
    st.builds(lambda v: f"Bearer {v}".strip(), header_text),
    header_text,
)
content_type = (
    st.sampled_from(["application/x-www-form-urlencoded", "application/json", "text/plain", ""])
    | header_text
)


@st.composite
def http_requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    path = draw(st.sampled_from(ENDPOINTS))
    headers: list[tuple[bytes, bytes]] = []
    if (auth := draw(authorization)) is not None:
        headers.append((b"authorization", auth.encode("latin-1")))
    headers.append((b"content-type", draw(content_type).encode("latin-1")))
    body = draw(form.map(lambda pairs: urlencode(pairs).encode()) | st.binary(max_size=300))
    return method, path, headers, body


def test_random_requests_at_every_http_endpoint(served: Served) -> None:
    with httpx.Client(base_url=served.http_url, timeout=10) as http:

        @FUZZ
        @given(request=http_requests())
        def check(request: tuple[str, str, list[tuple[bytes, bytes]], bytes]) -> None:
            method, path, headers, body = request
            reply = http.request(method, path, headers=headers, content=body)
            assert reply.status_code < 500, (request, reply.status_code, reply.text)
            assert "server" not in reply.headers

        check()
    served.assert_log_is_clean()
