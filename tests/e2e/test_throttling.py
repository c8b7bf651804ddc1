"""Throttling and quotas as partners meet them: real servers, real sockets, real Redis.

An attacker on 127.0.0.2 sends 300 bad secrets for a real client_id, over
HTTP and gRPC; it gets 429 with Retry-After and RESOURCE_EXHAUSTED with
RetryInfo and QuotaFailure, while the real client on 127.0.0.1 keeps getting
tokens throughout. The same with the counters in this process and in Redis,
where two servers share one budget.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from m2mauth.bootstrap import App, bootstrap
from m2mauth.client_address import parse_networks
from m2mauth.config import Settings
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.models import Principal
from m2mauth.grpc.server import GrpcServer, create_server
from m2mauth.http.app import create_http_app
from m2mauth.http.server import HttpServer, bind, start_http_server
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from m2mauth.v1 import token_service_pb2 as token_pb
from m2mauth.v1 import token_service_pb2_grpc as token_grpc
from tests.tcp_proxy import TcpProxy

ENV = Principal(admin_key_id="ak_setup", organization_id=None)
ATTACKER = "127.0.0.2"
PER_CLIENT = 10


@dataclass
class Server:
    app: App
    grpc: GrpcServer
    http: HttpServer

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc.port}"


@contextlib.contextmanager
def serving(database_url: str, root_key: bytes, **overrides: Any) -> Iterator[Server]:
    sock = bind("127.0.0.1", 0)
    settings = Settings(
        database_url=database_url,
        root_key="unused",
        http_port=sock.getsockname()[1],
        signing_algorithm="ES256",
        auth_failures_per_client_per_minute=PER_CLIENT,
        **overrides,
    ).with_defaults()
    store = SqlStore(database_url)
    app = bootstrap(settings, store=store, root_key=root_key)
    app.start()
    grpc_server = create_server(app.servicers, store.ping, "127.0.0.1", 0, workers=4)
    shim = create_http_app(
        app.http_backend,
        settings.issuer,
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )
    http = start_http_server(shim, sock, grace=1)
    try:
        yield Server(app, grpc_server, http)
    finally:
        http.stop(1)
        grpc_server.stop(0)
        app.close()
        store.close()
        sock.close()


@dataclass
class Partner:
    client_id: str
    secret: str


def partner(app: App, quota: int = 0) -> Partner:
    org = app.organizations.create(ENV, f"org {secrets.token_hex(3)}", "", None)
    application = app.applications.create(
        ENV, org.id, ApplicationFields(name="svc", token_quota_per_minute=quota)
    )
    _, secret = app.applications.create_secret(ENV, application.id, None)
    return Partner(application.client_id, secret)


def http_token(http: httpx.Client, client_id: str, secret: str) -> httpx.Response:
    return http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )


def grpc_token(stub: token_grpc.TokenServiceStub, client_id: str, secret: str) -> Any:
    return stub.IssueToken(
        token_pb.IssueTokenRequest(
            grant_type="client_credentials", client_id=client_id, client_secret=secret
        ),
        timeout=10,
    )


@dataclass
class Attack:
    unauthorized: int = 0
    limited_http: int = 0
    limited_grpc: int = 0
    real_client_tokens: int = 0


def attack(servers: list[Server], victim: Partner, tries: int = 300) -> Attack:
    """``tries`` bad secrets for the victim from ATTACKER, alternating HTTP and gRPC
    and servers; the victim itself asks for a token every tenth try."""
    seen = Attack()
    proxies = [TcpProxy("127.0.0.1", s.grpc.port, source_host=ATTACKER) for s in servers]
    with contextlib.ExitStack() as stack:
        for proxy in proxies:
            proxy.start()
            stack.callback(proxy.cut)
        attackers = [
            stack.enter_context(
                httpx.Client(
                    base_url=s.base_url,
                    transport=httpx.HTTPTransport(local_address=ATTACKER),
                    timeout=10,
                )
            )
            for s in servers
        ]
        attacker_stubs = [
            token_grpc.TokenServiceStub(
                stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{p.port}"))
            )
            for p in proxies
        ]
        real_http = stack.enter_context(httpx.Client(base_url=servers[0].base_url, timeout=10))
        real_stub = token_grpc.TokenServiceStub(
            stack.enter_context(grpc.insecure_channel(servers[-1].grpc_target))
        )
        for i in range(tries):
            server = i % len(servers)
            wrong = f"m2m_cs_{secrets.token_urlsafe(32)}"
            if i % 2:
                reply = http_token(attackers[server], victim.client_id, wrong)
                if reply.status_code == 429:
                    assert int(reply.headers["Retry-After"]) >= 1
                    assert reply.json()["error"] == "rate_limited"
                    assert reply.headers["Cache-Control"] == "no-store"
                    seen.limited_http += 1
                else:
                    assert reply.status_code == 401, reply.text
                    seen.unauthorized += 1
            else:
                with pytest.raises(grpc.RpcError) as info:
                    grpc_token(attacker_stubs[server], victim.client_id, wrong)
                if info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert_retry_details(info.value)
                    seen.limited_grpc += 1
                else:
                    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value
                    seen.unauthorized += 1
            if i % 10 == 0:
                # The real client, on its own address: never refused.
                assert http_token(real_http, victim.client_id, victim.secret).status_code == 200
                assert grpc_token(real_stub, victim.client_id, victim.secret).access_token
                seen.real_client_tokens += 2
    return seen


def assert_retry_details(err: grpc.RpcError) -> None:
    status = rpc_status.from_call(err)
    assert status is not None
    kinds = {}
    for detail in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.QuotaFailure,
        ):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                kinds[kind.__name__] = message
    assert kinds["ErrorInfo"].reason == "RATE_LIMITED"
    assert kinds["RetryInfo"].retry_delay.seconds >= 1
    [violation] = kinds["QuotaFailure"].violations
    assert violation.subject.startswith("client:client_")


@pytest.fixture
def database(sqlite_url: str) -> str:
    migrate(sqlite_url)
    return sqlite_url


@pytest.mark.parametrize("limiter", ["embedded", "redis"])
def test_an_attacker_is_throttled_and_the_real_client_never_is(
    database: str, limiter: str, request: pytest.FixtureRequest
) -> None:
    overrides: dict[str, Any] = {}
    if limiter == "redis":
        overrides["rate_limit_url"] = request.getfixturevalue("redis_server")
        overrides["rate_limit_prefix"] = request.getfixturevalue("redis_prefix")
    with serving(database, secrets.token_bytes(32), **overrides) as server:
        victim = partner(server.app)
        seen = attack([server], victim)
    assert seen.limited_http > 100
    assert seen.limited_grpc > 100
    # The bucket's allowance, plus what refilled while the test ran (one per 6 s).
    assert PER_CLIENT <= seen.unauthorized <= PER_CLIENT + 5
    assert seen.real_client_tokens == 60


def test_two_servers_on_one_redis_share_one_budget(
    database: str, redis_server: str, redis_prefix: str
) -> None:
    root = secrets.token_bytes(32)
    shared = {"rate_limit_url": redis_server, "rate_limit_prefix": redis_prefix}
    with (
        serving(database, root, **shared) as first,
        serving(database, root, **shared) as second,
    ):
        victim = partner(first.app)
        seen = attack([first, second], victim, tries=100)
    # One budget for both: in-process counters would allow twice as many.
    assert PER_CLIENT <= seen.unauthorized <= PER_CLIENT + 3
    assert seen.real_client_tokens == 20


def test_the_61st_token_of_a_minute_is_refused_over_http_and_grpc(database: str) -> None:
    with serving(database, secrets.token_bytes(32)) as server:
        busy = partner(server.app, quota=60)
        with (
            httpx.Client(base_url=server.base_url, timeout=10) as http,
            grpc.insecure_channel(server.grpc_target) as channel,
        ):
            stub = token_grpc.TokenServiceStub(channel)
            for i in range(60):
                if i % 2:
                    assert http_token(http, busy.client_id, busy.secret).status_code == 200
                else:
                    assert grpc_token(stub, busy.client_id, busy.secret).access_token
            refused = http_token(http, busy.client_id, busy.secret)
            with pytest.raises(grpc.RpcError) as info:
                grpc_token(stub, busy.client_id, busy.secret)
    # Whichever minute the test ran in, the refusal says when the window ends.
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "quota_exceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_behind_a_trusted_proxy_the_forwarded_address_is_throttled(database: str) -> None:
    # 127.0.0.1 is the proxy; 127.0.0.2 is not trusted, so its header is ignored.
    with serving(database, secrets.token_bytes(32), trusted_proxies="127.0.0.1") as server:
        victim = partner(server.app)
        with (
            httpx.Client(base_url=server.base_url, timeout=10) as proxy,
            httpx.Client(
                base_url=server.base_url,
                transport=httpx.HTTPTransport(local_address=ATTACKER),
                timeout=10,
            ) as direct,
        ):
            forwarded = {"X-Forwarded-For": "203.0.113.5"}
            for _ in range(PER_CLIENT):
                reply = proxy.post(
                    "/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(victim.client_id, "wrong"),
                    headers=forwarded,
                )
                assert reply.status_code == 401
            limited = proxy.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(victim.client_id, "wrong"),
                headers=forwarded,
            )
            # Another client behind the same proxy is not held back.
            other = proxy.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(victim.client_id, victim.secret),
                headers={"X-Forwarded-For": "198.51.100.20"},
            )
            # A caller that is not the proxy cannot pick its address.
            spoofed = direct.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(victim.client_id, "wrong"),
                headers=forwarded,
            )
        server.app.tokens.flush(final=True)
        with server.app.store.reading() as uow:
            from m2mauth.core.models import AuditFilter  # noqa: PLC0415

            events = uow.list_audit_events(
                AuditFilter(action="token.issue_failed"), before_id=None, limit=100
            )
    assert limited.status_code == 429
    assert other.status_code == 200
    assert spoofed.status_code == 401
    assert {e.details["source"] for e in events} == {"203.0.113.5", ATTACKER}
