"""The OAuth HTTP shim on a real socket, over each backend, with a real store.

``shim`` runs once with the in-process backend (what ``m2mauth serve`` does)
and once through a real gRPC server (what ``m2mauth serve-http --upstream``
does): the shim must behave identically either way.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from m2mauth.bootstrap import App, bootstrap
from m2mauth.config import Settings
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.interfaces import Store
from m2mauth.core.models import Principal, TokenEndpointAuthMethod
from m2mauth.grpc.server import GrpcServer, create_server
from m2mauth.http.app import create_http_app
from m2mauth.http.backend import GrpcBackend, InProcessBackend, TokenBackend
from m2mauth.http.metrics import ShimMetrics
from m2mauth.http.server import HttpServer, bind, start_http_server
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore

ENV = Principal(admin_key_id="ak_test", organization_id=None)
BACKENDS = ("in_process", "grpc_upstream")


@dataclass
class Partner:
    """An application with a live secret, as a partner holds it."""

    org_id: str
    app_id: str
    client_id: str
    client_secret: str


@dataclass
class Shim:
    base_url: str
    issuer: str
    container: App
    admin_key: str
    backend_kind: str
    metrics: ShimMetrics

    def partner(self, scopes: tuple[str, ...] = (), audiences: tuple[str, ...] = ()) -> Partner:
        c = self.container
        org = c.organizations.create(ENV, f"org {secrets.token_hex(3)}", "", True)
        app = c.applications.create(
            ENV, org.id, ApplicationFields(name="svc", scopes=scopes, audiences=audiences)
        )
        _, secret = c.applications.create_secret(ENV, app.id, None)
        return Partner(org.id, app.id, app.client_id, secret)

    def keyed_partner(self, jwks: str, scopes: tuple[str, ...] = ()) -> Partner:
        """An application that authenticates with private_key_jwt (no secret)."""
        c = self.container
        org = c.organizations.create(ENV, f"org {secrets.token_hex(3)}", "", True)
        app = c.applications.create(
            ENV,
            org.id,
            ApplicationFields(
                name="keyed",
                scopes=scopes,
                token_endpoint_auth_method=TokenEndpointAuthMethod.PRIVATE_KEY_JWT,
                jwks=jwks,
            ),
        )
        return Partner(org.id, app.id, app.client_id, "")

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/oauth2/token"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)


def shim_settings(http_port: int, **overrides: object) -> Settings:
    base = Settings(
        database_url="unused",
        root_key="unused",
        http_port=http_port,
        signing_algorithm="ES256",
    )
    return dataclasses.replace(base, **overrides).with_defaults()  # type: ignore[arg-type]


@contextmanager
def running_shim(store: Store, backend_kind: str, **settings: object) -> Iterator[Shim]:
    """Start the token components, (a gRPC server,) and the shim on port 0."""
    sock = bind("127.0.0.1", 0)
    config = shim_settings(sock.getsockname()[1], **settings)
    container = bootstrap(config, store=store, root_key=secrets.token_bytes(32))
    container.start()
    grpc_server: GrpcServer | None = None
    backend: TokenBackend
    if backend_kind == "grpc_upstream":
        grpc_server = create_server(
            container.servicers,
            container.store.ping,
            "127.0.0.1",
            0,
            workers=8,
            health_interval=0.2,
        )
        backend = GrpcBackend(f"127.0.0.1:{grpc_server.port}")
    else:
        servicer = container.servicers.tokens
        backend = InProcessBackend(servicer, store.ping)
    metrics = ShimMetrics(org_labels=config.metrics_org_labels)
    http: HttpServer = start_http_server(
        create_http_app(backend, config.issuer, metrics), sock, grace=1
    )
    try:
        _, admin_key = container.admin_keys.create_local(None)
        yield Shim(
            base_url=f"http://127.0.0.1:{http.port}",
            issuer=config.issuer,
            container=container,
            admin_key=admin_key,
            backend_kind=backend_kind,
            metrics=metrics,
        )
    finally:
        http.stop(1)
        if grpc_server is not None:
            grpc_server.stop(0)
        container.close()
        sock.close()


@pytest.fixture(params=BACKENDS)
def shim(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Shim]:
    migrate(sqlite_url)
    store = SqlStore(sqlite_url)
    try:
        with running_shim(store, request.param) as running:
            yield running
    finally:
        store.close()


@pytest.fixture
def http(shim: Shim) -> Iterator[httpx.Client]:
    with shim.client() as client:
        yield client


@pytest.fixture
def partner(shim: Shim) -> Partner:
    return shim.partner(scopes=("invoices:read", "invoices:write"))
