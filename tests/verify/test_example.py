"""examples/protected_api over real sockets, with tokens minted as m2mauth mints them.

(The same scenarios against a live m2mauth server belong in test_e2e_m2mauth.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import pytest
from examples.protected_api.__main__ import parse_args
from examples.protected_api.grpc_service import ProjectsClient, create_grpc_server
from examples.protected_api.http_app import create_http_app
from examples.protected_api.projects import ProjectStore
from grpc_health.v1 import health_pb2, health_pb2_grpc

from m2mauth.verify import TokenVerifier
from tests.settings_defaults import setting_default
from tests.verify.support import (
    ORG_ID,
    OTHER_ORG_ID,
    LocalIssuer,
    SigningKey,
    http_call,
    make_key,
    mint,
    serve_asgi,
)


@dataclass
class ExampleApi:
    rpc: ProjectsClient
    channel: grpc.Channel
    http: str
    store: ProjectStore


@contextmanager
def running_example(
    verifier: TokenVerifier, store: ProjectStore, *, introspect: bool = False
) -> Iterator[ExampleApi]:
    """The example's gRPC server and HTTP app on ports 0, and a client for each."""
    server, port = create_grpc_server(verifier, store, introspect=introspect)
    server.start()
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
            serve_asgi(create_http_app(verifier, store, introspect=introspect)) as http_url,
        ):
            yield ExampleApi(ProjectsClient(channel), channel, http_url, store)
    finally:
        server.stop(None)


@pytest.fixture
def api(verifier: TokenVerifier) -> Iterator[ExampleApi]:
    store = ProjectStore()
    store.create(ORG_ID, "ours")
    store.create(OTHER_ORG_ID, "theirs")
    with running_example(verifier, store) as running:
        yield running


def grpc_code(call: object) -> grpc.StatusCode:
    assert isinstance(call, grpc.RpcError)
    code: grpc.StatusCode = call.code()
    return code


def test_own_organization_is_served(rsa_key: SigningKey, api: ExampleApi) -> None:
    token = mint(rsa_key, scope="projects:read projects:write")
    assert [p["name"] for p in api.rpc.list_projects(ORG_ID, token)] == ["ours"]
    created = api.rpc.create_project(ORG_ID, "new", token)
    assert created["organization_id"] == ORG_ID

    url = f"{api.http}/v1/organizations/{ORG_ID}/projects"
    reply = http_call(url, token=token)
    assert reply.status == 200
    assert [p["name"] for p in reply.body["projects"]] == ["ours", "new"]
    reply = http_call(url, token=token, method="POST", json_body={"name": "via-http"})
    assert reply.status == 201
    assert reply.body["organization_id"] == ORG_ID


def test_another_organization_is_denied(rsa_key: SigningKey, api: ExampleApi) -> None:
    token = mint(rsa_key, scope="projects:read projects:write")
    with pytest.raises(grpc.RpcError) as caught:
        api.rpc.list_projects(OTHER_ORG_ID, token)
    assert grpc_code(caught.value) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as caught:
        api.rpc.create_project(OTHER_ORG_ID, "intruder", token)
    assert grpc_code(caught.value) == grpc.StatusCode.PERMISSION_DENIED

    url = f"{api.http}/v1/organizations/{OTHER_ORG_ID}/projects"
    for reply in (
        http_call(url, token=token),
        http_call(url, token=token, method="POST", json_body={"name": "x"}),
    ):
        # RFC 6750 section 3.1: the body and the challenge both say insufficient_scope.
        assert reply.status == 403
        assert reply.body == {
            "error": "insufficient_scope",
            "error_description": "the token's organization may not access this resource",
        }
        assert reply.headers["www-authenticate"].startswith(
            'Bearer realm="projects", error="insufficient_scope", error_description="'
        )
        assert reply.headers["cache-control"] == "no-store"
    assert [p.name for p in api.store.list(OTHER_ORG_ID)] == ["theirs"]


def test_missing_scope_is_denied(rsa_key: SigningKey, api: ExampleApi) -> None:
    read_only = mint(rsa_key, scope="projects:read")
    write_only = mint(rsa_key, scope="projects:write")
    with pytest.raises(grpc.RpcError) as caught:
        api.rpc.list_projects(ORG_ID, write_only)  # the interceptor's method table
    assert grpc_code(caught.value) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as caught:
        api.rpc.create_project(ORG_ID, "x", read_only)  # @require_scopes on the handler
    assert grpc_code(caught.value) == grpc.StatusCode.PERMISSION_DENIED

    url = f"{api.http}/v1/organizations/{ORG_ID}/projects"
    reply = http_call(url, token=write_only)
    assert reply.status == 403
    assert 'error="insufficient_scope"' in reply.headers["www-authenticate"]
    assert http_call(url, token=read_only, method="POST", json_body={"name": "x"}).status == 403


@pytest.mark.parametrize(
    "kind",
    ["none", "expired", "forged", "wrong-typ", "iss-prefix", "unknown-kid", "crit", "oversized"],
)
def test_bad_tokens_are_unauthenticated(
    kind: str, rsa_key: SigningKey, attacker_key: SigningKey, api: ExampleApi
) -> None:
    token = {
        "none": None,
        "expired": mint(rsa_key, iat=0, exp=1),
        "forged": mint(attacker_key, headers={"kid": rsa_key.kid}),
        "wrong-typ": mint(rsa_key, headers={"typ": "JWT"}),
        "iss-prefix": mint(rsa_key, iss="https://auth.example.co"),
        "unknown-kid": mint(rsa_key, headers={"kid": "who-knows"}),
        "crit": mint(rsa_key, headers={"crit": ["urn:x"], "urn:x": True}),
        # Over the kit's 8 KiB but under the transports' hard header limits (16 KiB).
        "oversized": mint(rsa_key, padding="A" * 7000),
    }[kind]
    with pytest.raises(grpc.RpcError) as caught:
        api.rpc.list_projects(ORG_ID, token or "")
    expected = {grpc.StatusCode.UNAUTHENTICATED}
    if kind == "oversized":
        # Between its 8 KiB soft and 16 KiB hard metadata limits, gRPC itself refuses
        # some calls at random, before the interceptor runs.
        expected.add(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert grpc_code(caught.value) in expected
    reply = http_call(f"{api.http}/v1/organizations/{ORG_ID}/projects", token=token)
    assert reply.status == 401


def test_a_10_mb_token_never_gets_in(rsa_key: SigningKey, api: ExampleApi) -> None:
    # Both transports refuse a 10 MB header before the kit sees it (gRPC's 16 KiB
    # metadata limit, h11's 16 KiB header limit); the kit itself refuses anything
    # over 8 KiB before decoding (test_verifier.py). Either way: no access.
    token = mint(rsa_key, padding="A" * (10 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as caught:
        api.rpc.list_projects(ORG_ID, token)
    assert grpc_code(caught.value) in (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
    )
    try:
        reply = http_call(f"{api.http}/v1/organizations/{ORG_ID}/projects", token=token)
    except OSError:
        return  # the server closed the connection on the oversized request
    assert reply.status in (400, 401, 431)


def test_health_is_public(api: ExampleApi) -> None:
    reply = health_pb2_grpc.HealthStub(api.channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert http_call(f"{api.http}/healthz").status == 200


def test_key_rotation_is_picked_up_without_restart(
    rsa_key: SigningKey, issuer: LocalIssuer, api: ExampleApi
) -> None:
    assert api.rpc.list_projects(ORG_ID, mint(rsa_key, scope="projects:read"))
    rotated = make_key("RS256", "rsa-rotated")
    issuer.publish(rsa_key, rotated)
    token = mint(rotated, scope="projects:read")
    assert [p["name"] for p in api.rpc.list_projects(ORG_ID, token)] == ["ours"]
    assert http_call(f"{api.http}/v1/organizations/{ORG_ID}/projects", token=token).status == 200


def test_command_line_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROTECTED_API_AUDIENCE", "https://projects.example.com")
    args = parse_args([])
    assert args.audience == "https://projects.example.com"
    # The issuer of a `make run` server on its default port.
    assert args.issuer == f"http://127.0.0.1:{setting_default('http_port')}"
