"""TokenService and KeyService over a real gRPC channel (a bare server, port 0)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from m2mauth.core.admin_keys import AdminKeys
from m2mauth.grpc.key_servicer import KeyServicer
from m2mauth.grpc.token_servicer import TokenServicer
from m2mauth.v1 import key_service_pb2 as key_pb
from m2mauth.v1 import key_service_pb2_grpc as key_grpc
from m2mauth.v1 import resources_pb2 as res
from m2mauth.v1 import token_service_pb2 as token_pb
from m2mauth.v1 import token_service_pb2_grpc as token_grpc
from tests.grpc.rich_errors import RichError, rich_error
from tests.token_world import AUDIENCE, ISSUER, Client, TokenWorld


@dataclass
class Api:
    tokens: token_grpc.TokenServiceStub
    keys: key_grpc.KeyServiceStub
    admin_key: str
    org_admin_key: str
    client: Client
    other: Client


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def fails(call: Callable[..., Any], *args: Any, **kwargs: Any) -> RichError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return rich_error(info.value)


@pytest.fixture
def api(world: TokenWorld) -> Iterator[Api]:
    admin_keys = AdminKeys(world.store, world.hasher, world.clock, world.pages)
    client = world.client(scopes=("read", "write"))
    other = world.client(client.org)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    token_grpc.add_TokenServiceServicer_to_server(
        TokenServicer(world.components, admin_keys), server
    )
    key_grpc.add_KeyServiceServicer_to_server(
        KeyServicer(world.components.keys, admin_keys), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Api(
                tokens=token_grpc.TokenServiceStub(channel),
                keys=key_grpc.KeyServiceStub(channel),
                admin_key=admin_keys.create_local(None)[1],
                org_admin_key=admin_keys.create_local(client.org.id)[1],
                client=client,
                other=other,
            )
    finally:
        server.stop(0)


def issue(api: Api, client: Client | None = None, **fields: Any) -> token_pb.IssueTokenResponse:
    c = client or api.client
    response: token_pb.IssueTokenResponse = api.tokens.IssueToken(
        token_pb.IssueTokenRequest(
            grant_type="client_credentials",
            client_id=c.client_id,
            client_secret=c.secret,
            **fields,
        )
    )
    return response


def test_issue_introspect_revoke_round_trip(api: Api) -> None:
    issued = issue(api, scope="read")
    assert issued.token_type == "Bearer"
    assert issued.expires_in == 600
    assert issued.scope == "read"
    c = api.client
    own = api.tokens.Introspect(
        token_pb.IntrospectRequest(
            token=issued.access_token, client_id=c.client_id, client_secret=c.secret
        )
    )
    assert own.active
    assert (own.client_id, own.sub, own.org_id, own.iss, own.scope, own.token_type) == (
        c.client_id,
        c.client_id,
        c.org.id,
        ISSUER,
        "read",
        "Bearer",
    )
    assert list(own.aud) == [AUDIENCE]
    assert own.exp - own.iat == 600
    by_admin = api.tokens.Introspect(
        token_pb.IntrospectRequest(token=issued.access_token), metadata=bearer(api.admin_key)
    )
    assert by_admin == own

    api.tokens.RevokeToken(
        token_pb.RevokeTokenRequest(
            token=issued.access_token, client_id=c.client_id, client_secret=c.secret
        )
    )
    gone = api.tokens.Introspect(
        token_pb.IntrospectRequest(token=issued.access_token), metadata=bearer(api.admin_key)
    )
    # RFC 7662 section 2.2: inactive, and not one other field set.
    assert gone.ListFields() == []


def test_token_errors_carry_their_reasons(api: Api) -> None:
    c = api.client
    bad_client = fails(
        api.tokens.IssueToken,
        token_pb.IssueTokenRequest(
            grant_type="client_credentials", client_id=c.client_id, client_secret="nope"
        ),
    )
    assert (bad_client.code, bad_client.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_CLIENT",
    )
    grant = fails(api.tokens.IssueToken, token_pb.IssueTokenRequest(grant_type="password"))
    assert (grant.code, grant.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNSUPPORTED_GRANT_TYPE",
    )
    missing = fails(api.tokens.IssueToken, token_pb.IssueTokenRequest())
    assert (missing.reason, missing.fields) == ("INVALID_REQUEST", ["grant_type"])
    scope = fails(issue, api, scope="admin")
    assert (scope.code, scope.reason, scope.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_SCOPE",
        ["scope"],
    )
    target = fails(issue, api, audience="https://elsewhere.example.test")
    assert (target.reason, target.fields) == ("INVALID_TARGET", ["audience"])

    token = issue(api).access_token
    nobody = fails(api.tokens.Introspect, token_pb.IntrospectRequest(token=token))
    assert (nobody.code, nobody.reason) == (grpc.StatusCode.UNAUTHENTICATED, "ADMIN_KEY_INVALID")
    wrong = fails(
        api.tokens.Introspect,
        token_pb.IntrospectRequest(token=token, client_id=c.client_id, client_secret="x"),
    )
    assert wrong.reason == "INVALID_CLIENT"
    o = api.other
    theirs = fails(
        api.tokens.RevokeToken,
        token_pb.RevokeTokenRequest(token=token, client_id=o.client_id, client_secret=o.secret),
    )
    assert (theirs.code, theirs.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "UNAUTHORIZED_CLIENT",
    )
    still = api.tokens.Introspect(
        token_pb.IntrospectRequest(token=token), metadata=bearer(api.admin_key)
    )
    assert still.active
    # An invalid token is a successful revocation (RFC 7009 section 2.2).
    api.tokens.RevokeToken(
        token_pb.RevokeTokenRequest(token="garbage"), metadata=bearer(api.org_admin_key)
    )


def test_get_jwks(api: Api, world: TokenWorld) -> None:
    jwks = api.tokens.GetJwks(token_pb.GetJwksRequest())
    assert jwks.max_age_seconds == 300
    assert len(jwks.keys) == 2
    kids = {k.kid for k in jwks.keys}
    assert world.components.ring.current_signer()[0] in kids
    for key in jwks.keys:
        assert (key.kty, key.alg, key.use) == ("RSA", "RS256", "sig")
        assert key.n
        assert key.e == "AQAB"


def test_list_and_rotate_signing_keys(api: Api) -> None:
    listed = api.keys.ListSigningKeys(
        key_pb.ListSigningKeysRequest(), metadata=bearer(api.admin_key)
    )
    states = [k.state for k in listed.signing_keys]
    assert states == [res.SIGNING_KEY_STATE_NEXT, res.SIGNING_KEY_STATE_CURRENT]
    next_id = listed.signing_keys[0].id
    for key in listed.signing_keys:
        assert key.algorithm == res.SIGNING_ALGORITHM_RS256
        assert key.public_key.kid == key.id
        assert key.HasField("create_time")
    assert not listed.signing_keys[0].HasField("activate_time")
    assert listed.signing_keys[1].HasField("activate_time")

    rotated = api.keys.RotateSigningKey(
        key_pb.RotateSigningKeyRequest(algorithm=res.SIGNING_ALGORITHM_ES256, now=True),
        metadata=bearer(api.admin_key),
    )
    assert rotated.current_key.id == next_id
    assert rotated.current_key.state == res.SIGNING_KEY_STATE_CURRENT
    assert rotated.next_key.algorithm == res.SIGNING_ALGORITHM_ES256
    assert rotated.next_key.public_key.crv == "P-256"

    first = api.keys.ListSigningKeys(
        key_pb.ListSigningKeysRequest(page_size=2), metadata=bearer(api.admin_key)
    )
    assert [k.id for k in first.signing_keys] == [rotated.next_key.id, next_id]
    second = api.keys.ListSigningKeys(
        key_pb.ListSigningKeysRequest(page_size=2, page_token=first.next_page_token),
        metadata=bearer(api.admin_key),
    )
    assert [k.state for k in second.signing_keys] == [res.SIGNING_KEY_STATE_PREVIOUS]
    assert second.signing_keys[0].HasField("retire_time")
    assert second.next_page_token == ""
    replayed = fails(
        api.keys.ListSigningKeys,
        key_pb.ListSigningKeysRequest(page_token=first.next_page_token, show_retired=True),
        metadata=bearer(api.admin_key),
    )
    assert replayed.reason == "INVALID_PAGE_TOKEN"


def test_key_service_is_for_environment_keys_only(api: Api) -> None:
    for call, request in (
        (api.keys.ListSigningKeys, key_pb.ListSigningKeysRequest()),
        (api.keys.RotateSigningKey, key_pb.RotateSigningKeyRequest()),
    ):
        scoped = fails(call, request, metadata=bearer(api.org_admin_key))
        assert (scoped.code, scoped.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        )
        anonymous = fails(call, request)
        assert anonymous.code == grpc.StatusCode.UNAUTHENTICATED
    unknown = fails(
        api.keys.RotateSigningKey,
        key_pb.RotateSigningKeyRequest(algorithm=99),  # type: ignore[arg-type]
        metadata=bearer(api.admin_key),
    )
    assert (unknown.code, unknown.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["algorithm"])
