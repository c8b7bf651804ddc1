"""private_key_jwt (RFC 7523 section 2.2) in the core: what is accepted, and every
attack refused with the one invalid_client, its reason only in the audit log."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from m2mauth.core import errors
from m2mauth.core.applications import ApplicationFields, Applications
from m2mauth.core.changes import ChangeFeed, Freshness
from m2mauth.core.client_keys import normalized_jwks
from m2mauth.core.models import AuditFilter, TokenEndpointAuthMethod
from m2mauth.core.private_key_jwt import JWT_BEARER_ASSERTION_TYPE
from m2mauth.core.token_request import ClientCredentials, TokenRequest
from m2mauth.core.tokens import TokenComponents
from m2mauth.store.memory import MemoryStore
from tests.assertions import (
    ALGORITHMS,
    ClientKey,
    assertion,
    assertion_request,
    claims_for,
    jwks_of,
    new_key,
    sign,
)
from tests.token_requests import secret_request
from tests.unit.conftest import ENV, ISSUER, TokenWorld, make_world
from tests.unit.test_throttling import Seconds, throttled_components

TOKEN_ENDPOINT = ISSUER + "/oauth2/token"


def now(world: TokenWorld) -> float:
    return world.clock().timestamp()


def failure_reasons(world: TokenWorld, *others: TokenComponents) -> dict[str, int]:
    """The reasons of the failed authentications audited by the world's components
    and ``others`` (other processes on the same store)."""
    world.clock.advance(60)
    for components in (world.components, *others):
        components.flush()
    with world.store.reading() as uow:
        events = uow.list_audit_events(
            AuditFilter(action="token.issue_failed"), before_id=None, limit=1000
        )
    counted: dict[str, int] = {}
    for event in events:
        reason = event.details["reason"]
        counted[reason] = counted.get(reason, 0) + int(event.details["count"])
    return counted


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_client_signing_with_its_key_gets_a_token_of_its_organization(
    world: TokenWorld, alg: str
) -> None:
    key = new_key(alg)
    app = world.keyed_client(jwks_of(key), scopes=("read",))
    signed = assertion(key, app.client_id, TOKEN_ENDPOINT, now=now(world))
    issued = world.components.issue_token(assertion_request(signed, scope="read"))
    assert issued.claims["client_id"] == app.client_id
    assert issued.claims["sub"] == app.client_id
    assert issued.claims["org_id"] == app.organization_id
    assert issued.scope == "read"


def test_the_issuer_is_an_audience_too_and_a_matching_client_id_may_be_sent(
    world: TokenWorld,
) -> None:
    key = new_key()
    app = world.keyed_client(jwks_of(key))
    for aud in (ISSUER, [ISSUER, "https://other.test"]):
        signed = assertion(key, app.client_id, aud, now=now(world))
        issued = world.components.issue_token(assertion_request(signed, app.client_id))
        assert issued.claims["client_id"] == app.client_id


def test_without_a_kid_the_only_key_of_the_algorithm_is_used(world: TokenWorld) -> None:
    es, ed = new_key("ES256"), new_key("EdDSA")
    app = world.keyed_client(jwks_of(es, ed))
    claims = claims_for(app.client_id, TOKEN_ENDPOINT, now=now(world))
    unnamed = jwt.encode(claims, ed.private, algorithm="EdDSA")
    assert "kid" not in jwt.get_unverified_header(unnamed)
    assert world.components.issue_token(assertion_request(unnamed)).claims["sub"] == app.client_id


def _hs256_with_public_key(key: ClientKey, claims: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HMAC keyed with the public key's bytes
    (pyjwt itself refuses to do it, so the JWS is built by hand)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    import hashlib  # noqa: PLC0415 - only this attack needs it
    import hmac  # noqa: PLC0415

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    payload = b64(json.dumps(claims).encode())
    mac = hmac.new(key.public_pem(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(mac)}"


def _unsigned(key: ClientKey, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, "", algorithm="none", headers={"kid": key.kid})


# name -> (how to make the assertion from (key, claims, world), expected audit reason)
Attack = Callable[[ClientKey, dict[str, Any]], str]


def _without(claim: str) -> Attack:
    def make(key: ClientKey, claims: dict[str, Any]) -> str:
        return sign(key, {k: v for k, v in claims.items() if k != claim})

    return make


def _with(**changes: Any) -> Attack:
    def make(key: ClientKey, claims: dict[str, Any]) -> str:
        return sign(key, {**claims, **changes})

    return make


def attacks(world: TokenWorld) -> dict[str, tuple[Attack, str]]:
    t = now(world)
    stranger = new_key("ES256")
    return {
        "wrong aud": (_with(aud="https://elsewhere.test/oauth2/token"), "wrong_audience"),
        "expired": (_with(exp=int(t) - 3600, iat=int(t) - 3660), "expired_assertion"),
        "missing exp": (_without("exp"), "missing_exp"),
        "exp not a number": (_with(exp="tomorrow"), "invalid_assertion"),
        "exp NaN": (_with(exp=float("nan")), "invalid_assertion"),
        "exp infinite": (_with(exp=float("inf")), "invalid_assertion"),
        "missing jti": (_without("jti"), "missing_jti"),
        "missing aud": (_without("aud"), "missing_aud"),
        "too long lived": (_with(exp=int(t) + 7200), "assertion_lifetime_too_long"),
        "not yet valid": (_with(nbf=int(t) + 600), "assertion_not_yet_valid"),
        "iss is not sub": (_with(iss="someone-else"), "issuer_subject_mismatch"),
        "alg none": (_unsigned, "algorithm_not_allowed"),
        "HS256 with the public key": (_hs256_with_public_key, "algorithm_not_allowed"),
        # The same kid, another key: the signature does not verify.
        "a key not in the JWKS": (
            lambda key, claims: sign(ClientKey(key.alg, key.kid, stranger.private), claims),
            "invalid_signature",
        ),
        "an unknown kid": (lambda key, claims: sign(key, claims, kid="nope"), "unknown_key"),
        "garbage": (lambda key, claims: "not.a.jwt", "malformed_assertion"),
    }


def test_every_attack_is_the_one_invalid_client_and_audited_by_reason(world: TokenWorld) -> None:
    key = new_key("ES256")
    app = world.keyed_client(jwks_of(key))
    expected: dict[str, int] = {}
    for name, (make, reason) in attacks(world).items():
        claims = claims_for(app.client_id, TOKEN_ENDPOINT, now=now(world))
        with pytest.raises(errors.InvalidClient) as info:
            world.components.issue_token(assertion_request(make(key, claims), app.client_id))
        assert info.value.message == "client authentication failed", name
        expected[reason] = expected.get(reason, 0) + 1
    assert failure_reasons(world) == expected


def test_an_assertion_is_used_once_even_by_another_process(world: TokenWorld) -> None:
    key = new_key()
    app = world.keyed_client(jwks_of(key))
    signed = assertion(key, app.client_id, TOKEN_ENDPOINT, now=now(world))
    assert world.components.issue_token(assertion_request(signed)).access_token
    with pytest.raises(errors.InvalidClient):
        world.components.issue_token(assertion_request(signed))
    # Another process on the same database (its own components and store).
    other = world.build(store=world.reopen())
    other.ring.ensure_keys()
    with pytest.raises(errors.InvalidClient):
        other.issue_token(assertion_request(signed))
    # A fresh assertion (new jti) is fine in either.
    fresh = assertion(key, app.client_id, TOKEN_ENDPOINT, now=now(world))
    assert other.issue_token(assertion_request(fresh)).access_token
    assert failure_reasons(world, other) == {"replayed_assertion": 2}


def test_a_refused_assertion_does_not_spend_its_jti(world: TokenWorld) -> None:
    key = new_key()
    app = world.keyed_client(jwks_of(key))
    world.apps.update(ENV, app.id, ["enabled"], ApplicationFields(enabled=False))
    signed = assertion(key, app.client_id, TOKEN_ENDPOINT, now=now(world))
    with pytest.raises(errors.InvalidClient):
        world.components.issue_token(assertion_request(signed))
    world.apps.update(ENV, app.id, ["enabled"], ApplicationFields(enabled=True))
    assert world.components.issue_token(assertion_request(signed)).access_token


def test_an_assertion_for_another_client_is_refused(world: TokenWorld) -> None:
    mine, theirs = new_key(), new_key()
    me = world.keyed_client(jwks_of(mine))
    them = world.keyed_client(jwks_of(theirs))
    # Signed with my key but claiming to be them: their JWKS has no such key.
    as_them = assertion(mine, them.client_id, TOKEN_ENDPOINT, now=now(world))
    with pytest.raises(errors.InvalidClient):
        world.components.issue_token(assertion_request(as_them))
    # My own assertion sent with their client_id.
    as_me = assertion(mine, me.client_id, TOKEN_ENDPOINT, now=now(world))
    with pytest.raises(errors.InvalidClient):
        world.components.issue_token(assertion_request(as_me, them.client_id))
    assert failure_reasons(world) == {"unknown_key": 1, "client_id_mismatch": 1}


def test_one_method_per_application_never_both(world: TokenWorld) -> None:
    key = new_key()
    keyed = world.keyed_client(jwks_of(key))
    secret_app = world.client()
    # An assertion for an application that authenticates with secrets.
    signed = assertion(key, secret_app.client_id, TOKEN_ENDPOINT, now=now(world))
    with pytest.raises(errors.InvalidClient):
        world.components.issue_token(assertion_request(signed))
    # A secret for an application that authenticates with keys: it has none,
    # and one created for it anyway does not work.
    record, plaintext = world.apps.create_secret(ENV, keyed.id, None)
    with pytest.raises(errors.InvalidClient):
        world.components.issue_token(secret_request(keyed.client_id, plaintext))
    assert record.application_id == keyed.id
    assert failure_reasons(world) == {"auth_method_not_allowed": 2}


def test_a_secret_application_switched_to_keys_stops_taking_its_secret(
    world: TokenWorld,
) -> None:
    """At once, in a process whose client cache follows the change feed."""
    key = new_key()
    freshness = Freshness()
    components = world.build(freshness=freshness)
    components.ring.ensure_keys()
    feed = ChangeFeed(components.subscribers, freshness)
    listener = world.store.listen(feed)
    listener.start()
    feed.connected()
    c = world.client()
    components.issue_token(secret_request(c.client_id, c.secret))  # its lookup is cached now
    world.apps.update(
        ENV,
        c.app.id,
        ["token_endpoint_auth_method", "jwks"],
        ApplicationFields(
            token_endpoint_auth_method=TokenEndpointAuthMethod.PRIVATE_KEY_JWT, jwks=jwks_of(key)
        ),
    )
    signed = assertion(key, c.client_id, TOKEN_ENDPOINT, now=now(world))
    assert components.issue_token(assertion_request(signed)).access_token
    with pytest.raises(errors.InvalidClient):
        components.issue_token(secret_request(c.client_id, c.secret))
    listener.close()


def test_a_secret_and_an_assertion_together_is_invalid_request(world: TokenWorld) -> None:
    key = new_key()
    c = world.client()
    signed = assertion(key, c.client_id, TOKEN_ENDPOINT, now=now(world))
    both = TokenRequest(
        "client_credentials",
        ClientCredentials(c.client_id, c.secret, JWT_BEARER_ASSERTION_TYPE, signed),
    )
    with pytest.raises(errors.InvalidRequest) as info:
        world.components.issue_token(both)
    assert info.value.field == "client_authentication"


@pytest.mark.parametrize(
    ("assertion_type", "client_assertion", "field"),
    [
        (
            "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            "x.y.z",
            "client_assertion_type",
        ),
        ("", "x.y.z", "client_assertion_type"),
        (JWT_BEARER_ASSERTION_TYPE, "", "client_assertion"),
    ],
)
def test_a_malformed_assertion_request_names_the_field(
    world: TokenWorld, assertion_type: str, client_assertion: str, field: str
) -> None:
    request = TokenRequest(
        "client_credentials",
        ClientCredentials(client_assertion_type=assertion_type, client_assertion=client_assertion),
    )
    with pytest.raises(errors.InvalidRequest) as info:
        world.components.issue_token(request)
    assert info.value.field == field


def test_assertion_failures_are_throttled_per_claimed_client(world: TokenWorld) -> None:
    components, _ = throttled_components(world, Seconds(), per_client=3, per_source=100)
    key, stranger = new_key(), new_key()
    app = world.keyed_client(jwks_of(key))

    def forged() -> TokenRequest:
        # No client_id sent: the throttle counts against the assertion's sub.
        claims = claims_for(app.client_id, TOKEN_ENDPOINT, now=now(world))
        return assertion_request(sign(ClientKey("ES256", key.kid, stranger.private), claims))

    for _ in range(3):
        with pytest.raises(errors.InvalidClient):
            components.issue_token(forged())
    with pytest.raises(errors.RateLimited) as info:
        components.issue_token(forged())
    assert info.value.subject == f"client:{app.client_id}"


def test_a_store_failure_is_unavailable_never_invalid_client(
    world: TokenWorld, dead_store: MemoryStore
) -> None:
    key = new_key()
    app = world.keyed_client(jwks_of(key))
    dead = world.build(store=dead_store)
    with pytest.raises(errors.StoreUnavailable):
        dead.issue_token(assertion_request(assertion(key, app.client_id, TOKEN_ENDPOINT)))


def test_maintenance_forgets_assertions_once_they_expire(world: TokenWorld) -> None:
    key = new_key()
    app = world.keyed_client(jwks_of(key))
    for _ in range(3):
        signed = assertion(key, app.client_id, TOKEN_ENDPOINT, now=now(world), lifetime=60)
        world.components.issue_token(assertion_request(signed))
    world.clock.advance(60)
    assert world.components.used_assertions.purge() == 0  # within the leeway still
    world.clock.advance(world.settings.clock_leeway_seconds + 1)
    world.components.maintenance()
    assert world.components.used_assertions.purge() == 0  # maintenance purged all 3


def test_tokens_of_keyed_clients_count_as_usage(world: TokenWorld) -> None:
    key = new_key()
    app = world.keyed_client(jwks_of(key))
    for _ in range(2):
        signed = assertion(key, app.client_id, TOKEN_ENDPOINT, now=now(world))
        world.components.issue_token(assertion_request(signed))
    world.components.flush()
    last, daily = world.apps.usage(ENV, app.id, 1)
    assert last == world.clock()
    assert [d.tokens_issued for d in daily] == [2]


# --- management: the method and the JWK Set go together ------------------------


def test_private_key_jwt_needs_a_jwks_and_a_secret_application_takes_none(
    world: TokenWorld,
) -> None:
    org = world.org()
    with pytest.raises(errors.InvalidField) as info:
        world.apps.create(
            ENV,
            org.id,
            ApplicationFields(
                name="x", token_endpoint_auth_method=TokenEndpointAuthMethod.PRIVATE_KEY_JWT
            ),
        )
    assert info.value.field == "application.jwks"
    with pytest.raises(errors.InvalidField) as info:
        world.apps.create(ENV, org.id, ApplicationFields(name="x", jwks=jwks_of(new_key())))
    assert info.value.field == "application.jwks"
    assert "private_key_jwt" in info.value.description


def _jwks_with(**member: Any) -> str:
    jwk = new_key("ES256").public_jwk
    return json.dumps({"keys": [{**jwk, **member}]})


@pytest.mark.parametrize(
    ("jwks", "says"),
    [
        ("not json", "JSON"),
        ('{"keys": []}', "at least one key"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0LWJ5dGVzLTEyMzQ1Ng"}]}', "private or symmetric"),
        (_jwks_with(d="c2VjcmV0LWJ5dGVzLTEyMzQ1Ng"), "private or symmetric"),
        (_jwks_with(alg="HS256"), "alg must be one of"),
        (_jwks_with(crv="P-384"), "P-256"),
        (_jwks_with(use="enc"), "use"),
        (_jwks_with(x="AAAA"), "not a valid EC public key"),
        (json.dumps({"keys": [new_key("ES256", kid="same").public_jwk] * 2}), "same kid"),
        (json.dumps({"keys": [new_key("ES256").public_jwk for _ in range(11)]}), "at most 10"),
    ],
)
def test_a_bad_jwks_is_refused_without_quoting_it(world: TokenWorld, jwks: str, says: str) -> None:
    org = world.org()
    with pytest.raises(errors.InvalidField) as info:
        world.apps.create(
            ENV,
            org.id,
            ApplicationFields(
                name="x",
                token_endpoint_auth_method=TokenEndpointAuthMethod.PRIVATE_KEY_JWT,
                jwks=jwks,
            ),
        )
    assert info.value.field == "application.jwks"
    assert says in info.value.description
    # A key member (possibly private) never reaches the error.
    assert "c2VjcmV0LWJ5dGVzLTEyMzQ1Ng" not in str(info.value)


def test_a_short_rsa_key_is_refused(world: TokenWorld) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    short = ClientKey(
        "RS256",
        "short",
        rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505 - refused on purpose
    )
    with pytest.raises(errors.InvalidField) as info:
        world.keyed_client(jwks_of(short))
    assert "2048" in info.value.description


def test_keys_are_rotated_by_updating_the_jwks_and_audited_without_it(world: TokenWorld) -> None:
    old, new = new_key(), new_key()
    app = world.keyed_client(jwks_of(old))
    world.apps.update(ENV, app.id, ["jwks"], ApplicationFields(jwks=jwks_of(new)))
    with pytest.raises(errors.InvalidClient):
        world.components.issue_token(
            assertion_request(assertion(old, app.client_id, TOKEN_ENDPOINT, now=now(world)))
        )
    signed = assertion(new, app.client_id, TOKEN_ENDPOINT, now=now(world))
    assert world.components.issue_token(assertion_request(signed)).access_token
    # Back to secrets: the JWK Set must go in the same change, never silently stay.
    with pytest.raises(errors.InvalidField):
        world.apps.update(
            ENV,
            app.id,
            ["token_endpoint_auth_method"],
            ApplicationFields(token_endpoint_auth_method=TokenEndpointAuthMethod.CLIENT_SECRET),
        )
    back = world.apps.update(
        ENV,
        app.id,
        ["token_endpoint_auth_method", "jwks"],
        ApplicationFields(token_endpoint_auth_method=TokenEndpointAuthMethod.CLIENT_SECRET),
    )
    assert (back.token_endpoint_auth_method, back.jwks) == (
        TokenEndpointAuthMethod.CLIENT_SECRET,
        "",
    )
    with world.store.reading() as uow:
        events = uow.list_audit_events(
            AuditFilter(application_id=app.id), before_id=None, limit=100
        )
    # The clock stands still here, so the three events' order is not asserted.
    details = sorted(((e.action, sorted(e.details.items())) for e in events), key=str)
    assert details == sorted(
        [
            ("application.create", [("token_endpoint_auth_method", "private_key_jwt")]),
            (
                "application.update",
                [
                    ("fields", "jwks,token_endpoint_auth_method"),
                    ("token_endpoint_auth_method", "client_secret"),
                ],
            ),
            (
                "application.update",
                [("fields", "jwks"), ("token_endpoint_auth_method", "private_key_jwt")],
            ),
        ],
        key=str,
    )
    assert new.public_jwk["x"] not in json.dumps([e.details for e in events])


def test_the_max_lifetime_is_a_setting(store: MemoryStore) -> None:
    world = make_world(store, lambda: store, client_assertion_max_lifetime_seconds=120)
    world.components.ring.ensure_keys()
    key = new_key()
    app = world.keyed_client(jwks_of(key))
    t = now(world)
    # Within the setting plus the leeway: accepted; beyond it: refused.
    inside = assertion(key, app.client_id, TOKEN_ENDPOINT, now=t, lifetime=120 + 30)
    assert world.components.issue_token(assertion_request(inside)).access_token
    beyond = assertion(key, app.client_id, TOKEN_ENDPOINT, now=t, lifetime=120 + 31)
    with pytest.raises(errors.InvalidClient):
        world.components.issue_token(assertion_request(beyond))
    assert failure_reasons(world) == {"assertion_lifetime_too_long": 1}


# --- a JWK Set published at a jwks_uri ---------------------------------------------


class FakeRemote:
    """The RemoteJwks port, serving what a test puts at each URI."""

    def __init__(self) -> None:
        self.sets: dict[str, str] = {}
        self.cached: dict[str, str] = {}
        self.fetches: list[tuple[str, bool]] = []

    def get(self, uri: str, *, refresh: bool = False) -> str | None:
        if uri not in self.cached or refresh:
            self.fetches.append((uri, refresh))
            if uri in self.sets:
                self.cached[uri] = normalized_jwks("t", self.sets[uri])
        return self.cached.get(uri)


URI = "https://partner.example.test/.well-known/jwks.json"


def uri_client(world: TokenWorld, remote: FakeRemote) -> tuple[TokenComponents, str]:
    components = world.build(remote_jwks=remote)
    components.ring.ensure_keys()
    org = world.org()
    app = world.apps.create(
        ENV,
        org.id,
        ApplicationFields(
            name="by-uri",
            token_endpoint_auth_method=TokenEndpointAuthMethod.PRIVATE_KEY_JWT,
            jwks_uri=URI,
        ),
    )
    assert (app.jwks, app.jwks_uri) == ("", URI)
    return components, app.client_id


def test_keys_come_from_the_jwks_uri_and_a_new_kid_fetches_them_again(
    world: TokenWorld,
) -> None:
    remote = FakeRemote()
    old, new = new_key("ES256"), new_key("RS256")
    remote.sets[URI] = jwks_of(old)
    components, client_id = uri_client(world, remote)
    signed = assertion(old, client_id, TOKEN_ENDPOINT, now=now(world))
    assert components.issue_token(assertion_request(signed)).access_token
    assert remote.fetches == [(URI, False)]
    # The partner rotates: the first assertion with the new kid refreshes the set.
    remote.sets[URI] = jwks_of(new)
    rotated = assertion(new, client_id, TOKEN_ENDPOINT, now=now(world))
    assert components.issue_token(assertion_request(rotated)).access_token
    assert remote.fetches == [(URI, False), (URI, True)]
    # An unknown kid that is not there after a refresh is refused.
    stranger = new_key("ES256")
    with pytest.raises(errors.InvalidClient):
        components.issue_token(
            assertion_request(assertion(stranger, client_id, TOKEN_ENDPOINT, now=now(world)))
        )


def test_without_a_remote_or_a_fetchable_set_a_uri_client_is_refused(world: TokenWorld) -> None:
    remote = FakeRemote()  # serves nothing at URI
    key = new_key()
    components, client_id = uri_client(world, remote)
    with pytest.raises(errors.InvalidClient):
        components.issue_token(
            assertion_request(assertion(key, client_id, TOKEN_ENDPOINT, now=now(world)))
        )
    # world.components was built without a RemoteJwks at all.
    with pytest.raises(errors.InvalidClient):
        world.components.issue_token(
            assertion_request(assertion(key, client_id, TOKEN_ENDPOINT, now=now(world)))
        )
    assert failure_reasons(world, components) == {"unknown_key": 2}


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("http://partner.example.test/jwks.json", "https"),
        ("http://127.0.0.1:9/jwks.json", "https"),
        ("ftp://partner.example.test/jwks.json", "https"),
        ("https://user:pw@partner.example.test/jwks.json", "user info"),
        ("https://partner.example.test/jwks.json#frag", "fragment"),
        ("https://partner.example.test/jwks\x00.json", "control characters"),
        ("https:///jwks.json", "host"),
        ("https://partner.example.test/" + "a" * 2048, "2048"),
    ],
)
def test_a_bad_jwks_uri_is_refused(world: TokenWorld, uri: str, says: str) -> None:
    with pytest.raises(errors.InvalidField) as info:
        world.apps.create(
            ENV,
            world.org().id,
            ApplicationFields(
                name="x",
                token_endpoint_auth_method=TokenEndpointAuthMethod.PRIVATE_KEY_JWT,
                jwks_uri=uri,
            ),
        )
    assert info.value.field == "application.jwks_uri"
    assert says in info.value.description
    assert "pw" not in info.value.description


def test_http_to_loopback_only_on_a_dev_server(world: TokenWorld) -> None:
    dev_apps = Applications(
        world.store, world.pages, world.hasher, world.clock, allow_http_jwks_uri_on_loopback=True
    )
    fields = ApplicationFields(
        name="x",
        token_endpoint_auth_method=TokenEndpointAuthMethod.PRIVATE_KEY_JWT,
        jwks_uri="http://127.0.0.1:9/jwks.json",
    )
    assert dev_apps.create(ENV, world.org().id, fields).jwks_uri == fields.jwks_uri
    with pytest.raises(errors.InvalidField):
        dev_apps.create(
            ENV,
            world.org().id,
            dataclasses.replace(fields, jwks_uri="http://partner.example.test/jwks.json"),
        )


def test_jwks_and_jwks_uri_are_one_or_the_other(world: TokenWorld) -> None:
    key = new_key()
    app = world.keyed_client(jwks_of(key))
    with pytest.raises(errors.InvalidField) as info:
        world.apps.update(ENV, app.id, ["jwks_uri"], ApplicationFields(jwks_uri=URI))
    assert "not both" in info.value.description
    moved = world.apps.update(ENV, app.id, ["jwks", "jwks_uri"], ApplicationFields(jwks_uri=URI))
    assert (moved.jwks, moved.jwks_uri) == ("", URI)
    with pytest.raises(errors.InvalidField) as info:
        world.apps.update(
            ENV,
            app.id,
            ["token_endpoint_auth_method", "jwks"],
            ApplicationFields(token_endpoint_auth_method=TokenEndpointAuthMethod.CLIENT_SECRET),
        )
    assert info.value.field == "application.jwks_uri"
