"""A secret typed into any field is never stored, logged, listed or echoed.

Every kind of secret m2mauth deals in (an admin key, a client secret, an
access token) is planted in every string field of every RPC's request, in
the authorization metadata, and in every parameter, header and path of the
HTTP endpoints. Then the database (the SQLite file and its WAL, or every
PostgreSQL table as text), the server's log output (JSON, as in production),
the audit log read back through ListAuditEvents, /metrics and every error
message returned are searched for the plaintext: zero hits, on SQLite and on
PostgreSQL. The search itself is checked first, so a leak cannot hide behind
a scan that finds nothing.
"""

from __future__ import annotations

import base64
import io
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import descriptor, message
from sqlalchemy import text

from m2mauth.bootstrap import App, bootstrap
from m2mauth.config import Settings
from m2mauth.core import tokens
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.models import AdminKeyRole, Principal
from m2mauth.grpc.server import GrpcServer, create_server
from m2mauth.http.app import create_http_app
from m2mauth.http.metrics import ShimMetrics
from m2mauth.http.server import HttpServer, bind, start_http_server
from m2mauth.logs import JsonFormatter
from m2mauth.store.sql import SqlStore
from m2mauth.store.tables import metadata
from m2mauth.v1 import (
    admin_key_service_pb2,
    application_service_pb2,
    audit_service_pb2,
    key_service_pb2,
    organization_service_pb2,
    token_service_pb2,
)
from tests.token_requests import secret_request

ENV = Principal(admin_key_id="ak_setup", organization_id=None)
SERVICE_MODULES = (
    admin_key_service_pb2,
    application_service_pb2,
    audit_service_pb2,
    key_service_pb2,
    organization_service_pb2,
    token_service_pb2,
)
# Loggers of the test's own HTTP client, not of the server.
CLIENT_LOGGERS = ("httpx", "httpcore")


@dataclass
class Leaks:
    """Everything the server kept or said, as text, by where it was found."""

    sources: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, content: str) -> None:
        self.sources[where] = self.sources.get(where, "") + "\n" + content

    def find(self, secret: str) -> list[str]:
        return [where for where, content in self.sources.items() if secret in content]


@dataclass
class Planted:
    admin_key: str
    verifier_key: str
    client_secret: str
    access_token: str
    client_id: str

    @property
    def secrets(self) -> dict[str, str]:
        return {
            "admin key": self.admin_key,
            "token-verifier key": self.verifier_key,
            "client secret": self.client_secret,
            "access token": self.access_token,
        }


class ServerLog(logging.Handler):
    """The server's log lines, formatted as production writes them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines = io.StringIO()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(CLIENT_LOGGERS):
            return
        self.lines.write(self.format(record) + "\n")


@dataclass
class Running:
    app: App
    grpc: GrpcServer
    http: HttpServer
    base_url: str
    metrics: ShimMetrics


@pytest.fixture
def server_log() -> Iterator[ServerLog]:
    handler = ServerLog()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture
def running(store: SqlStore, server_log: ServerLog) -> Iterator[Running]:
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    settings = Settings(
        database_url="unused", root_key="unused", http_port=port, signing_algorithm="ES256"
    ).with_defaults()
    app = bootstrap(settings, store=store, root_key=secrets.token_bytes(32))
    app.start()
    grpc_server = create_server(app.servicers, store.ping, "127.0.0.1", 0, workers=4)
    # Labelled by organization: the most a scrape can show.
    metrics = ShimMetrics(org_labels=True)
    http = start_http_server(
        create_http_app(app.http_backend, settings.issuer, metrics), sock, grace=1
    )
    yield Running(app, grpc_server, http, f"http://127.0.0.1:{http.port}", metrics)
    http.stop(1)
    grpc_server.stop(0)
    app.close()
    sock.close()


def plant(app: App) -> Planted:
    org = app.organizations.create(ENV, "Acme", "", None)
    application = app.applications.create(
        ENV, org.id, ApplicationFields(name="svc", scopes=("read",))
    )
    _, client_secret = app.applications.create_secret(ENV, application.id, None)
    _, admin_key = app.admin_keys.create_local(None, name="env admin")
    _, verifier = app.admin_keys.create_local(
        org.id, name="verifier", role=AdminKeyRole.TOKEN_VERIFIER
    )
    token = app.tokens.issue_token(secret_request(application.client_id, client_secret))
    return Planted(admin_key, verifier, client_secret, token.access_token, application.client_id)


def filled(message_class: type[message.Message], value: str) -> message.Message:
    """A request with every string field, at any depth, set to ``value``."""
    request = message_class()
    _fill(request, value)
    return request


def _fill(msg: message.Message, value: str) -> None:
    for fd in msg.DESCRIPTOR.fields:
        if fd.type == descriptor.FieldDescriptor.TYPE_STRING:
            if fd.is_repeated:
                getattr(msg, fd.name).append(value)
            else:
                setattr(msg, fd.name, value)
        elif fd.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            nested = fd.message_type
            assert nested is not None
            if nested.full_name.startswith("google.protobuf."):
                continue  # Timestamps and field masks carry no strings of ours
            if nested.GetOptions().map_entry:
                getattr(msg, fd.name)[value] = value
            elif fd.is_repeated:
                _fill(getattr(msg, fd.name).add(), value)
            else:
                _fill(getattr(msg, fd.name), value)


def call_every_rpc(target: str, secret: str, valid_key: str, leaks: Leaks) -> int:
    """Each RPC with every field set to ``secret``: once with a valid admin key,
    once with ``secret`` as the admin key. Returns the number of calls made."""
    calls = 0
    with grpc.insecure_channel(target) as channel:
        for module in SERVICE_MODULES:
            for service in module.DESCRIPTOR.services_by_name.values():
                for method in service.methods:
                    request_class = getattr(module, method.input_type.name)
                    response_class = getattr(module, method.output_type.name)
                    call = channel.unary_unary(
                        f"/{service.full_name}/{method.name}",
                        request_serializer=request_class.SerializeToString,
                        response_deserializer=response_class.FromString,
                    )
                    for key in (valid_key, secret):
                        calls += 1
                        try:
                            reply = call(
                                filled(request_class, secret),
                                metadata=[("authorization", f"Bearer {key}")],
                                timeout=10,
                            )
                            leaks.add(f"reply of {method.name}", str(reply))
                        except grpc.RpcError as err:
                            details = dict(err.trailing_metadata() or ())
                            leaks.add(
                                f"error of {method.name}",
                                f"{err.details()} {details.get('grpc-status-details-bin', b'')!r}",
                            )
    return calls


def call_every_endpoint(base_url: str, secret: str, client_id: str, leaks: Leaks) -> int:
    basic = base64.b64encode(f"{secret}:{secret}".encode()).decode()
    basic_as_client = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    form = dict.fromkeys(
        (
            "grant_type",
            "client_id",
            "client_secret",
            "scope",
            "audience",
            "resource",
            "token",
            "token_type_hint",
        ),
        secret,
    )
    requests: list[tuple[str, str, dict[str, str], dict[str, str] | None]] = []
    for path in ("/oauth2/token", "/oauth2/introspection", "/oauth2/revoke"):
        requests += [
            ("POST", path, {}, form),
            ("POST", path, {"Authorization": f"Basic {basic}"}, {"token": secret}),
            ("POST", path, {"Authorization": f"Basic {basic_as_client}"}, {"token": secret}),
            ("POST", path, {"Authorization": f"Bearer {secret}"}, {"token": secret}),
            (
                "POST",
                path,
                {"Authorization": f"Bearer {secret}"},
                {"grant_type": "client_credentials", "token": "x"},
            ),
        ]
    requests += [
        ("POST", "/oauth2/token", {}, {"grant_type": "client_credentials", "client_id": secret}),
        ("GET", f"/oauth2/jwks?kid={secret}", {}, None),
        ("GET", f"/oauth2/{secret}", {}, None),
        ("GET", f"/.well-known/oauth-authorization-server?x={secret}", {}, None),
        ("GET", "/readyz", {"X-Forwarded-For": secret, "User-Agent": secret}, None),
    ]
    with httpx.Client(base_url=base_url, timeout=10) as http:
        for method, path, headers, data in requests:
            response = http.request(method, path, headers=headers, data=data)
            leaks.add(f"HTTP {method} {path[:20]} body", response.text)
            leaks.add(f"HTTP {method} {path[:20]} headers", str(dict(response.headers)))
    return len(requests)


def database_text(store: SqlStore, store_url: str) -> str:
    if store_url.startswith("sqlite"):
        path = Path(store_url.removeprefix("sqlite:///"))
        parts = [path, path.with_name(path.name + "-wal")]
        return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in parts if p.exists())
    chunks = []
    with store._engine.connect() as connection:
        for table in metadata.sorted_tables:
            # The table names are the schema's own, not input.
            query = text(f'SELECT CAST(t AS text) FROM "{table.name}" t')  # noqa: S608
            rows = connection.execute(query)
            chunks += [row[0] for row in rows]
    return "\n".join(chunks)


def test_the_scan_finds_a_planted_leak() -> None:
    # The scan below is only worth its zero if it finds what is there.
    leaks = Leaks()
    leaks.add("log", '{"message": "client authentication failed", "actor": "m2m_cs_x"}')
    leaks.add("database", "\x00\x01m2m_cs_x\xff")
    assert leaks.find("m2m_cs_x") == ["log", "database"]
    assert leaks.find("m2m_ak_y") == []


def test_no_planted_secret_is_stored_logged_listed_or_echoed(
    running: Running, store: SqlStore, store_url: str, server_log: ServerLog
) -> None:
    app = running.app
    planted = plant(app)
    leaks = Leaks()
    target = f"127.0.0.1:{running.grpc.port}"
    calls = 0
    for secret in planted.secrets.values():
        calls += call_every_rpc(target, secret, planted.admin_key, leaks)
        calls += call_every_endpoint(running.base_url, secret, planted.client_id, leaks)
    assert calls > 250  # every RPC and endpoint, for every secret

    # What a resource server does with its verifier key: fine, and no leak either.
    with httpx.Client(base_url=running.base_url, timeout=10) as http:
        answer = http.post(
            "/oauth2/introspection",
            data={"token": planted.access_token},
            headers={"Authorization": f"Bearer {planted.verifier_key}"},
        )
        assert answer.json()["active"] is True
    leaks.add("metrics", running.metrics.render().decode())

    # Aggregated failures are written when their minute ends, or on close.
    app.tokens.flush(final=True)
    app.admin_keys.usage.flush()
    with grpc.insecure_channel(target) as channel:
        audit = audit_service_pb2.ListAuditEventsRequest(page_size=100)
        stub = channel.unary_unary(
            "/m2mauth.v1.AuditService/ListAuditEvents",
            request_serializer=audit_service_pb2.ListAuditEventsRequest.SerializeToString,
            response_deserializer=audit_service_pb2.ListAuditEventsResponse.FromString,
        )
        events = []
        while True:
            page = stub(audit, metadata=[("authorization", f"Bearer {planted.admin_key}")])
            events += list(page.audit_events)
            if not page.next_page_token:
                break
            audit.page_token = page.next_page_token
    leaks.add("ListAuditEvents", "\n".join(str(e) for e in events))
    # The failures were recorded, only not as the values presented.
    malformed = [e for e in events if e.actor.startswith("malformed:")]
    assert {e.action for e in malformed} >= {
        "token.issue_failed",
        "admin_key.authenticate_failed",
    }
    leaks.add("log", server_log.lines.getvalue())
    leaks.add("database", database_text(store, store_url))

    found = {name: leaks.find(secret) for name, secret in planted.secrets.items()}
    assert found == {name: [] for name in planted.secrets}
    # Sanity: the scan saw real content from each place.
    assert "client authentication failed" in leaks.sources["log"]
    assert planted.client_id in leaks.sources["database"]
    assert "m2mauth_http_requests" in leaks.sources["metrics"]


def test_a_credential_is_refused_as_a_name_and_not_echoed(running: Running) -> None:
    planted = plant(running.app)
    with grpc.insecure_channel(f"127.0.0.1:{running.grpc.port}") as channel:
        create = channel.unary_unary(
            "/m2mauth.v1.OrganizationService/CreateOrganization",
            request_serializer=organization_service_pb2.CreateOrganizationRequest.SerializeToString,
            response_deserializer=organization_service_pb2.CreateOrganizationResponse.FromString,
        )
        request = organization_service_pb2.CreateOrganizationRequest()
        request.organization.name = f"acme {planted.client_secret}"
        with pytest.raises(grpc.RpcError) as info:
            create(request, metadata=[("authorization", f"Bearer {planted.admin_key}")])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must not contain a credential" in str(info.value.details())
    assert planted.client_secret not in str(info.value.details())


def test_the_scan_catches_a_server_that_logs_what_it_is_given(
    running: Running,
    store: SqlStore,
    store_url: str,
    server_log: ServerLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Break the rule on purpose: record the presented client_id as it came.
    monkeypatch.setattr(tokens, "presented_actor", lambda value, prefix, fingerprint: value)
    planted = plant(running.app)
    leaks = Leaks()
    call_every_endpoint(running.base_url, planted.client_secret, planted.client_id, leaks)
    running.app.tokens.flush(final=True)
    leaks.add("log", server_log.lines.getvalue())
    leaks.add("database", database_text(store, store_url))
    assert leaks.find(planted.client_secret) == ["log", "database"]
