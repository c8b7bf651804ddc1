"""Workload identity federation in the core: a workload's platform token (a
Kubernetes service-account token, a GitHub Actions OIDC token) exchanged for the
application's token, and every mismatch refused with the one invalid_client."""

from __future__ import annotations

import secrets
from typing import Any

import jwt
import pytest

from m2mauth.core import errors
from m2mauth.core.applications import ApplicationFields, Applications
from m2mauth.core.client_keys import normalized_jwks
from m2mauth.core.models import Application, FederatedCredential, TokenEndpointAuthMethod
from m2mauth.core.private_key_jwt import JWT_BEARER_ASSERTION_TYPE
from m2mauth.core.token_request import ClientCredentials, TokenRequest
from m2mauth.core.tokens import TokenComponents
from tests.assertions import ClientKey, assertion, assertion_request, jwks_of, new_key
from tests.unit.conftest import ENV, ISSUER, TokenWorld
from tests.unit.test_private_key_jwt import failure_reasons

KUBERNETES = "https://oidc.cluster.example.test"
GITHUB = "https://token.actions.githubusercontent.example.test"
SERVICE_ACCOUNT = "system:serviceaccount:billing:invoicer"


class FakeIssuers:
    """The RemoteJwks port for issuers: their JWK Sets by issuer URL."""

    def __init__(self) -> None:
        self.sets: dict[str, str] = {}
        self.cached: dict[str, str] = {}
        self.asked: list[tuple[str, bool]] = []

    def get(self, uri: str, *, refresh: bool = False) -> str | None:
        return None

    def issuer_jwks(self, issuer: str, *, refresh: bool = False) -> str | None:
        """Cached as the real one is: fetched again only when asked to refresh."""
        self.asked.append((issuer, refresh))
        if issuer not in self.cached or refresh:
            text = self.sets.get(issuer)
            self.cached[issuer] = normalized_jwks("t", text) if text else ""
        return self.cached[issuer] or None


def platform_token(
    key: ClientKey, issuer: str, sub: str, aud: str | list[str], now: float, **extra: Any
) -> str:
    claims = {"iss": issuer, "sub": sub, "aud": aud, "iat": int(now), "exp": int(now) + 600}
    return jwt.encode({**claims, **extra}, key.private, algorithm=key.alg, headers={"kid": key.kid})


def exchange(components: TokenComponents, client_id: str, token: str) -> Any:
    return components.issue_token(assertion_request(token, client_id))


def federated_app(world: TokenWorld, *credentials: FederatedCredential) -> Application:
    return world.apps.create(
        ENV,
        world.org().id,
        ApplicationFields(
            name="workload",
            scopes=("invoices:read",),
            token_endpoint_auth_method=TokenEndpointAuthMethod.FEDERATED,
            federated_credentials=credentials,
        ),
    )


@pytest.fixture
def issuers() -> FakeIssuers:
    return FakeIssuers()


@pytest.fixture
def components(world: TokenWorld, issuers: FakeIssuers) -> TokenComponents:
    built = world.build(remote_jwks=issuers)
    built.ring.ensure_keys()
    return built


def test_kubernetes_and_github_tokens_are_exchanged_for_the_applications_token(
    world: TokenWorld, issuers: FakeIssuers, components: TokenComponents
) -> None:
    cluster, actions = new_key("RS256"), new_key("ES256")
    issuers.sets = {KUBERNETES: jwks_of(cluster), GITHUB: jwks_of(actions)}
    app = federated_app(
        world,
        FederatedCredential(KUBERNETES, SERVICE_ACCOUNT, "m2mauth"),
        FederatedCredential(GITHUB, "repo:acme/billing:*", "https://github.com/acme"),
    )
    now = world.clock().timestamp()
    k8s = platform_token(cluster, KUBERNETES, SERVICE_ACCOUNT, ["m2mauth"], now)
    issued = exchange(components, app.client_id, k8s)
    assert (issued.claims["client_id"], issued.claims["org_id"]) == (
        app.client_id,
        app.organization_id,
    )
    assert issued.scope == "invoices:read"
    # A platform token is presented again and again until it is rotated.
    assert exchange(components, app.client_id, k8s).claims["org_id"] == app.organization_id
    gha = platform_token(
        actions,
        GITHUB,
        "repo:acme/billing:ref:refs/heads/main",
        "https://github.com/acme",
        now,
        jti=secrets.token_hex(8),
        repository="acme/billing",
    )
    assert exchange(components, app.client_id, gha).claims["sub"] == app.client_id


def test_every_mismatch_is_the_one_invalid_client(
    world: TokenWorld, issuers: FakeIssuers, components: TokenComponents
) -> None:
    cluster, other_cluster = new_key("RS256"), new_key("ES256")
    issuers.sets = {KUBERNETES: jwks_of(cluster), GITHUB: jwks_of(other_cluster)}
    app = federated_app(world, FederatedCredential(KUBERNETES, SERVICE_ACCOUNT, "m2mauth"))
    now = world.clock().timestamp()
    forged_key = ClientKey("RS256", cluster.kid, new_key("ES256").private)
    cases = {
        "wrong subject": (
            platform_token(
                cluster, KUBERNETES, "system:serviceaccount:billing:other", "m2mauth", now
            ),
            "no_matching_federated_credential",
        ),
        "wrong audience": (
            platform_token(cluster, KUBERNETES, SERVICE_ACCOUNT, "kubernetes", now),
            "no_matching_federated_credential",
        ),
        "another issuer": (
            platform_token(other_cluster, GITHUB, SERVICE_ACCOUNT, "m2mauth", now),
            "no_matching_federated_credential",
        ),
        "not the issuer's key": (
            platform_token(
                ClientKey("ES256", cluster.kid, forged_key.private),
                KUBERNETES,
                SERVICE_ACCOUNT,
                "m2mauth",
                now,
            ),
            "unknown_key",
        ),
        "expired": (
            platform_token(cluster, KUBERNETES, SERVICE_ACCOUNT, "m2mauth", now - 7200),
            "expired_assertion",
        ),
        "alg none": (
            jwt.encode(
                {"iss": KUBERNETES, "sub": SERVICE_ACCOUNT, "aud": "m2mauth", "exp": now + 60},
                "",
                algorithm="none",
            ),
            "algorithm_not_allowed",
        ),
    }
    expected: dict[str, int] = {}
    for name, (token, reason) in cases.items():
        with pytest.raises(errors.InvalidClient):
            exchange(components, app.client_id, token)
        expected[reason] = expected.get(reason, 0) + 1
        assert name
    assert failure_reasons(world, components) == expected


def test_only_a_federated_application_takes_platform_tokens(
    world: TokenWorld, issuers: FakeIssuers, components: TokenComponents
) -> None:
    cluster = new_key("RS256")
    issuers.sets = {KUBERNETES: jwks_of(cluster)}
    token = platform_token(
        cluster, KUBERNETES, SERVICE_ACCOUNT, "m2mauth", world.clock().timestamp()
    )
    keyed = world.keyed_client(jwks_of(new_key()))
    secret_app = world.client()
    for client_id in (keyed.client_id, secret_app.client_id):
        with pytest.raises(errors.InvalidClient):
            exchange(components, client_id, token)
    # And a federated application takes nothing else: its own-key assertion...
    app = federated_app(world, FederatedCredential(KUBERNETES, SERVICE_ACCOUNT, "m2mauth"))
    own = new_key()
    with pytest.raises(errors.InvalidClient):
        components.issue_token(
            assertion_request(assertion(own, app.client_id, ISSUER), app.client_id)
        )
    # ...nor a secret.
    _, secret = world.apps.create_secret(ENV, app.id, None)
    with pytest.raises(errors.InvalidClient):
        components.issue_token(
            TokenRequest("client_credentials", ClientCredentials(app.client_id, secret))
        )
    assert failure_reasons(world, components) == {
        "issuer_subject_mismatch": 2,
        "auth_method_not_allowed": 2,
    }


def test_without_client_id_a_platform_token_is_invalid_request(
    world: TokenWorld, issuers: FakeIssuers, components: TokenComponents
) -> None:
    cluster = new_key("RS256")
    token = platform_token(
        cluster, KUBERNETES, SERVICE_ACCOUNT, "m2mauth", world.clock().timestamp()
    )
    request = TokenRequest(
        "client_credentials",
        ClientCredentials(client_assertion_type=JWT_BEARER_ASSERTION_TYPE, client_assertion=token),
    )
    with pytest.raises(errors.InvalidRequest) as info:
        components.issue_token(request)
    assert info.value.field == "client_id"


def test_a_rotated_issuer_key_is_fetched_again(
    world: TokenWorld, issuers: FakeIssuers, components: TokenComponents
) -> None:
    old, new = new_key("RS256"), new_key("ES256")
    issuers.sets = {KUBERNETES: jwks_of(old)}
    app = federated_app(world, FederatedCredential(KUBERNETES, SERVICE_ACCOUNT, "m2mauth"))
    now = world.clock().timestamp()
    exchange(
        components, app.client_id, platform_token(old, KUBERNETES, SERVICE_ACCOUNT, "m2mauth", now)
    )
    issuers.sets = {KUBERNETES: jwks_of(new)}
    exchange(
        components, app.client_id, platform_token(new, KUBERNETES, SERVICE_ACCOUNT, "m2mauth", now)
    )
    assert (KUBERNETES, True) in issuers.asked


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        ((), "application.federated_credentials"),
        (
            (FederatedCredential("http://oidc.example.test", "x", "a"),),
            "application.federated_credentials[0].issuer",
        ),
        (
            (FederatedCredential(KUBERNETES, "*", "a"),),
            "application.federated_credentials[0].subject",
        ),
        (
            (FederatedCredential(KUBERNETES, "repo:*:main", "a"),),
            "application.federated_credentials[0].subject",
        ),
        (
            (FederatedCredential(KUBERNETES, "x", ""),),
            "application.federated_credentials[0].audience",
        ),
        (
            (FederatedCredential(KUBERNETES, "x", "a"),) * 2,
            "application.federated_credentials",
        ),
    ],
)
def test_bad_federated_credentials_are_refused(
    world: TokenWorld, credentials: tuple[FederatedCredential, ...], field: str
) -> None:
    with pytest.raises(errors.InvalidField) as info:
        federated_app(world, *credentials)
    assert info.value.field == field


def test_federated_credentials_go_with_the_federated_method_only(world: TokenWorld) -> None:
    with pytest.raises(errors.InvalidField) as info:
        world.apps.create(
            ENV,
            world.org().id,
            ApplicationFields(
                name="x",
                federated_credentials=(FederatedCredential(KUBERNETES, SERVICE_ACCOUNT, "a"),),
            ),
        )
    assert info.value.field == "application.federated_credentials"
    app = federated_app(world, FederatedCredential(KUBERNETES, SERVICE_ACCOUNT, "m2mauth"))
    more = world.apps.update(
        ENV,
        app.id,
        ["federated_credentials"],
        ApplicationFields(
            federated_credentials=(
                *app.federated_credentials,
                FederatedCredential(GITHUB, "repo:acme/billing:*", "m2mauth"),
            )
        ),
    )
    assert len(more.federated_credentials) == 2
    with world.store.reading() as uow:
        stored = uow.get_application(app.id)
    assert stored is not None
    assert stored.federated_credentials == more.federated_credentials
    dev = Applications(
        world.store, world.pages, world.hasher, world.clock, allow_http_jwks_uri_on_loopback=True
    )
    local = dev.create(
        ENV,
        world.org().id,
        ApplicationFields(
            name="local",
            token_endpoint_auth_method=TokenEndpointAuthMethod.FEDERATED,
            federated_credentials=(FederatedCredential("http://127.0.0.1:9", "x", "a"),),
        ),
    )
    assert local.federated_credentials[0].issuer == "http://127.0.0.1:9"
