"""The issue's proof: real tokens from a live ``m2mauth serve`` against examples/protected_api.

A real process on real sockets: the test provisions two organizations with an
application each over gRPC, gets tokens over HTTP (``POST /oauth2/token``, RFC 6749
section 4.4), and calls the example's gRPC service and HTTP endpoint, whose
TokenVerifier fetches ``/oauth2/jwks`` from the server like any deployment.

Until ``m2mauth serve`` serves the TokenService, the tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from examples.protected_api.projects import ProjectStore

from m2mauth.v1 import admin_key_service_pb2 as ak_pb
from m2mauth.v1 import admin_key_service_pb2_grpc as ak_grpc
from m2mauth.v1 import application_service_pb2 as app_pb
from m2mauth.v1 import application_service_pb2_grpc as app_grpc
from m2mauth.v1 import key_service_pb2 as key_pb
from m2mauth.v1 import key_service_pb2_grpc as key_grpc
from m2mauth.v1 import organization_service_pb2 as org_pb
from m2mauth.v1 import organization_service_pb2_grpc as org_grpc
from m2mauth.v1 import resources_pb2 as res
from m2mauth.v1 import token_service_pb2 as token_pb
from m2mauth.v1 import token_service_pb2_grpc as token_grpc
from m2mauth.verify import IntrospectionClient, InvalidToken, TokenVerifier
from tests.verify.support import b64url, hmac_token, http_call, raw_token
from tests.verify.test_example import ExampleApi, grpc_code, running_example

API_AUDIENCE = "https://projects.e2e.example"
SCOPES = ["projects:read", "projects:write"]


@dataclass(frozen=True)
class LiveM2mauth:
    grpc_target: str
    http_base: str
    issuer: str
    admin_key: str


@dataclass(frozen=True)
class Partner:
    org_id: str
    client_id: str
    client_secret: str


def _free_port() -> int:
    # `serve` must be told its HTTP port up front: the issuer URL (the tokens' iss)
    # defaults to it. Another process could take the port in between; then the
    # server fails to start and the test says so.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _wait_for_jwks(http_base: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(f"{http_base}/oauth2/jwks", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the server's TokenService works but {http_base}/oauth2/jwks does not")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def live_m2mauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveM2mauth]:
    workdir: Path = tmp_path_factory.mktemp("m2mauth-e2e")
    http_port = _free_port()
    issuer = f"http://127.0.0.1:{http_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("M2MAUTH_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "m2mauth.cli",
            "serve",
            "--dev",
            "--grpc-port",
            "0",
            "--http-port",
            str(http_port),
            "--issuer",
            issuer,
            "--metrics-port",
            "0",
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    grpc_port, admin_key, seen = 0, "", []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if m := re.search(r"serving gRPC on 127\.0\.0\.1:(\d+)", line):
            grpc_port = int(m.group(1))
        if m := re.search(r"export M2MAUTH_ADMIN_KEY=(\S+)", line):
            admin_key = m.group(1)
        if line.startswith("Press Ctrl+C to stop"):
            break
    try:
        if not (grpc_port and admin_key):
            process.kill()
            stderr = process.stderr.read() if process.stderr else ""
            pytest.fail(f"m2mauth serve did not start: {seen}\n{stderr}")
        target = f"127.0.0.1:{grpc_port}"
        with grpc.insecure_channel(target) as channel:
            try:
                token_grpc.TokenServiceStub(channel).GetJwks(token_pb.GetJwksRequest(), timeout=10)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                    pytest.skip("m2mauth serve does not serve the TokenService yet")
                raise
        _wait_for_jwks(issuer)
        yield LiveM2mauth(target, issuer, issuer, admin_key)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _admin(live: LiveM2mauth) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {live.admin_key}")]


def _partner(live: LiveM2mauth, name: str) -> Partner:
    with grpc.insecure_channel(live.grpc_target) as channel:
        org = (
            org_grpc.OrganizationServiceStub(channel)
            .CreateOrganization(
                org_pb.CreateOrganizationRequest(organization=res.Organization(name=name)),
                metadata=_admin(live),
                timeout=10,
            )
            .organization
        )
        apps = app_grpc.ApplicationServiceStub(channel)
        app = apps.CreateApplication(
            app_pb.CreateApplicationRequest(
                application=res.Application(
                    organization_id=org.id,
                    name=f"{name} sync job",
                    scopes=SCOPES,
                    audiences=[API_AUDIENCE],
                )
            ),
            metadata=_admin(live),
            timeout=10,
        ).application
        secret = apps.CreateClientSecret(
            app_pb.CreateClientSecretRequest(application_id=app.id),
            metadata=_admin(live),
            timeout=10,
        ).secret
    return Partner(org.id, app.client_id, secret)


@pytest.fixture(scope="module")
def acme(live_m2mauth: LiveM2mauth) -> Partner:
    return _partner(live_m2mauth, "Acme")


@pytest.fixture(scope="module")
def globex(live_m2mauth: LiveM2mauth) -> Partner:
    return _partner(live_m2mauth, "Globex")


def get_token(live: LiveM2mauth, partner: Partner, scope: str = " ".join(SCOPES)) -> str:
    """What a partner's service does: client_credentials at the token endpoint."""
    form = {
        "grant_type": "client_credentials",
        "client_id": partner.client_id,
        "client_secret": partner.client_secret,
        "scope": scope,
        "resource": API_AUDIENCE,
    }
    request = urllib.request.Request(  # noqa: S310 - the live server on 127.0.0.1
        f"{live.http_base}/oauth2/token", data=urllib.parse.urlencode(form).encode()
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        body = json.load(response)
    assert body["token_type"].lower() == "bearer"
    token: str = body["access_token"]
    return token


def verifier_for(live: LiveM2mauth, issuer: str | None = None) -> TokenVerifier:
    return TokenVerifier(
        issuer or live.issuer, API_AUDIENCE, jwks_url=f"{live.http_base}/oauth2/jwks"
    )


@pytest.fixture
def api(live_m2mauth: LiveM2mauth, acme: Partner, globex: Partner) -> Iterator[ExampleApi]:
    store = ProjectStore()
    store.create(acme.org_id, "acme-roadmap")
    store.create(globex.org_id, "globex-secret-plans")
    with running_example(verifier_for(live_m2mauth), store) as running:
        yield running


def projects_url(api: ExampleApi, org_id: str) -> str:
    return f"{api.http}/v1/organizations/{org_id}/projects"


def assert_unauthenticated(api: ExampleApi, org_id: str, token: str, reason: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        api.rpc.list_projects(org_id, token)
    assert grpc_code(caught.value) == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == reason
    reply = http_call(projects_url(api, org_id), token=token)
    assert reply.status == 401
    assert reply.body["error_description"] == reason


# --- the claims are what the kit expects ------------------------------------------------


def test_real_tokens_carry_what_the_kit_requires(live_m2mauth: LiveM2mauth, acme: Partner) -> None:
    token = get_token(live_m2mauth, acme)
    verified = verifier_for(live_m2mauth).verify(token)
    assert verified.org_id == acme.org_id
    assert verified.client_id == acme.client_id
    assert verified.scopes == frozenset(SCOPES)
    assert jwt.get_unverified_header(token)["typ"].lower() in ("at+jwt", "application/at+jwt")


# --- organization-based access control ---------------------------------------------------


def test_own_organization_ok_other_denied_missing_scope_denied(
    live_m2mauth: LiveM2mauth, acme: Partner, globex: Partner, api: ExampleApi
) -> None:
    token = get_token(live_m2mauth, acme)
    assert [p["name"] for p in api.rpc.list_projects(acme.org_id, token)] == ["acme-roadmap"]
    assert http_call(projects_url(api, acme.org_id), token=token).status == 200
    assert api.rpc.create_project(acme.org_id, "new", token)["organization_id"] == acme.org_id

    # Another organization's resource, with a perfectly valid token.
    with pytest.raises(grpc.RpcError) as caught:
        api.rpc.list_projects(globex.org_id, token)
    assert grpc_code(caught.value) == grpc.StatusCode.PERMISSION_DENIED
    assert http_call(projects_url(api, globex.org_id), token=token).status == 403
    globex_token = get_token(live_m2mauth, globex)
    assert http_call(projects_url(api, acme.org_id), token=globex_token).status == 403

    # A token without the scope the call needs.
    read_only = get_token(live_m2mauth, acme, scope="projects:read")
    with pytest.raises(grpc.RpcError) as caught:
        api.rpc.create_project(acme.org_id, "nope", read_only)
    assert grpc_code(caught.value) == grpc.StatusCode.PERMISSION_DENIED
    reply = http_call(
        projects_url(api, acme.org_id), token=read_only, method="POST", json_body={"name": "x"}
    )
    assert reply.status == 403
    assert 'error="insufficient_scope"' in reply.headers["www-authenticate"]


# --- every attack on a real token ------------------------------------------------------


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    _header_b64, payload_b64, signature = token.split(".")
    payload = json.loads(jwt.utils.base64url_decode(payload_b64))
    return jwt.get_unverified_header(token), payload, signature


def _with_header(token: str, **changes: Any) -> str:
    header, _, _ = _parts(token)
    _, payload_b64, signature = token.split(".")
    return f"{b64url(json.dumps({**header, **changes}).encode())}.{payload_b64}.{signature}"


def test_expired(
    live_m2mauth: LiveM2mauth, acme: Partner, api: ExampleApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = get_token(live_m2mauth, acme)
    _, payload, _ = _parts(token)
    lifetime = payload["exp"] - payload["iat"]

    class Later(datetime):
        # The protected API's clock, past the token's exp plus the leeway.
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Later:
            return super().now(tz) + timedelta(seconds=lifetime + 120)

    monkeypatch.setattr(jwt.api_jwt, "datetime", Later)
    assert_unauthenticated(api, acme.org_id, token, "the token has expired")


def test_forged_signature(live_m2mauth: LiveM2mauth, acme: Partner, api: ExampleApi) -> None:
    token = get_token(live_m2mauth, acme)
    head, payload_b64, signature = token.split(".")
    _, payload, _ = _parts(token)
    # Claim another organization, keep the real signature.
    forged_payload = b64url(json.dumps({**payload, "org_id": "org_forged"}).encode())
    assert_unauthenticated(
        api, acme.org_id, f"{head}.{forged_payload}.{signature}", "the token's signature is invalid"
    )
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    assert_unauthenticated(
        api, acme.org_id, f"{head}.{payload_b64}.{flipped}", "the token's signature is invalid"
    )


def test_alg_none(live_m2mauth: LiveM2mauth, acme: Partner, api: ExampleApi) -> None:
    header, payload, _ = _parts(get_token(live_m2mauth, acme))
    token = raw_token({**header, "alg": "none"}, payload)
    assert_unauthenticated(api, acme.org_id, token, "the token's signing algorithm is not accepted")


def test_hs256_signed_with_the_public_key(
    live_m2mauth: LiveM2mauth, acme: Partner, api: ExampleApi
) -> None:
    token = get_token(live_m2mauth, acme)
    header, payload, _ = _parts(token)
    with urllib.request.urlopen(f"{live_m2mauth.http_base}/oauth2/jwks", timeout=10) as r:  # noqa: S310
        jwks = json.load(r)
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public_key = jwt.PyJWK(jwk).key
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (pem, json.dumps(jwk).encode()):
        confused = hmac_token({**header, "alg": "HS256"}, payload, secret)
        assert_unauthenticated(
            api, acme.org_id, confused, "the token's signing algorithm is not accepted"
        )


def test_wrong_typ(live_m2mauth: LiveM2mauth, acme: Partner, api: ExampleApi) -> None:
    token = _with_header(get_token(live_m2mauth, acme), typ="JWT")
    assert_unauthenticated(
        api, acme.org_id, token, "the token is not a JWT access token (typ must be at+jwt)"
    )


def test_iss_that_is_only_a_prefix(live_m2mauth: LiveM2mauth, acme: Partner) -> None:
    # The API is configured for a longer issuer; the real iss is a prefix of it.
    token = get_token(live_m2mauth, acme)
    store = ProjectStore()
    strict = verifier_for(live_m2mauth, issuer=live_m2mauth.issuer + "/tenant-a")
    with running_example(strict, store) as api:
        assert_unauthenticated(api, acme.org_id, token, "the token is from another issuer")
    with pytest.raises(InvalidToken, match="another issuer"):
        verifier_for(live_m2mauth, issuer=live_m2mauth.issuer[:-1]).verify(token)


def test_unknown_kid(live_m2mauth: LiveM2mauth, acme: Partner, api: ExampleApi) -> None:
    token = _with_header(get_token(live_m2mauth, acme), kid="not-a-published-kid")
    assert_unauthenticated(
        api, acme.org_id, token, "the token's key id is not published by the issuer"
    )


def test_unknown_crit(live_m2mauth: LiveM2mauth, acme: Partner, api: ExampleApi) -> None:
    token = _with_header(get_token(live_m2mauth, acme), crit=["urn:example:ext"])
    assert_unauthenticated(
        api,
        acme.org_id,
        token,
        "the token uses a critical header extension we do not support",
    )


def test_a_10_mb_token(live_m2mauth: LiveM2mauth, acme: Partner, api: ExampleApi) -> None:
    token = get_token(live_m2mauth, acme)
    huge = token + "A" * (10 * 1024 * 1024)
    # The transports refuse a 10 MB header before the kit runs (gRPC: 16 KiB
    # metadata limit; uvicorn/h11: 16 KiB header limit). Either way, no access.
    with pytest.raises(grpc.RpcError) as caught:
        api.rpc.list_projects(acme.org_id, huge)
    assert grpc_code(caught.value) in (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
    )
    try:
        reply = http_call(projects_url(api, acme.org_id), token=huge)
    except OSError:
        pass
    else:
        assert reply.status in (400, 401, 431)
    with pytest.raises(InvalidToken, match="too large"):
        verifier_for(live_m2mauth).verify(huge)


# --- key rotation and revocation on the server ----------------------------------------------


def test_key_rotation_on_the_server_is_picked_up_without_restart(
    live_m2mauth: LiveM2mauth, acme: Partner, api: ExampleApi
) -> None:
    before = get_token(live_m2mauth, acme)
    assert api.rpc.list_projects(acme.org_id, before)  # the API has fetched the JWKS now
    with grpc.insecure_channel(live_m2mauth.grpc_target) as channel:
        keys = key_grpc.KeyServiceStub(channel)
        # Twice: the first promotes the NEXT key the API already holds; the second
        # promotes a key created after the API fetched the JWKS.
        for _ in range(2):
            keys.RotateSigningKey(
                key_pb.RotateSigningKeyRequest(now=True), metadata=_admin(live_m2mauth), timeout=10
            )
    after = get_token(live_m2mauth, acme)
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    assert [p["name"] for p in api.rpc.list_projects(acme.org_id, after)] == ["acme-roadmap"]
    assert http_call(projects_url(api, acme.org_id), token=after).status == 200
    # Tokens signed before the rotation stay valid while their key is published.
    assert http_call(projects_url(api, acme.org_id), token=before).status == 200


def verifier_key(live: LiveM2mauth) -> str:
    """What the operator hands the API host: a token-verifier key, not an admin key."""
    with grpc.insecure_channel(live.grpc_target) as channel:
        reply = ak_grpc.AdminKeyServiceStub(channel).CreateAdminKey(
            ak_pb.CreateAdminKeyRequest(
                admin_key=res.AdminKey(name="projects api", role=res.ADMIN_KEY_ROLE_TOKEN_VERIFIER)
            ),
            metadata=_admin(live),
            timeout=10,
        )
    key: str = reply.key
    return key


def revoke(live: LiveM2mauth, token: str, key: str) -> None:
    request = urllib.request.Request(  # noqa: S310 - the live server on 127.0.0.1
        f"{live.http_base}/oauth2/revoke",
        data=urllib.parse.urlencode({"token": token}).encode(),
        headers={"Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200


def test_the_example_refuses_a_revoked_token_checked_with_a_verifier_key(
    live_m2mauth: LiveM2mauth, acme: Partner
) -> None:
    key = verifier_key(live_m2mauth)
    introspection = IntrospectionClient(
        f"{live_m2mauth.http_base}/oauth2/introspection", bearer_token=key, cache_ttl=0
    )
    verifier = TokenVerifier(
        live_m2mauth.issuer,
        API_AUDIENCE,
        jwks_url=f"{live_m2mauth.http_base}/oauth2/jwks",
        introspection=introspection,
    )
    store = ProjectStore()
    store.create(acme.org_id, "acme-roadmap")
    token = get_token(live_m2mauth, acme)
    with running_example(verifier, store, introspect=True) as api:
        assert http_call(projects_url(api, acme.org_id), token=token).status == 200
        assert [p["name"] for p in api.rpc.list_projects(acme.org_id, token)] == ["acme-roadmap"]
        # The partner's admin revokes the token (an admin key; the API could too).
        revoke(live_m2mauth, token, live_m2mauth.admin_key)
        assert_unauthenticated(api, acme.org_id, token, "the token is not active")
        # A fresh token still works: only the revoked one is refused.
        assert (
            http_call(projects_url(api, acme.org_id), token=get_token(live_m2mauth, acme)).status
            == 200
        )
    # The verifier key manages nothing.
    with (
        grpc.insecure_channel(live_m2mauth.grpc_target) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        org_grpc.OrganizationServiceStub(channel).ListOrganizations(
            org_pb.ListOrganizationsRequest(),
            metadata=[("authorization", f"Bearer {key}")],
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_revocation_is_seen_by_verify_and_introspect(
    live_m2mauth: LiveM2mauth, acme: Partner
) -> None:
    key = verifier_key(live_m2mauth)
    introspection = IntrospectionClient(
        f"{live_m2mauth.http_base}/oauth2/introspection",
        bearer_token=key,
        cache_ttl=0,
    )
    verifier = TokenVerifier(
        live_m2mauth.issuer,
        API_AUDIENCE,
        jwks_url=f"{live_m2mauth.http_base}/oauth2/jwks",
        introspection=introspection,
    )
    token = get_token(live_m2mauth, acme)
    assert verifier.verify_and_introspect(token).org_id == acme.org_id
    # The resource server revokes with its own verifier key (RFC 7009).
    revoke(live_m2mauth, token, key)
    with pytest.raises(InvalidToken, match="not active"):
        verifier.verify_and_introspect(token)
    # Offline verification cannot see revocation: that is what introspection is for.
    assert verifier.verify(token).org_id == acme.org_id
