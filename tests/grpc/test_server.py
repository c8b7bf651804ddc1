"""Server behaviour: health, reflection, store outages, atomic writes."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from m2mauth.bootstrap import bootstrap
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.errors import StoreUnavailable
from m2mauth.core.interfaces import Store, UnitOfWork
from m2mauth.core.models import Principal
from m2mauth.grpc.server import create_server
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from m2mauth.v1 import organization_service_pb2 as org_pb
from m2mauth.v1 import resources_pb2 as res
from tests.delegating_store import DelegatingStore
from tests.grpc.conftest import Stubs, bearer, make_settings, make_stubs, start_server
from tests.grpc.rich_errors import rich_error
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_reports_serving_for_every_service(stubs: Stubs) -> None:
    for service in ("", "m2mauth.v1.TokenService", "m2mauth.v1.ApplicationService"):
        reply = stubs.health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == SERVING


def test_reflection_lists_the_services(server: Any) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert {
        "m2mauth.v1.TokenService",
        "m2mauth.v1.KeyService",
        "m2mauth.v1.OrganizationService",
        "m2mauth.v1.ApplicationService",
        "m2mauth.v1.AuditService",
        "grpc.health.v1.Health",
    } <= names


@contextmanager
def proxied_store(postgres_url: str) -> Iterator[tuple[SqlStore, TcpProxy]]:
    migrate(postgres_url)
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    store = SqlStore(urlunsplit(parts._replace(netloc=netloc)))
    try:
        yield store, proxy
    finally:
        proxy.cut()
        store.close()


def test_store_outage_is_unavailable_and_health_follows_it(postgres_url: str) -> None:
    with proxied_store(postgres_url) as (store, proxy):
        container = bootstrap(make_settings(), store=store, root_key=secrets.token_bytes(32))
        _, key = container.admin_keys.create_local(None)
        server = start_server(container)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stubs = make_stubs(channel)
                org = stubs.orgs.CreateOrganization(
                    org_pb.CreateOrganizationRequest(organization=res.Organization(name="A")),
                    metadata=bearer(key),
                ).organization

                proxy.cut()
                for call, request in (
                    (stubs.orgs.GetOrganization, org_pb.GetOrganizationRequest(id=org.id)),
                    (stubs.orgs.ListOrganizations, org_pb.ListOrganizationsRequest()),
                    (
                        stubs.orgs.CreateOrganization,
                        org_pb.CreateOrganizationRequest(organization=res.Organization(name="B")),
                    ),
                ):
                    with pytest.raises(grpc.RpcError) as info:
                        call(request, metadata=bearer(key), timeout=30)
                    err = rich_error(info.value)
                    # Never UNAUTHENTICATED or NOT_FOUND: the store is down, not the key.
                    assert (err.code, err.reason) == (
                        grpc.StatusCode.UNAVAILABLE,
                        "STORE_UNAVAILABLE",
                    )
                assert wait_for(
                    lambda: (
                        stubs.health.Check(health_pb2.HealthCheckRequest()).status == NOT_SERVING
                    )
                )

                proxy.restore()
                assert wait_for(
                    lambda: stubs.health.Check(health_pb2.HealthCheckRequest()).status == SERVING
                )
                got = stubs.orgs.GetOrganization(
                    org_pb.GetOrganizationRequest(id=org.id), metadata=bearer(key)
                ).organization
                assert got.id == org.id
                listed = stubs.orgs.ListOrganizations(
                    org_pb.ListOrganizationsRequest(), metadata=bearer(key)
                )
                assert [o.name for o in listed.organizations] == ["A"]  # "B" never written
        finally:
            server.stop(0)


class FailingAuditStore(DelegatingStore):
    """Wraps a store so that writing an audit event fails like a dropped connection."""

    def _wrap(self, uow: UnitOfWork) -> UnitOfWork:
        return _FailingAudit(uow)

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        with self.inner.unit_of_work() as uow:
            yield self._wrap(uow)

    @contextmanager
    def reading(self) -> Iterator[UnitOfWork]:
        with self.inner.reading() as uow:
            yield self._wrap(uow)


class _FailingAudit:
    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner

    def add_audit_event(self, *_: object) -> None:
        raise StoreUnavailable()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_change_whose_audit_event_fails_is_not_written(store: Store) -> None:
    failing = bootstrap(
        make_settings(), store=FailingAuditStore(store), root_key=secrets.token_bytes(32)
    )
    principal = Principal(admin_key_id="ak_test", organization_id=None)
    with pytest.raises(StoreUnavailable):
        failing.organizations.create(principal, "Half", "", None)
    intact = bootstrap(make_settings(), store=store, root_key=secrets.token_bytes(32))
    assert intact.organizations.list(principal, 0, "").items == []

    org = intact.organizations.create(principal, "Whole", "", None)
    app = intact.applications.create(principal, org.id, ApplicationFields(name="a"))
    with pytest.raises(StoreUnavailable):
        failing.applications.create_secret(principal, app.id, None)
    with pytest.raises(StoreUnavailable):
        failing.organizations.delete(principal, org.id, force=True)
    assert intact.applications.list_secrets(principal, app.id) == []
    assert intact.applications.get(principal, app.id).id == app.id


class _Exploding:
    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner

    def get_organization(self, *_: object) -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ExplodingStore(FailingAuditStore):
    def _wrap(self, uow: UnitOfWork) -> UnitOfWork:
        return _Exploding(uow)


def test_unexpected_errors_are_internal_without_details(store: Store) -> None:
    container = bootstrap(
        make_settings(), store=ExplodingStore(store), root_key=secrets.token_bytes(32)
    )
    _, key = container.admin_keys.create_local(None)
    server = start_server(container)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = make_stubs(channel)
            with pytest.raises(grpc.RpcError) as info:
                stubs.orgs.GetOrganization(
                    org_pb.GetOrganizationRequest(id="org_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
                    metadata=bearer(key),
                )
            err = rich_error(info.value)
            assert (err.code, err.reason) == (grpc.StatusCode.INTERNAL, "INTERNAL")
            assert "passwd" not in err.message
            assert "Traceback" not in err.message
    finally:
        server.stop(0)


def test_calls_beyond_the_concurrency_limit_are_refused_at_once(container: Any) -> None:
    server = create_server(
        container.servicers,
        container.store.ping,
        "127.0.0.1",
        0,
        workers=4,
        max_concurrent_rpcs=2,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = make_stubs(channel)
            # Two calls that last: health watches, each open until cancelled.
            watches = [stubs.health.Watch(health_pb2.HealthCheckRequest()) for _ in range(2)]
            for watch in watches:
                assert next(watch).status == SERVING
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                stubs.health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() - started < 2  # refused, not queued
            watches[0].cancel()
            assert wait_for(lambda: _answers(stubs), 5)
            watches[1].cancel()
    finally:
        server.stop(0)


def _answers(stubs: Stubs) -> bool:
    """Whether a call is admitted; refused only for the concurrency limit."""
    try:
        stubs.health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError as err:
        code = err.code()
    else:
        return True
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    return False
