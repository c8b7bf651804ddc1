"""IssueToken: the client_credentials grant, RFC 9068 tokens, client authentication."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import jwt
import pytest

from m2mauth.core import errors, ids
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.client_auth import ClientAuthentication
from m2mauth.core.client_credentials import ClientCredentialsGrant
from m2mauth.core.client_secret_auth import ClientSecretAuth
from m2mauth.core.interfaces import Store, UnitOfWork
from m2mauth.core.issuance import AccessTokens, TokenEndpoint
from m2mauth.core.models import AuditEvent, AuditFilter
from m2mauth.core.usage import UsageRecorder
from tests.token_requests import secret_request
from tests.unit.conftest import AUDIENCE, ENV, ISSUER, CountingStore, TokenWorld


def decode(world: TokenWorld, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header = jwt.get_unverified_header(token)
    vk = world.components.ring.verification_key(header["kid"])
    assert vk is not None
    options = {"verify_aud": False, "verify_exp": False, "verify_iat": False}
    claims = jwt.decode(token, vk.key, algorithms=[vk.algorithm], options=options)  # type: ignore[arg-type]
    return header, claims


def audit_events(store: Store, action: str) -> list[AuditEvent]:
    with store.unit_of_work() as uow:
        events = uow.list_audit_events(AuditFilter(), before_id=None, limit=1000)
    return [e for e in events if e.action == action]


# --- the token ---------------------------------------------------------------------


def test_header_and_claims_exactly(world: TokenWorld) -> None:
    c = world.client(scopes=("read", "write"))
    issued = world.issue(c)
    header, claims = decode(world, issued.access_token)
    kid, alg, _ = world.components.ring.current_signer()
    assert header == {"alg": alg, "typ": "at+jwt", "kid": kid}
    iat = int(world.clock().timestamp())
    assert claims == {
        "iss": ISSUER,
        "sub": c.client_id,
        "aud": AUDIENCE,
        "client_id": c.client_id,
        "org_id": c.org.id,
        "scope": "read write",
        "iat": iat,
        "exp": iat + 600,
        "jti": claims["jti"],
    }
    assert ids.is_id(claims["jti"], ids.TOKEN)
    assert issued.token_type == "Bearer"
    assert issued.expires_in == 600
    assert issued.scope == "read write"
    assert issued.claims == claims
    # A second token has another jti.
    assert decode(world, world.issue(c).access_token)[1]["jti"] != claims["jti"]


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_other_algorithms_sign_too(world: TokenWorld, algorithm: str) -> None:
    ring = world.components.ring
    ring.rotate(algorithm=algorithm)
    ring.rotate()
    issued = world.issue(world.client())
    header, _ = decode(world, issued.access_token)
    assert header["alg"] == algorithm


def test_org_id_comes_from_the_stored_organization(world: TokenWorld) -> None:
    org = world.org()
    c = world.client(org)
    assert (
        decode(world, world.issue(c).access_token)[1]["org_id"] == org.id == c.app.organization_id
    )


@pytest.mark.parametrize(
    ("requested", "granted"),
    [
        ("", "a b c"),  # none requested: all allowed
        ("b", "b"),
        ("c a", "c a"),  # the order asked
        ("  a   b ", "a b"),  # extra spaces tolerated
        ("a a", "a"),  # repeats granted once
    ],
)
def test_scope_subsets(world: TokenWorld, requested: str, granted: str) -> None:
    c = world.client(scopes=("a", "b", "c"))
    issued = world.issue(c, scope=requested)
    assert issued.scope == granted
    assert decode(world, issued.access_token)[1]["scope"] == granted


@pytest.mark.parametrize("requested", ["d", "a d", "a\tb", 'a "b"', "é", " ", "x" * 9000])
def test_scopes_outside_or_malformed_are_invalid_scope(world: TokenWorld, requested: str) -> None:
    c = world.client(scopes=("a", "b"))
    with pytest.raises(errors.InvalidScope) as info:
        world.issue(c, scope=requested)
    assert info.value.reason == "INVALID_SCOPE"
    assert info.value.field == "scope"


def test_no_scopes_at_all_omits_the_claim(world: TokenWorld) -> None:
    c = world.client()
    issued = world.issue(c)
    assert issued.scope == ""
    assert "scope" not in decode(world, issued.access_token)[1]
    with pytest.raises(errors.InvalidScope):
        world.issue(c, scope="read")


def test_audience_default_allowed_and_invalid_target(world: TokenWorld) -> None:
    c = world.client(audiences=("https://billing.example.test",))
    assert decode(world, world.issue(c).access_token)[1]["aud"] == AUDIENCE
    assert decode(world, world.issue(c, audience=AUDIENCE).access_token)[1]["aud"] == AUDIENCE
    other = world.issue(c, audience="https://billing.example.test")
    assert decode(world, other.access_token)[1]["aud"] == "https://billing.example.test"
    with pytest.raises(errors.InvalidTarget) as info:
        world.issue(c, audience="https://evil.example.test")
    assert info.value.reason == "INVALID_TARGET"
    # Another application's audience is not this one's.
    d = world.client()
    with pytest.raises(errors.InvalidTarget):
        world.issue(d, audience="https://billing.example.test")


@pytest.mark.parametrize(("app_ttl", "expected"), [(0, 600), (120, 120), (86400, 3600)])
def test_lifetime_override_is_clamped_to_the_maximum(
    world: TokenWorld, app_ttl: int, expected: int
) -> None:
    c = world.client(ttl=app_ttl)
    issued = world.issue(c)
    _, claims = decode(world, issued.access_token)
    assert issued.expires_in == expected
    assert claims["exp"] - claims["iat"] == expected


def test_grant_type_is_checked_first(world: TokenWorld) -> None:
    c = world.client()
    with pytest.raises(errors.InvalidRequest) as missing:
        world.components.issue_token(secret_request(c.client_id, c.secret, grant_type=""))
    assert missing.value.field == "grant_type"
    for other in ("password", "authorization_code", "CLIENT_CREDENTIALS"):
        with pytest.raises(errors.UnsupportedGrantType):
            world.components.issue_token(secret_request(c.client_id, c.secret, grant_type=other))
    # Even with bad credentials, the grant type is judged first (RFC 6749 section 5.2).
    with pytest.raises(errors.UnsupportedGrantType):
        world.components.issue_token(
            secret_request("client_nobody", "wrong", grant_type="password")
        )


# --- client authentication -------------------------------------------------------------


def invalid_client_cases(world: TokenWorld) -> dict[str, tuple[str, str]]:
    """Every way to fail authentication, as (client_id, client_secret)."""
    good = world.client()
    expiring = world.client(expires_at=world.clock() + timedelta(seconds=10))
    revoked = world.client()
    world.apps.revoke_secret(ENV, revoked.app.id, revoked.secret_record.id)
    disabled_app = world.client()
    world.apps.update(ENV, disabled_app.app.id, ["enabled"], ApplicationFields(enabled=False))
    disabled_org = world.client()
    world.orgs.update(ENV, disabled_org.org.id, ["enabled"], "", "", False)
    deleted_org = world.client()
    world.orgs.delete(ENV, deleted_org.org.id, force=True)
    deleted_app = world.client()
    world.apps.delete(ENV, deleted_app.app.id)
    world.clock.advance(10)  # `expiring` has now expired
    return {
        "unknown client": (ids.new_id(ids.CLIENT), good.secret),
        "malformed client id": ("someone", good.secret),
        "overlong client id": ("client_" + "A" * 5000, good.secret),
        "missing client id": ("", good.secret),
        "missing secret": (good.client_id, ""),
        "wrong secret": (good.client_id, good.secret[:-1] + "x"),
        "another app's secret": (good.client_id, revoked.secret),
        "overlong secret": (good.client_id, good.secret + "x" * 10_000),
        "expired secret": (expiring.client_id, expiring.secret),
        "revoked secret": (revoked.client_id, revoked.secret),
        "disabled application": (disabled_app.client_id, disabled_app.secret),
        "disabled organization": (disabled_org.client_id, disabled_org.secret),
        "deleted organization": (deleted_org.client_id, deleted_org.secret),
        "deleted application": (deleted_app.client_id, deleted_app.secret),
    }


def test_every_invalid_client_case_is_the_same_error(world: TokenWorld) -> None:
    cases = invalid_client_cases(world)
    seen = set()
    for name, (client_id, secret) in cases.items():
        with pytest.raises(errors.InvalidClient) as info:
            world.components.issue_token(secret_request(client_id, secret))
        exc = info.value
        assert type(exc) is errors.InvalidClient, name
        seen.add((exc.reason, exc.message, str(exc), tuple(sorted(vars(exc).items()))))
    assert seen == {
        (
            "INVALID_CLIENT",
            "client authentication failed",
            "client authentication failed",
            (("message", "client authentication failed"),),
        )
    }


def test_failed_authentications_are_audited_in_the_background(world: TokenWorld) -> None:
    cases = invalid_client_cases(world)
    for client_id, secret in cases.values():
        with pytest.raises(errors.InvalidClient):
            world.components.issue_token(secret_request(client_id, secret, source="192.0.2.7"))
    # Nothing written on the request path, nor while the minute is still going...
    world.components.flush()
    assert audit_events(world.store, "token.issue_failed") == []
    # ...one event per (client, reason, source) once it is over, with the count.
    world.clock.advance(60)
    world.components.flush()
    events = audit_events(world.store, "token.issue_failed")
    counted: dict[str, int] = {}
    for e in events:
        counted[e.details["reason"]] = counted.get(e.details["reason"], 0) + int(e.details["count"])
        assert e.details["source"] == "192.0.2.7"
    assert counted == {
        "unknown_client": 5,  # a deleted organization's applications are gone with it
        "missing_credentials": 2,
        "invalid_secret": 5,
        "application_disabled": 1,
        "organization_disabled": 1,
    }
    for e in events:
        assert len(e.actor) <= 64
        # Never a secret in the audit log.
        assert not any("m2m_cs_" in v for v in (e.actor, *e.details.values()))


def test_cached_lookup_bounds_how_long_a_revoked_secret_works(world: TokenWorld) -> None:
    c = world.client()
    world.issue(c)  # cached now
    world.apps.revoke_secret(ENV, c.app.id, c.secret_record.id)
    world.monotonic.advance(4.9)
    world.issue(c)  # within the 5 s cache TTL, still accepted
    world.monotonic.advance(0.1)
    with pytest.raises(errors.InvalidClient):
        world.issue(c)


def test_disabled_application_stops_within_the_cache_ttl(world: TokenWorld) -> None:
    c = world.client()
    world.issue(c)
    world.apps.update(ENV, c.app.id, ["enabled"], ApplicationFields(enabled=False))
    world.monotonic.advance(5)
    with pytest.raises(errors.InvalidClient):
        world.issue(c)
    # Re-enabled: works at once, no wait for the cache.
    world.apps.update(ENV, c.app.id, ["enabled"], ApplicationFields(enabled=True))
    world.issue(c)


def test_a_new_secret_works_at_once_despite_the_cache(world: TokenWorld) -> None:
    c = world.client()
    world.issue(c)
    _, second = world.apps.create_secret(ENV, c.app.id, None)
    world.issue(dataclasses.replace(c, secret=second))


def test_expiry_of_a_cached_secret_is_exact(world: TokenWorld) -> None:
    c = world.client(expires_at=world.clock() + timedelta(seconds=60))
    world.issue(c)
    world.clock.advance(60)
    with pytest.raises(errors.InvalidClient):
        world.issue(c)


def test_the_hot_path_reads_the_store_rarely_and_never_writes(world: TokenWorld) -> None:
    counting = CountingStore(world.store)
    components = world.build(counting)
    components.ring.refresh()
    c = world.client()
    counting.opened = 0
    for _ in range(50):
        components.issue_token(secret_request(c.client_id, c.secret))
    assert counting.opened == 1  # the one cache fill
    world.monotonic.advance(5)
    components.issue_token(secret_request(c.client_id, c.secret))
    assert counting.opened == 2


def test_usage_survives_a_store_outage(world: TokenWorld) -> None:
    usage = world.components.usage
    c = world.client()
    world.issue(c)

    class Down(CountingStore):
        def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
            raise errors.StoreUnavailable()

    usage._store = Down(world.store)
    with pytest.raises(errors.StoreUnavailable):
        usage.flush()
    assert usage.pending() == 1
    usage._store = world.store
    assert usage.flush() == 1
    assert world.apps.list_secrets(ENV, c.app.id)[0].last_used_at == world.clock()


def test_one_structured_log_line_per_token_without_secrets(
    world: TokenWorld, caplog: pytest.LogCaptureFixture
) -> None:
    c = world.client()
    with caplog.at_level(logging.INFO, logger="m2mauth.tokens"):
        issued = world.issue(c)
    lines = [r for r in caplog.records if r.getMessage() == "token issued"]
    assert len(lines) == 1
    record = lines[0].__dict__
    assert record["jti"] == issued.claims["jti"]
    assert record["client_id"] == c.client_id
    assert record["org_id"] == c.org.id
    dumped = json.dumps({k: str(v) for k, v in record.items()})
    assert c.secret not in dumped
    assert issued.access_token not in dumped


def test_the_token_line_is_not_made_when_its_gate_says_it_would_be_dropped(
    world: TokenWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """Past its burst the line would be dropped by the log's filter; the gate
    (m2mauth.logs.line_gate) is asked first, so no record is made at all."""
    c = world.client()
    asked: list[tuple[str, int, str]] = []
    open_gate = [True]

    def line_gate(logger: str, level: int, template: str) -> Callable[[], bool]:
        asked.append((logger, level, template))
        return lambda: open_gate[0]

    tokens = AccessTokens(
        world.components.ring,
        UsageRecorder(world.store),
        world.clock,
        issuer=ISSUER,
        line_gate=line_gate,
    )
    grant = ClientCredentialsGrant(
        tokens, default_audience=AUDIENCE, default_ttl_seconds=600, max_ttl_seconds=3600
    )
    clients = ClientAuthentication([ClientSecretAuth(world.store, world.hasher, world.clock)])
    endpoint = TokenEndpoint(clients, [grant])
    assert asked == [("m2mauth.tokens", logging.INFO, "token issued")]
    with caplog.at_level(logging.INFO, logger="m2mauth.tokens"):
        endpoint.issue(secret_request(c.client_id, c.secret))
        open_gate[0] = False
        issued = endpoint.issue(secret_request(c.client_id, c.secret))
    lines = [r for r in caplog.records if r.getMessage() == "token issued"]
    assert len(lines) == 1
    assert lines[0].__dict__["jti"] != issued.claims["jti"]


def test_a_store_failure_is_unavailable_never_invalid_client(
    world: TokenWorld, dead_store: Store
) -> None:
    c = world.client()
    # Signing keys were loaded while the store was up; then it went away.
    tokens = AccessTokens(
        world.components.ring, UsageRecorder(dead_store), world.clock, issuer=ISSUER
    )
    grant = ClientCredentialsGrant(
        tokens, default_audience=AUDIENCE, default_ttl_seconds=600, max_ttl_seconds=3600
    )
    clients = ClientAuthentication([ClientSecretAuth(dead_store, world.hasher, world.clock)])
    endpoint = TokenEndpoint(clients, [grant])
    for client_id, secret in (
        (c.client_id, c.secret),
        (c.client_id, "wrong"),
        (ids.new_id(ids.CLIENT), "wrong"),
    ):
        with pytest.raises(errors.StoreUnavailable):
            endpoint.issue(secret_request(client_id, secret))
