"""A real gRPC server on port 0 over a real store, and stubs to call it."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2_grpc

from m2mauth.bootstrap import App, bootstrap
from m2mauth.config import Settings
from m2mauth.core.interfaces import Store
from m2mauth.grpc.server import GrpcServer, create_server
from m2mauth.store.sql import SqlStore
from m2mauth.v1 import (
    admin_key_service_pb2_grpc,
    application_service_pb2_grpc,
    audit_service_pb2_grpc,
    key_service_pb2_grpc,
    organization_service_pb2_grpc,
    token_service_pb2_grpc,
)
from tests.token_world import TokenWorld, make_world


@dataclass
class Stubs:
    orgs: organization_service_pb2_grpc.OrganizationServiceStub
    apps: application_service_pb2_grpc.ApplicationServiceStub
    audit: audit_service_pb2_grpc.AuditServiceStub
    tokens: token_service_pb2_grpc.TokenServiceStub
    keys: key_service_pb2_grpc.KeyServiceStub
    health: health_pb2_grpc.HealthStub
    admin_keys: admin_key_service_pb2_grpc.AdminKeyServiceStub


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def make_stubs(channel: grpc.Channel) -> Stubs:
    return Stubs(
        orgs=organization_service_pb2_grpc.OrganizationServiceStub(channel),
        apps=application_service_pb2_grpc.ApplicationServiceStub(channel),
        audit=audit_service_pb2_grpc.AuditServiceStub(channel),
        tokens=token_service_pb2_grpc.TokenServiceStub(channel),
        keys=key_service_pb2_grpc.KeyServiceStub(channel),
        health=health_pb2_grpc.HealthStub(channel),
        admin_keys=admin_key_service_pb2_grpc.AdminKeyServiceStub(channel),
    )


def make_settings(**overrides: object) -> Settings:
    # Nothing listens: the issuer is what tokens carry, named as production must.
    base = Settings(database_url="unused", root_key="unused", issuer="https://auth.example.test")
    return dataclasses.replace(base, **overrides).with_defaults()  # type: ignore[arg-type]


@pytest.fixture
def container(store: Store) -> Iterator[App]:
    built = bootstrap(make_settings(), store=store, root_key=secrets.token_bytes(32))
    built.start()
    yield built
    built.close()


def start_server(container: App) -> GrpcServer:
    return create_server(
        container.servicers, container.store.ping, "127.0.0.1", 0, workers=4, health_interval=0.1
    )


@pytest.fixture
def server(container: App) -> Iterator[GrpcServer]:
    srv = start_server(container)
    yield srv
    srv.stop(0)


@pytest.fixture
def stubs(server: GrpcServer) -> Iterator[Stubs]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield make_stubs(channel)


@pytest.fixture
def admin_key(container: App) -> str:
    """An environment admin key."""
    return container.admin_keys.create_local(None)[1]


@pytest.fixture
def world(store: Store) -> Iterator[TokenWorld]:
    """The token world of the unit tier, over a real store (SQLite and PostgreSQL)."""
    reopened: list[Store] = []

    def reopen() -> Store:
        reopened.append(SqlStore(store.url))  # type: ignore[attr-defined]
        return reopened[-1]

    w = make_world(store, reopen)
    w.components.ring.ensure_keys()
    yield w
    for other in reopened:
        other.close()
