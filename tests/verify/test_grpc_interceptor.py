"""The gRPC interceptors on real servers (port 0), sync and aio, with every kind of RPC."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from m2mauth.verify import (
    HttpJwksSource,
    JwksCache,
    MissingToken,
    TokenVerifier,
    current_token,
    require_scopes,
)
from m2mauth.verify.grpc_interceptor import AsyncTokenAuthInterceptor, TokenAuthInterceptor
from tests.verify.support import (
    AUDIENCE,
    ISSUER,
    ORG_ID,
    OTHER_ORG_ID,
    FakeClock,
    LocalIssuer,
    SigningKey,
    mint,
)

SERVICE = "test.verify.v1.Probe"
PUBLIC = f"/{SERVICE}/Public"
WRITE = f"/{SERVICE}/Write"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def decode(data: bytes) -> Any:
    return json.loads(data) if data else None


def token_visible() -> bool:
    try:
        current_token()
    except MissingToken:
        return False
    return True


# --- the protected service, sync ------------------------------------------------------


def whoami(request: Any, context: grpc.ServicerContext) -> Any:
    token = current_token()
    return {"org_id": token.org_id, "scopes": sorted(token.scopes)}


def count_up(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    for i in range(3):
        # Each item is produced after the handler returned its generator: the token
        # must still be visible in the pool thread that iterates it.
        yield {"i": i, "org_id": current_token().org_id, "thread": threading.get_ident()}


def upload(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
    return {"n": sum(1 for _ in requests), "org_id": current_token().org_id}


def chat(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    for request in requests:
        yield {"echo": request, "org_id": current_token().org_id}


@require_scopes("admin")
def admin(request: Any, context: grpc.ServicerContext) -> Any:
    return {"ok": True}


def owned(request: Any, context: grpc.ServicerContext) -> Any:
    current_token().require_org(request["org_id"])
    return {"org_id": request["org_id"]}


def public(request: Any, context: grpc.ServicerContext) -> Any:
    return {"token_visible": token_visible()}


def write(request: Any, context: grpc.ServicerContext) -> Any:
    return {"written": True}


def probe_handler() -> grpc.GenericRpcHandler:
    def unary(fn: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=decode, response_serializer=encode
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Whoami": unary(whoami),
            "CountUp": grpc.unary_stream_rpc_method_handler(
                count_up, request_deserializer=decode, response_serializer=encode
            ),
            "Upload": grpc.stream_unary_rpc_method_handler(
                upload, request_deserializer=decode, response_serializer=encode
            ),
            "Chat": grpc.stream_stream_rpc_method_handler(
                chat, request_deserializer=decode, response_serializer=encode
            ),
            "Admin": unary(admin),
            "Owned": unary(owned),
            "Public": unary(public),
            "Write": unary(write),
        },
    )


def start_sync_server(verifier: TokenVerifier, workers: int = 4) -> tuple[grpc.Server, int]:
    interceptor = TokenAuthInterceptor(
        verifier,
        public_methods=[PUBLIC, HEALTH_CHECK],
        required_scopes={WRITE: ["projects:write", "admin"]},
        realm="probe",
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers), interceptors=[interceptor]
    )
    server.add_generic_rpc_handlers((probe_handler(),))
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


class Client:
    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel

    def call(self, method: str, request: Any = None, token: str | None = None, **kw: Any) -> Any:
        stub = self.channel.unary_unary(
            f"/{SERVICE}/{method}", request_serializer=encode, response_deserializer=decode
        )
        return stub(request or {}, metadata=bearer(token), timeout=10, **kw)

    def stream(self, method: str, request: Any = None, token: str | None = None) -> list[Any]:
        stub = self.channel.unary_stream(
            f"/{SERVICE}/{method}", request_serializer=encode, response_deserializer=decode
        )
        return list(stub(request or {}, metadata=bearer(token), timeout=10))


def bearer(token: str | None) -> list[tuple[str, str]]:
    return [] if token is None else [("authorization", f"Bearer {token}")]


@pytest.fixture
def sync_client(verifier: TokenVerifier) -> Iterator[Client]:
    server, port = start_sync_server(verifier)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Client(channel)
    server.stop(None)


def refusal(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, str | None]:
    trailers = dict(err.trailing_metadata() or ())
    return err.code(), err.details(), trailers.get("www-authenticate")


# --- sync -----------------------------------------------------------------------------


def test_a_valid_token_reaches_the_handler(rsa_key: SigningKey, sync_client: Client) -> None:
    reply = sync_client.call("Whoami", token=mint(rsa_key, scope="projects:read"))
    assert reply == {"org_id": ORG_ID, "scopes": ["projects:read"]}


def test_no_token_is_unauthenticated_with_a_bare_challenge(sync_client: Client) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        sync_client.call("Whoami")
    assert refusal(caught.value) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "a bearer token is required",
        'Bearer realm="probe"',
    )


def test_an_invalid_token_is_unauthenticated_with_invalid_token(
    rsa_key: SigningKey, attacker_key: SigningKey, sync_client: Client
) -> None:
    forged = mint(attacker_key, headers={"kid": rsa_key.kid})
    with pytest.raises(grpc.RpcError) as caught:
        sync_client.call("Whoami", token=forged)
    assert refusal(caught.value) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "the token's signature is invalid",
        'Bearer realm="probe", error="invalid_token", '
        'error_description="the token\'s signature is invalid"',
    )


def test_another_scheme_counts_as_no_token(rsa_key: SigningKey, sync_client: Client) -> None:
    stub = sync_client.channel.unary_unary(
        f"/{SERVICE}/Whoami", request_serializer=encode, response_deserializer=decode
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub({}, metadata=[("authorization", f"Basic {mint(rsa_key)}")])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_two_authorization_entries_are_an_invalid_request(
    rsa_key: SigningKey, sync_client: Client
) -> None:
    stub = sync_client.channel.unary_unary(
        f"/{SERVICE}/Whoami", request_serializer=encode, response_deserializer=decode
    )
    token = mint(rsa_key)
    with pytest.raises(grpc.RpcError) as caught:
        stub({}, metadata=[("authorization", f"Bearer {token}")] * 2)
    code, _, challenge = refusal(caught.value)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert challenge is not None
    assert 'error="invalid_request"' in challenge


def test_a_missing_scope_from_the_method_table_is_permission_denied(
    rsa_key: SigningKey, sync_client: Client
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        sync_client.call("Write", token=mint(rsa_key, scope="projects:write"))
    assert refusal(caught.value) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "the token lacks a required scope",
        'Bearer realm="probe", error="insufficient_scope", '
        'error_description="the token lacks a required scope", scope="admin projects:write"',
    )
    assert sync_client.call("Write", token=mint(rsa_key, scope="admin projects:write")) == {
        "written": True
    }


def test_require_scopes_on_the_handler_is_permission_denied(
    rsa_key: SigningKey, sync_client: Client
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        sync_client.call("Admin", token=mint(rsa_key, scope="projects:read"))
    code, _, challenge = refusal(caught.value)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert challenge is not None
    assert 'scope="admin"' in challenge
    assert sync_client.call("Admin", token=mint(rsa_key, scope="admin")) == {"ok": True}


def test_another_organizations_resource_is_permission_denied(
    rsa_key: SigningKey, sync_client: Client
) -> None:
    token = mint(rsa_key)
    assert sync_client.call("Owned", {"org_id": ORG_ID}, token=token) == {"org_id": ORG_ID}
    with pytest.raises(grpc.RpcError) as caught:
        sync_client.call("Owned", {"org_id": OTHER_ORG_ID}, token=token)
    # The same challenge as over HTTP (RFC 6750 section 3.1), in trailing metadata.
    assert refusal(caught.value) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "the token's organization may not access this resource",
        'Bearer realm="probe", error="insufficient_scope", '
        'error_description="the token\'s organization may not access this resource"',
    )


def test_streaming_handlers_see_the_token_in_every_step(
    rsa_key: SigningKey, sync_client: Client
) -> None:
    token = mint(rsa_key)
    items = sync_client.stream("CountUp", token=token)
    assert [(item["i"], item["org_id"]) for item in items] == [
        (0, ORG_ID),
        (1, ORG_ID),
        (2, ORG_ID),
    ]

    upload = sync_client.channel.stream_unary(
        f"/{SERVICE}/Upload", request_serializer=encode, response_deserializer=decode
    )
    assert upload(iter([{}, {}, {}]), metadata=bearer(token)) == {"n": 3, "org_id": ORG_ID}

    chat = sync_client.channel.stream_stream(
        f"/{SERVICE}/Chat", request_serializer=encode, response_deserializer=decode
    )
    replies = list(chat(iter(["a", "b"]), metadata=bearer(token)))
    assert replies == [{"echo": "a", "org_id": ORG_ID}, {"echo": "b", "org_id": ORG_ID}]
    with pytest.raises(grpc.RpcError) as caught:
        list(chat(iter(["a"])))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_public_methods_and_health_need_no_token(sync_client: Client) -> None:
    assert sync_client.call("Public") == {"token_visible": False}
    health_stub = health_pb2_grpc.HealthStub(sync_client.channel)
    reply = health_stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_token_does_not_leak_to_the_next_call_on_the_same_thread(
    rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    server, port = start_sync_server(verifier, workers=1)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = Client(channel)
            token = mint(rsa_key)
            for _ in range(3):
                assert client.call("Whoami", token=token)["org_id"] == ORG_ID
                client.stream("CountUp", token=token)
                assert client.call("Public") == {"token_visible": False}
    finally:
        server.stop(None)


def test_only_listed_methods_are_protected(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    interceptor = TokenAuthInterceptor(verifier, methods=[f"/{SERVICE}/Whoami"])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[interceptor])
    server.add_generic_rpc_handlers((probe_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = Client(channel)
            assert client.call("Write") == {"written": True}
            with pytest.raises(grpc.RpcError):
                client.call("Whoami")
            assert client.call("Whoami", token=mint(rsa_key))["org_id"] == ORG_ID
    finally:
        server.stop(None)


def test_unreachable_keys_are_unavailable(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    issuer.jwks_status = 500
    cache = JwksCache(HttpJwksSource(f"{issuer_url}/jwks"), clock=clock)
    server, port = start_sync_server(TokenVerifier(ISSUER, AUDIENCE, jwks=cache))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as caught:
                Client(channel).call("Whoami", token=mint(rsa_key))
            assert refusal(caught.value) == (
                grpc.StatusCode.UNAVAILABLE,
                "the token signing keys are unavailable; retry later",
                None,
            )
    finally:
        server.stop(None)


def test_interceptor_configuration_is_checked(verifier: TokenVerifier) -> None:
    with pytest.raises(ValueError, match="full method name"):
        TokenAuthInterceptor(verifier, methods=["Whoami"])
    with pytest.raises(ValueError, match="not protected"):
        TokenAuthInterceptor(verifier, public_methods=[WRITE], required_scopes={WRITE: ["a"]})


# --- aio ------------------------------------------------------------------------------


async def aio_whoami(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await asyncio.sleep(0)
    return {"org_id": current_token().org_id}


async def aio_count_up(
    request: Any, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    for i in range(3):
        await asyncio.sleep(0)
        yield {"i": i, "org_id": current_token().org_id}


async def aio_write_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    for i in range(2):
        await context.write({"i": i, "org_id": current_token().org_id})


@require_scopes("admin")
async def aio_admin(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    return {"ok": True}


async def aio_owned(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    current_token().require_org(request["org_id"])
    return {"org_id": request["org_id"]}


async def aio_public(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    return {"token_visible": token_visible()}


def aio_handler() -> grpc.GenericRpcHandler:
    def unary(fn: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=decode, response_serializer=encode
        )

    def streaming(fn: Any) -> Any:
        return grpc.unary_stream_rpc_method_handler(
            fn, request_deserializer=decode, response_serializer=encode
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Whoami": unary(aio_whoami),
            "CountUp": streaming(aio_count_up),
            "WriteStream": streaming(aio_write_stream),
            "Admin": unary(aio_admin),
            "Owned": unary(aio_owned),
            "Public": unary(aio_public),
        },
    )


def run_aio(verifier: TokenVerifier, scenario: Any) -> Any:
    async def main() -> Any:
        interceptor = AsyncTokenAuthInterceptor(verifier, public_methods=[PUBLIC], realm="probe")
        server = grpc.aio.server(interceptors=[interceptor])
        server.add_generic_rpc_handlers((aio_handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await scenario(channel)
        finally:
            await server.stop(None)

    return asyncio.run(main())


def aio_unary(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/{method}", request_serializer=encode, response_deserializer=decode
    )


def aio_stream(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.unary_stream(
        f"/{SERVICE}/{method}", request_serializer=encode, response_deserializer=decode
    )


async def aio_refusal(call: Any) -> tuple[grpc.StatusCode, str, str | None]:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        trailers = dict(err.trailing_metadata() or ())
        return err.code(), err.details() or "", trailers.get("www-authenticate")
    raise AssertionError("the call succeeded")


def test_aio_valid_tokens_reach_unary_and_streaming_handlers(
    rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    token = mint(rsa_key)

    async def scenario(channel: grpc.aio.Channel) -> Any:
        whoami_reply = await aio_unary(channel, "Whoami")({}, metadata=bearer(token))
        counted = [
            item async for item in aio_stream(channel, "CountUp")({}, metadata=bearer(token))
        ]
        written = [
            item async for item in aio_stream(channel, "WriteStream")({}, metadata=bearer(token))
        ]
        public_reply = await aio_unary(channel, "Public")({})
        return whoami_reply, counted, written, public_reply

    whoami_reply, counted, written, public_reply = run_aio(verifier, scenario)
    assert whoami_reply == {"org_id": ORG_ID}
    assert counted == [{"i": i, "org_id": ORG_ID} for i in range(3)]
    assert written == [{"i": i, "org_id": ORG_ID} for i in range(2)]
    assert public_reply == {"token_visible": False}


def test_aio_refusals(
    rsa_key: SigningKey, attacker_key: SigningKey, verifier: TokenVerifier
) -> None:
    token = mint(rsa_key, scope="projects:read")
    forged = mint(attacker_key, headers={"kid": rsa_key.kid})

    async def scenario(channel: grpc.aio.Channel) -> Any:
        whoami = aio_unary(channel, "Whoami")
        return [
            await aio_refusal(whoami({})),
            await aio_refusal(whoami({}, metadata=bearer(forged))),
            await aio_refusal(aio_unary(channel, "Admin")({}, metadata=bearer(token))),
            await aio_refusal(
                aio_unary(channel, "Owned")({"org_id": OTHER_ORG_ID}, metadata=bearer(token))
            ),
            await aio_refusal(_drain(aio_stream(channel, "CountUp")({}, metadata=bearer(forged)))),
        ]

    missing, invalid, scope, org, stream = run_aio(verifier, scenario)
    assert missing == (
        grpc.StatusCode.UNAUTHENTICATED,
        "a bearer token is required",
        'Bearer realm="probe"',
    )
    assert invalid[:2] == (grpc.StatusCode.UNAUTHENTICATED, "the token's signature is invalid")
    assert invalid[2] is not None
    assert 'error="invalid_token"' in invalid[2]
    assert scope[0] == grpc.StatusCode.PERMISSION_DENIED
    assert scope[2] is not None
    assert 'error="insufficient_scope"' in scope[2]
    assert org == (
        grpc.StatusCode.PERMISSION_DENIED,
        "the token's organization may not access this resource",
        'Bearer realm="probe", error="insufficient_scope", '
        'error_description="the token\'s organization may not access this resource"',
    )
    assert stream[0] == grpc.StatusCode.UNAUTHENTICATED


async def _drain(call: Any) -> list[Any]:
    return [item async for item in call]


def test_aio_keys_are_fetched_without_blocking_the_loop(
    rsa_key: SigningKey, issuer: LocalIssuer, verifier: TokenVerifier
) -> None:
    issuer.jwks_delay = 0.3
    tokens = [mint(rsa_key) for _ in range(10)]

    async def scenario(channel: grpc.aio.Channel) -> Any:
        whoami = aio_unary(channel, "Whoami")
        calls = [whoami({}, metadata=bearer(t)) for t in tokens]
        await asyncio.sleep(0.05)  # the calls are in, waiting on the JWKS fetch
        # While the JWKS fetch sleeps in a worker thread, the server still answers.
        started = asyncio.get_running_loop().time()
        assert await aio_unary(channel, "Public")({}) == {"token_visible": False}
        public_latency = asyncio.get_running_loop().time() - started
        return [r["org_id"] for r in await asyncio.gather(*calls)], public_latency

    org_ids, public_latency = run_aio(verifier, scenario)
    assert org_ids == [ORG_ID] * 10
    assert public_latency < 0.2
    assert issuer.count("/jwks") == 1
