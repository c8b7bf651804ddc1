"""Workload identity federation end to end: a local OpenID Connect issuer
(discovery + JWKS on a loopback port) mints a Kubernetes-style service-account
token and a GitHub-Actions-style token; a --dev shim exchanges each for an
m2mauth token with the application's org_id. And the issuer-side attacks:
a discovery document naming another issuer, a JWKS that redirects elsewhere,
an oversized JWKS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import jwt
import pytest

from m2mauth.core.applications import ApplicationFields
from m2mauth.core.models import FederatedCredential, TokenEndpointAuthMethod
from m2mauth.core.private_key_jwt import JWT_BEARER_ASSERTION_TYPE
from m2mauth.remote_jwks import RemoteJwksCache
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.assertions import ClientKey, jwks_of, new_key
from tests.http.conftest import ENV, Shim, running_shim
from tests.http.test_remote_jwks import JwksHost, Route, jwks_host


def publish_issuer(host: JwksHost, path: str, key: ClientKey) -> str:
    """An OIDC issuer at ``host``/``path``: its discovery document and JWK Set."""
    issuer = host.url(path)
    host.routes[f"{path}/.well-known/openid-configuration"] = Route(
        body=json.dumps({"issuer": issuer, "jwks_uri": f"{issuer}/keys"}).encode()
    )
    host.routes[f"{path}/keys"] = Route(body=jwks_of(key).encode())
    return issuer


def platform_token(key: ClientKey, issuer: str, sub: str, aud: str, **extra: object) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "sub": sub, "aud": aud, "iat": now, "nbf": now, "exp": now + 600}
    return jwt.encode({**claims, **extra}, key.private, algorithm=key.alg, headers={"kid": key.kid})


@contextmanager
def dev_shim(sqlite_url: str) -> Iterator[Shim]:
    migrate(sqlite_url)
    store = SqlStore(sqlite_url)
    try:
        with running_shim(store, "in_process", dev=True) as shim:
            yield shim
    finally:
        store.close()


def exchange(shim: Shim, client_id: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{shim.base_url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_assertion_type": JWT_BEARER_ASSERTION_TYPE,
            "client_assertion": token,
        },
        timeout=10,
    )


def test_kubernetes_and_github_actions_workloads_need_no_secret(sqlite_url: str) -> None:
    cluster, actions = new_key("RS256"), new_key("RS256")
    with jwks_host() as host, dev_shim(sqlite_url) as shim:
        kubernetes = publish_issuer(host, "/cluster", cluster)
        github = publish_issuer(host, "/actions", actions)
        org = shim.container.organizations.create(ENV, "Acme", "", True)
        app = shim.container.applications.create(
            ENV,
            org.id,
            ApplicationFields(
                name="workloads",
                token_endpoint_auth_method=TokenEndpointAuthMethod.FEDERATED,
                federated_credentials=(
                    FederatedCredential(
                        kubernetes, "system:serviceaccount:billing:invoicer", "m2mauth"
                    ),
                    FederatedCredential(github, "repo:acme/billing:*", "m2mauth"),
                ),
            ),
        )
        k8s = platform_token(
            cluster,
            kubernetes,
            "system:serviceaccount:billing:invoicer",
            "m2mauth",
            **{"kubernetes.io": {"namespace": "billing", "serviceaccount": {"name": "invoicer"}}},
        )
        gha = platform_token(
            actions,
            github,
            "repo:acme/billing:ref:refs/heads/main",
            "m2mauth",
            repository="acme/billing",
            ref="refs/heads/main",
        )
        for token in (k8s, gha, k8s):  # a platform token may be presented again
            response = exchange(shim, app.client_id, token)
            assert response.status_code == 200, response.text
            claims = jwt.decode(
                response.json()["access_token"], options={"verify_signature": False}
            )
            assert (claims["client_id"], claims["org_id"]) == (app.client_id, org.id)
        # The right issuer, the wrong subject or audience: refused.
        for token in (
            platform_token(
                cluster, kubernetes, "system:serviceaccount:billing:intruder", "m2mauth"
            ),
            platform_token(cluster, kubernetes, "system:serviceaccount:billing:invoicer", "other"),
            platform_token(actions, github, "repo:acme/other:ref:refs/heads/main", "m2mauth"),
        ):
            refused = exchange(shim, app.client_id, token)
            assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")


def fetched_keys(cache: RemoteJwksCache, issuer: str) -> list[str]:
    jwks = cache.issuer_jwks(issuer)
    return [] if jwks is None else [k["kid"] for k in json.loads(jwks)["keys"]]


def test_the_issuer_side_is_fetched_with_bounds() -> None:
    key = new_key("ES256")
    with jwks_host() as host:
        good = publish_issuer(host, "/good", key)
        assert fetched_keys(RemoteJwksCache(allow_http_loopback=True), good) == [key.kid]
        # A discovery document that names another issuer (a mix-up).
        liar = host.url("/liar")
        host.routes["/liar/.well-known/openid-configuration"] = Route(
            body=json.dumps({"issuer": good, "jwks_uri": f"{good}/keys"}).encode()
        )
        assert fetched_keys(RemoteJwksCache(allow_http_loopback=True), liar) == []
        # Keys that redirect to another host.
        moved = publish_issuer(host, "/moved", key)
        host.routes["/moved/keys"] = Route(
            status=302, headers={"Location": host.url("/good/keys", host="localhost")}
        )
        assert fetched_keys(RemoteJwksCache(allow_http_loopback=True), moved) == []
        # An oversized JWK Set.
        big = publish_issuer(host, "/big", key)
        padded = {"keys": [key.public_jwk], "padding": "x" * (80 * 1024)}
        host.routes["/big/keys"] = Route(body=json.dumps(padded).encode())
        assert fetched_keys(RemoteJwksCache(allow_http_loopback=True), big) == []
        # Without --dev, an http issuer is not even asked.
        before = len(host.hits)
        assert fetched_keys(RemoteJwksCache(), good) == []
        assert len(host.hits) == before


@pytest.mark.parametrize("lie", ["issuer", "redirect"])
def test_a_lying_issuer_gets_no_token_through_the_shim(sqlite_url: str, lie: str) -> None:
    key = new_key("ES256")
    with jwks_host() as host, dev_shim(sqlite_url) as shim:
        real = publish_issuer(host, "/real", key)
        issuer = publish_issuer(host, "/fake", key)
        if lie == "issuer":
            host.routes["/fake/.well-known/openid-configuration"] = Route(
                body=json.dumps({"issuer": real, "jwks_uri": f"{real}/keys"}).encode()
            )
        else:
            host.routes["/fake/keys"] = Route(
                status=307, headers={"Location": host.url("/real/keys", host="localhost")}
            )
        org = shim.container.organizations.create(ENV, "Acme", "", True)
        app = shim.container.applications.create(
            ENV,
            org.id,
            ApplicationFields(
                name="w",
                token_endpoint_auth_method=TokenEndpointAuthMethod.FEDERATED,
                federated_credentials=(FederatedCredential(issuer, "svc", "m2mauth"),),
            ),
        )
        refused = exchange(shim, app.client_id, platform_token(key, issuer, "svc", "m2mauth"))
        assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
