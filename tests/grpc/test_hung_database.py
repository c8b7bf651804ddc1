"""A hung PostgreSQL (paused, or a table locked by someone else), seen from the
outside: calls fail UNAVAILABLE / 503 within the bound, gRPC health says
NOT_SERVING and /readyz 503 while it lasts, and everything recovers by itself.

The database is real; a TCP proxy between it and the server pauses (keeps the
connections open, forwards nothing), which is what a paused database or a
silent network looks like from the client's side. Ceilings are generous (the
bound plus 3 s); nothing else about speed is asserted.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import httpx
import psycopg
import pytest
from grpc_health.v1 import health, health_pb2

from m2mauth.bootstrap import App, bootstrap
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.models import AuditFilter, Principal
from m2mauth.grpc.server import GrpcServer, StoreHealthWatcher, create_server
from m2mauth.http.app import create_http_app
from m2mauth.http.backend import InProcessBackend
from m2mauth.http.server import HttpServer, bind, start_http_server
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from m2mauth.v1 import application_service_pb2 as app_pb
from m2mauth.v1 import organization_service_pb2 as org_pb
from m2mauth.v1 import resources_pb2 as res
from m2mauth.v1 import token_service_pb2 as token_pb
from tests.grpc.conftest import Stubs, bearer, make_settings, make_stubs
from tests.grpc.rich_errors import rich_error
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ENV = Principal(admin_key_id="ak_test", organization_id=None)
# --store-timeout-seconds in these tests, and the most a failing call may take:
# the bound, PostgreSQL's 2-second minimum to connect, and slack.
BOUND = 1.0
CEILING = BOUND + 3
# A client deadline past the ceiling: without the bound, calls end here, as
# DEADLINE_EXCEEDED, and fail the test instead of hanging it.
GIVE_UP = CEILING + 5
# Health probes every HEALTH_INTERVAL, each given the bound.
HEALTH_INTERVAL = 0.2


@dataclass
class Client:
    org_id: str
    client_id: str
    client_secret: str


@dataclass
class Servers:
    app: App
    stubs: Stubs
    http: httpx.Client
    admin_key: str
    proxy: TcpProxy

    def client(self) -> Client:
        org = self.app.organizations.create(ENV, f"org {secrets.token_hex(3)}", "", True)
        application = self.app.applications.create(ENV, org.id, ApplicationFields(name="svc"))
        _, secret = self.app.applications.create_secret(ENV, application.id, None)
        return Client(org.id, application.client_id, secret)

    def issue(self, client: Client) -> Any:
        return self.stubs.tokens.IssueToken(
            token_pb.IssueTokenRequest(
                grant_type="client_credentials",
                client_id=client.client_id,
                client_secret=client.client_secret,
            ),
            timeout=GIVE_UP,
        )

    def health(self) -> int:
        status: int = self.stubs.health.Check(
            health_pb2.HealthCheckRequest(), timeout=GIVE_UP
        ).status
        return status


@contextmanager
def servers(postgres_url: str) -> Iterator[Servers]:
    """gRPC and the HTTP shim of one process, over a database behind a proxy."""
    migrate(postgres_url)
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    store = SqlStore(urlunsplit(parts._replace(netloc=netloc)), timeout=BOUND)
    settings = make_settings(store_timeout_seconds=BOUND)
    app = bootstrap(settings, store=store, root_key=secrets.token_bytes(32))
    grpc_server: GrpcServer | None = None
    http_server: HttpServer | None = None
    sock = bind("127.0.0.1", 0)
    try:
        app.start()
        grpc_server = create_server(
            app.servicers,
            store.ping,
            "127.0.0.1",
            0,
            workers=8,
            health_interval=HEALTH_INTERVAL,
            health_timeout=BOUND,
        )
        shim = create_http_app(app.http_backend, settings.issuer, ready_timeout=BOUND)
        http_server = start_http_server(shim, sock, grace=1)
        _, admin_key = app.admin_keys.create_local(None)
        with (
            grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel,
            httpx.Client(base_url=f"http://127.0.0.1:{http_server.port}", timeout=GIVE_UP) as http,
        ):
            yield Servers(app, make_stubs(channel), http, admin_key, proxy)
    finally:
        proxy.resume()  # a test that failed paused: let the last writes through
        if http_server is not None:
            http_server.stop(1)
        if grpc_server is not None:
            grpc_server.stop(0)
        app.close()
        store.close()
        proxy.cut()
        sock.close()


def unavailable_in_time(call: Callable[[], object]) -> float:
    """Assert ``call`` fails UNAVAILABLE / STORE_UNAVAILABLE within the ceiling; how long."""
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        call()
    took = time.monotonic() - started
    err = rich_error(info.value)
    # Never UNAUTHENTICATED, NOT_FOUND or an inactive token: the store hangs.
    assert (err.code, err.reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
    assert took < CEILING
    return took


def http_503_in_time(call: Callable[[], httpx.Response]) -> float:
    started = time.monotonic()
    response = call()
    took = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable"
    assert took < CEILING
    return took


def first_time(condition: Callable[[], bool]) -> Future[float]:
    """When ``condition`` first holds, polled on a thread meanwhile (for the report)."""
    seen: Future[float] = Future()

    def poll() -> None:
        deadline = time.monotonic() + GIVE_UP
        while time.monotonic() < deadline:
            if condition():
                seen.set_result(time.monotonic())
                return
            time.sleep(0.05)
        seen.set_exception(TimeoutError("never"))

    threading.Thread(target=poll, daemon=True).start()
    return seen


def token_form(client: Client) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.client_secret,
    }


def test_a_paused_database_fails_calls_in_time_and_health_follows(postgres_url: str) -> None:
    with servers(postgres_url) as s:
        cached = s.client()
        token = s.issue(cached).access_token  # the authenticator now knows this client
        # Clients never seen by this process: their lookup must reach the store.
        fresh, fresh_for_http = s.client(), s.client()
        admin = bearer(s.admin_key)
        org_id = cached.org_id
        assert s.health() == SERVING
        assert s.http.get("/readyz").status_code == 200

        s.proxy.pause()
        paused_at = time.monotonic()
        not_serving = first_time(lambda: s.health() == NOT_SERVING)
        took = {
            "grpc token, cache miss": unavailable_in_time(lambda: s.issue(fresh)),
            "grpc introspection": unavailable_in_time(
                lambda: s.stubs.tokens.Introspect(
                    token_pb.IntrospectRequest(token=token), metadata=admin, timeout=GIVE_UP
                )
            ),
            "grpc management": unavailable_in_time(
                lambda: s.stubs.orgs.GetOrganization(
                    org_pb.GetOrganizationRequest(id=org_id), metadata=admin, timeout=GIVE_UP
                )
            ),
            "http token, cache miss": http_503_in_time(
                lambda: s.http.post("/oauth2/token", data=token_form(fresh_for_http))
            ),
            "http introspection": http_503_in_time(
                lambda: s.http.post(
                    "/oauth2/introspection",
                    data={"token": token},
                    headers={"Authorization": f"Bearer {s.admin_key}"},
                )
            ),
        }
        assert wait_for(lambda: s.health() == NOT_SERVING, timeout=CEILING)
        started = time.monotonic()
        assert s.http.get("/readyz").status_code == 503
        assert time.monotonic() - started < CEILING
        not_serving_after = not_serving.result(timeout=CEILING) - paused_at
        assert s.http.get("/healthz").status_code == 200  # the process itself is fine

        s.proxy.resume()
        resumed_at = time.monotonic()
        assert wait_for(lambda: s.health() == SERVING, timeout=15)
        assert wait_for(lambda: s.http.get("/readyz").status_code == 200, timeout=15)
        recovered_after = time.monotonic() - resumed_at
        assert s.issue(fresh).access_token
        reply = s.stubs.tokens.Introspect(
            token_pb.IntrospectRequest(token=token), metadata=admin, timeout=GIVE_UP
        )
        assert reply.active
        got = s.stubs.orgs.GetOrganization(
            org_pb.GetOrganizationRequest(id=org_id), metadata=admin, timeout=GIVE_UP
        )
        assert got.organization.id == org_id
        response = s.http.post("/oauth2/token", data=token_form(fresh_for_http))
        assert response.status_code == 200
        # Shown with -s: the numbers the README states.
        print({name: round(value, 2) for name, value in took.items()})
        print(f"NOT_SERVING after {not_serving_after:.2f} s; recovered {recovered_after:.2f} s")


def test_a_locked_table_fails_the_call_in_time_and_writes_nothing(postgres_url: str) -> None:
    with servers(postgres_url) as s:
        org = s.client().org_id
        fresh = s.client()
        admin = bearer(s.admin_key)
        holder = psycopg.connect(postgres_url)  # directly, not through the proxy
        try:
            holder.execute("LOCK TABLE applications IN ACCESS EXCLUSIVE MODE")
            unavailable_in_time(
                lambda: s.stubs.apps.CreateApplication(
                    app_pb.CreateApplicationRequest(
                        application=res.Application(organization_id=org, name="blocked")
                    ),
                    metadata=admin,
                    timeout=GIVE_UP,
                )
            )
            http_503_in_time(lambda: s.http.post("/oauth2/token", data=token_form(fresh)))
        finally:
            holder.close()  # ends its transaction: the lock is released
        listed = s.stubs.apps.ListApplications(
            app_pb.ListApplicationsRequest(organization_id=org), metadata=admin, timeout=GIVE_UP
        )
        assert [a.name for a in listed.applications] == ["svc"]
        with s.app.store.reading() as uow:
            events = uow.list_audit_events(
                AuditFilter(action="application.create"), before_id=None, limit=100
            )
        assert len(events) == 2  # the two made before the lock, not "blocked"
        assert s.issue(fresh).access_token


# --- the probes' own deadlines, whatever the store does ---------------------------


def test_health_counts_a_probe_that_does_not_answer_as_not_serving() -> None:
    release = threading.Event()
    calls: list[float] = []

    def hanging_probe() -> None:
        calls.append(time.monotonic())
        release.wait(30)

    servicer = health.HealthServicer()
    watcher = StoreHealthWatcher(hanging_probe, servicer, interval=0.1, timeout=0.3)
    try:
        started = time.monotonic()
        assert watcher.check_once() is False
        assert time.monotonic() - started < 0.3 + 3
        assert watcher.check_once() is False
        assert len(calls) == 1  # no second probe piles up behind the first
        release.set()
        assert wait_for(watcher.check_once)
    finally:
        release.set()
        watcher.stop()


def test_readyz_answers_503_when_the_store_does_not_answer() -> None:
    release = threading.Event()

    def hanging_ping() -> None:
        release.wait(30)

    backend = InProcessBackend(servicer=None, ping=hanging_ping)
    app = create_http_app(backend, "http://issuer.test", ready_timeout=0.3)
    sock = bind("127.0.0.1", 0)
    server = start_http_server(app, sock, grace=1)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=GIVE_UP) as client:
            started = time.monotonic()
            assert client.get("/readyz").status_code == 503
            assert time.monotonic() - started < 0.3 + 3
            release.set()
            assert client.get("/readyz").status_code == 200
    finally:
        release.set()
        server.stop(1)
        sock.close()
