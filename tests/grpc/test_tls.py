"""gRPC over TLS and mutual TLS: who gets through the handshake, and who does not."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from m2mauth.bootstrap import App, bootstrap
from m2mauth.config import CertificateFiles
from m2mauth.grpc.server import GrpcServer, create_server
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from m2mauth.tls import GrpcServerTls
from tests.certs import Issued, TestCA
from tests.grpc.conftest import make_settings


@pytest.fixture
def app(sqlite_url: str) -> Iterator[App]:
    migrate(sqlite_url)
    store = SqlStore(sqlite_url)
    built = bootstrap(make_settings(), store=store, root_key=secrets.token_bytes(32))
    built.start()
    yield built
    built.close()
    store.close()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


def serve(app: App, server_cert: Issued, client_ca: Path | None = None) -> GrpcServer:
    tls = GrpcServerTls(
        CertificateFiles(str(server_cert.cert_path), str(server_cert.key_path)),
        str(client_ca) if client_ca else "",
    )
    return create_server(
        app.servicers, app.store.ping, "127.0.0.1", 0, workers=2, health_interval=0.1, tls=tls
    )


def health(
    port: int, ca: TestCA | None, client: Issued | None = None, *, host: str = "127.0.0.1"
) -> str:
    """The overall health as seen through a new channel, or the gRPC code that refused it."""
    target = f"{host}:{port}"
    if ca is None:
        channel = grpc.insecure_channel(target)
    else:
        credentials = grpc.ssl_channel_credentials(
            ca.cert_path.read_bytes(),
            client.key_pem() if client else None,
            client.cert_pem() if client else None,
        )
        channel = grpc.secure_channel(target, credentials)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.RpcError as err:
            return str(err.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def test_tls_serves_clients_that_trust_the_ca_and_nobody_in_plaintext(
    app: App, ca: TestCA, tmp_path: Path
) -> None:
    server = serve(app, ca.issue("server"))
    try:
        assert health(server.port, ca) == "SERVING"
        assert health(server.port, ca, host="localhost") == "SERVING"
        # No plaintext beside TLS on the same port.
        assert health(server.port, None) == "UNAVAILABLE"
        # A client that trusts another CA refuses the server.
        assert health(server.port, TestCA(tmp_path / "other")) == "UNAVAILABLE"
    finally:
        server.stop(0)


def test_a_certificate_for_another_host_is_refused_by_the_client(app: App, ca: TestCA) -> None:
    server = serve(app, ca.issue("elsewhere", ("auth.example.com",)))
    try:
        assert health(server.port, ca) == "UNAVAILABLE"
    finally:
        server.stop(0)


def test_mutual_tls_lets_in_only_certificates_of_the_client_ca(
    app: App, ca: TestCA, tmp_path: Path
) -> None:
    clients = TestCA(tmp_path / "clients", "internal clients CA")
    server = serve(app, ca.issue("server"), client_ca=clients.cert_path)
    try:
        assert health(server.port, ca, clients.issue("billing", ("billing",), client=True)) == (
            "SERVING"
        )
        # No client certificate: refused in the handshake, before any RPC runs.
        assert health(server.port, ca) == "UNAVAILABLE"
        # A certificate from another CA (here the server's own CA): refused too.
        assert health(server.port, ca, ca.issue("stranger", ("stranger",), client=True)) == (
            "UNAVAILABLE"
        )
    finally:
        server.stop(0)
