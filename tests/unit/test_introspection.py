"""Introspect (RFC 7662): active answers, every inactive case, who may see what."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from m2mauth.core import errors, ids, verification
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.changes import Change, Freshness, Kind
from m2mauth.core.client_auth import AuthenticatedClient
from m2mauth.core.interfaces import Store
from m2mauth.core.introspection import Introspector, TokenStates
from m2mauth.core.models import AuditFilter, Principal, SigningKeyState, TokenState
from m2mauth.core.token_request import ClientCredentials
from m2mauth.core.verification import SignedTokens
from tests.unit.conftest import AUDIENCE, ENV, ISSUER, Client, CountingStore, TokenWorld

INACTIVE = {"active": False}


def as_caller(world: TokenWorld, c: Client) -> AuthenticatedClient:
    return world.components.authenticate_client(ClientCredentials(c.client_id, c.secret))


def forge(world: TokenWorld, claims: dict[str, Any], **header: Any) -> str:
    """A token signed with the server's CURRENT key but with chosen contents."""
    kid, alg, key = world.components.ring.current_signer()
    headers = {"typ": "at+jwt", "kid": kid, **header}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def test_active_token_answer(world: TokenWorld) -> None:
    c = world.client(scopes=("read", "write"))
    issued = world.issue(c, scope="read")
    claims = issued.claims
    expected = {
        "active": True,
        "scope": "read",
        "client_id": c.client_id,
        "token_type": "Bearer",
        "exp": claims["exp"],
        "iat": claims["iat"],
        "sub": c.client_id,
        "aud": [AUDIENCE],
        "iss": ISSUER,
        "jti": claims["jti"],
        "org_id": c.org.id,
    }
    assert world.components.introspect(issued.access_token, ENV) == expected
    assert world.components.introspect(issued.access_token, as_caller(world, c)) == expected
    org_admin = Principal(admin_key_id="ak_org", organization_id=c.org.id)
    assert world.components.introspect(issued.access_token, org_admin) == expected


def test_expiry_with_leeway(world: TokenWorld) -> None:
    c = world.client()
    token = world.issue(c).access_token
    world.clock.advance(600 + 30 - 1)  # exp + leeway - 1
    assert world.components.introspect(token, ENV)["active"] is True
    world.clock.advance(1)
    assert world.components.introspect(token, ENV) == INACTIVE


def test_iat_in_the_future_beyond_leeway_is_inactive(world: TokenWorld) -> None:
    c = world.client()
    now = int(world.clock().timestamp())
    base = {
        "iss": ISSUER,
        "sub": c.client_id,
        "aud": AUDIENCE,
        "client_id": c.client_id,
        "org_id": c.org.id,
        "jti": ids.new_id(ids.TOKEN),
    }
    within = forge(world, {**base, "iat": now + 30, "exp": now + 600})
    beyond = forge(world, {**base, "iat": now + 31, "exp": now + 600})
    assert world.components.introspect(within, ENV)["active"] is True
    assert world.components.introspect(beyond, ENV) == INACTIVE


def _mutations(world: TokenWorld, c: Client) -> dict[str, str]:
    """Tokens that must be inactive, each wrong in one way."""
    good = world.issue(c)
    claims = dict(good.claims)
    head, body, sig = good.access_token.split(".")
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid, alg, _ = world.components.ring.current_signer()
    public_pem = (
        world.components.ring.verification_key(kid)
        .key.public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    def hs256(secret: bytes) -> str:
        signing_input = f"{b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': kid})}.{body}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    without: Callable[[str], dict[str, Any]] = lambda name: {  # noqa: E731
        k: v for k, v in claims.items() if k != name
    }
    return {
        "empty": "",
        "garbage": "not a token",
        "two parts": f"{head}.{body}",
        "oversized": good.access_token + "A" * 9000,
        "bad signature": f"{head}.{body}.{sig[:-4]}AAAA",
        "payload swapped": f"{head}.{b64({**claims, 'client_id': 'client_x'})}.{sig}",
        "alg none": f"{b64({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{body}.",
        "HS256 with the public key as secret": hs256(public_pem.encode()),
        "another key, our kid": jwt.encode(
            claims, other_key, algorithm="RS256", headers={"typ": "at+jwt", "kid": kid}
        ),
        "unknown kid": forge(world, claims, kid="key_" + "0" * 26),
        "no kid": jwt.encode(
            claims,
            world.components.ring.current_signer()[2],
            algorithm=alg,
            headers={"typ": "at+jwt"},
        ),
        "typ JWT": forge(world, claims, typ="JWT"),
        "no typ": forge(world, claims, typ=None),
        "no exp": forge(world, without("exp")),
        "no jti": forge(world, without("jti")),
        "no org_id": forge(world, without("org_id")),
        "no client_id": forge(world, without("client_id")),
        "string exp": forge(world, {**claims, "exp": str(claims["exp"])}),
        "bool iat": forge(world, {**claims, "iat": True}),
        "numeric jti": forge(world, {**claims, "jti": 5}),
        "wrong org_id": forge(world, {**claims, "org_id": world.org().id}),
        "unknown client_id": forge(world, {**claims, "client_id": ids.new_id(ids.CLIENT)}),
    }


def test_every_bad_token_is_exactly_inactive(world: TokenWorld) -> None:
    c = world.client()
    for name, token in _mutations(world, c).items():
        assert world.components.introspect(token, ENV) == INACTIVE, name


def test_our_key_under_another_issuer_is_an_error_never_inactive(world: TokenWorld) -> None:
    """Only a replica of this deployment can sign with its keys: a token naming
    another issuer means replicas disagree, which introspection and revocation
    say instead of "inactive" or a revocation that records nothing."""
    claims = {**world.issue(world.client()).claims, "iss": ISSUER + "/"}
    token = forge(world, claims)
    for call in (world.components.introspect, world.components.revoke):
        with pytest.raises(errors.IssuerMismatch) as raised:
            call(token, ENV)
        assert raised.value.field == "token"
        assert repr(ISSUER + "/") in raised.value.message


def test_state_that_makes_a_token_inactive(world: TokenWorld) -> None:
    def fresh() -> tuple[Client, str]:
        c = world.client()
        return c, world.issue(c).access_token

    cases: dict[str, str] = {}
    c, cases["application disabled"] = fresh()
    world.apps.update(ENV, c.app.id, ["enabled"], ApplicationFields(enabled=False))
    c, cases["organization disabled"] = fresh()
    world.orgs.update(ENV, c.org.id, ["enabled"], "", "", False)
    c, cases["application deleted"] = fresh()
    world.apps.delete(ENV, c.app.id)
    c, cases["organization deleted"] = fresh()
    world.orgs.delete(ENV, c.org.id, force=True)
    c, cases["revoked"] = fresh()
    world.components.revoke(cases["revoked"], ENV)
    c, cases["application kill switch"] = fresh()
    world.apps.revoke_tokens(ENV, c.app.id)
    c, cases["organization kill switch"] = fresh()
    world.orgs.revoke_tokens(ENV, c.org.id)
    for name, token in cases.items():
        assert world.components.introspect(token, ENV) == INACTIVE, name


def test_kill_switch_spares_tokens_issued_after_it(world: TokenWorld) -> None:
    org = world.org()
    c = world.client(org)
    d = world.client(org)
    before = world.issue(c).access_token
    other_app = world.issue(d).access_token
    world.apps.revoke_tokens(ENV, c.app.id)
    world.clock.advance(1)
    after = world.issue(c).access_token
    assert world.components.introspect(before, ENV) == INACTIVE
    assert world.components.introspect(after, ENV)["active"] is True
    assert world.components.introspect(other_app, ENV)["active"] is True
    world.orgs.revoke_tokens(ENV, org.id)
    assert world.components.introspect(after, ENV) == INACTIVE
    assert world.components.introspect(other_app, ENV) == INACTIVE
    world.clock.advance(1)
    assert world.components.introspect(world.issue(d).access_token, ENV)["active"] is True


def test_retired_key_tokens_are_inactive(world: TokenWorld) -> None:
    c = world.client()
    token = world.issue(c).access_token
    ring = world.components.ring
    ring.rotate()
    assert world.components.introspect(token, ENV)["active"] is True
    world.clock.advance(3600 + 30 + 30)
    ring.maintenance()
    assert world.components.introspect(token, ENV) == INACTIVE


def test_an_application_sees_only_its_own_tokens(world: TokenWorld) -> None:
    org = world.org()
    mine = world.client(org)
    theirs = world.client(org)
    token = world.issue(theirs).access_token
    assert world.components.introspect(token, as_caller(world, mine)) == INACTIVE
    assert world.components.introspect(token, as_caller(world, theirs))["active"] is True


def test_an_organization_key_sees_only_its_organization(world: TokenWorld) -> None:
    c = world.client()
    token = world.issue(c).access_token
    other = Principal(admin_key_id="ak_other", organization_id=world.org().id)
    assert world.components.introspect(token, other) == INACTIVE


def test_bad_caller_credentials_are_invalid_client(world: TokenWorld) -> None:
    c = world.client()
    with pytest.raises(errors.InvalidClient):
        world.components.authenticate_client(ClientCredentials(c.client_id, "wrong"))
    world.components.flush(final=True)
    with world.store.unit_of_work() as uow:
        actions = [
            e.action for e in uow.list_audit_events(AuditFilter(), before_id=None, limit=100)
        ]
    assert "token.introspect_failed" in actions


def test_a_store_failure_is_unavailable_never_inactive(
    world: TokenWorld, dead_store: Store
) -> None:
    c = world.client()
    token = world.issue(c).access_token
    world.components.revoke(token, ENV)
    introspector = Introspector(
        dead_store, SignedTokens(world.components.ring, ISSUER), world.clock, leeway_seconds=30
    )
    with pytest.raises(errors.StoreUnavailable):
        introspector.introspect(token, ENV)
    with pytest.raises(errors.StoreUnavailable):
        introspector.introspect(world.issue(c).access_token, ENV)


def test_one_store_read_per_introspection(world: TokenWorld) -> None:
    counting = CountingStore(world.store)
    introspector = Introspector(
        counting, SignedTokens(world.components.ring, ISSUER), world.clock, leeway_seconds=30
    )
    c = world.client()
    token = world.issue(c).access_token
    for _ in range(5):
        assert introspector.introspect(token, ENV)["active"] is True
    assert counting.opened == 5
    # Invalid tokens cost no read at all.
    introspector.introspect("garbage", ENV)
    introspector.introspect(token[:-3] + "AAA", ENV)
    assert counting.opened == 5
    world.clock.advance(timedelta(hours=2).total_seconds())
    introspector.introspect(token, ENV)
    assert counting.opened == 5


def test_verified_tokens_are_remembered_within_a_bound(
    world: TokenWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    full_check = verification._verify

    def counting(token: str, *args: Any) -> Any:
        checked.append(token)
        return full_check(token, *args)

    monkeypatch.setattr(verification, "_verify", counting)
    with pytest.raises(ValueError, match="at least 1"):
        SignedTokens(world.components.ring, ISSUER, remember=0)
    signed = SignedTokens(world.components.ring, ISSUER, remember=2)
    c = world.client()
    first, second, third = (world.issue(c).access_token for _ in range(3))
    claims = signed.claims(first)
    assert claims == jwt.decode(first, options={"verify_signature": False})
    assert signed.claims(first) == claims
    assert checked == [first]  # the second answer came from memory
    signed.claims(second)
    signed.claims(third)  # full: the oldest, `first`, is forgotten
    assert signed.claims(first) == claims
    assert checked == [first, second, third, first]
    # What fails the check is never remembered.
    forged = first[:-3] + ("BBB" if first.endswith("AAA") else "AAA")
    assert signed.claims(forged) is None
    assert signed.claims(forged) is None
    assert checked[-2:] == [forged, forged]


def test_a_remembered_token_turns_inactive_when_its_key_is_retired(world: TokenWorld) -> None:
    # The token is unexpired: only the key's publication makes it inactive.
    c = world.client()
    token = world.issue(c).access_token
    assert world.components.introspect(token, ENV)["active"] is True  # now remembered
    kid = jwt.get_unverified_header(token)["kid"]
    with world.store.unit_of_work() as uow:
        [record] = [k for k in uow.list_signing_keys() if k.id == kid]
        uow.update_signing_key(dataclasses.replace(record, state=SigningKeyState.RETIRED))
    world.components.ring.refresh()
    assert world.components.introspect(token, ENV) == INACTIVE


ABSURD_TIMES: dict[str, dict[str, Any]] = {
    "exp 10^20": {"exp": 10**20},
    "exp 1e20 as a float": {"exp": 1e20},
    "exp past int64": {"exp": 2**63},
    "exp past year 9999": {"exp": 253402300800},
    "iat negative": {"iat": -1},
    "iat hugely negative": {"iat": -(10**20)},
    "exp before iat": {"exp": 1},
    "exp a string": {"exp": "4102444800"},
    "exp a boolean": {"exp": True},
    "iat a boolean": {"iat": False},
    "iat a fraction": {"iat": 1.5},
    "exp null": {"exp": None},
}


@pytest.mark.parametrize("change", ABSURD_TIMES.values(), ids=ABSURD_TIMES.keys())
def test_absurd_times_signed_with_our_key_are_inactive_not_a_crash(
    world: TokenWorld, change: dict[str, Any]
) -> None:
    c = world.client()
    claims = {**world.issue(c).claims, **change}
    token = forge(world, claims)
    assert world.components.introspect(token, ENV) == INACTIVE
    # Revocation accepts expired tokens, so it reads exp too: nothing to revoke.
    assert world.components.revoke(token, ENV) is False


def test_the_time_bounds_keep_real_tokens(world: TokenWorld) -> None:
    c = world.client()
    claims = world.issue(c).claims
    # The largest exp a datetime holds is still a time, not an error.
    token = forge(world, {**claims, "exp": 253402300799})
    assert world.components.introspect(token, ENV)["active"] is True


def _state(app: str, org: str) -> TokenState:
    return TokenState(app, org, True, True, None, None, False)


def test_remembered_states_are_dropped_by_exactly_the_changes_that_concern_them() -> None:
    states = TokenStates(Freshness(healthy=True), size=3)

    def remember(key: tuple[str, str], state: TokenState | None) -> None:
        states.put(key, state, states.get(key)[2])

    def known() -> set[str]:
        return {jti for jti in ("j1", "j2", "j3", "j4") if states.get(("c", jti))[0]}

    remember(("c", "j1"), _state("app_a", "org_x"))
    remember(("c", "j2"), _state("app_b", "org_x"))
    remember(("c", "j3"), None)  # the application is gone: only its jti matters
    states.changed(Change(Kind.TOKEN, "j3"))
    assert known() == {"j1", "j2"}
    remember(("c", "j3"), _state("app_b", "org_y"))  # moved: indexed afresh
    states.changed(Change(Kind.APPLICATION, "app_b"))
    assert known() == {"j1"}
    remember(("c", "j2"), _state("app_b", "org_x"))
    remember(("c", "j3"), _state("app_c", "org_y"))
    remember(("c", "j4"), _state("app_c", "org_y"))  # over size: j1 goes first
    assert known() == {"j2", "j3", "j4"}
    states.changed(Change(Kind.APPLICATION, "app_a"))  # j1's index left with it
    states.changed(Change(Kind.ORGANIZATION, "org_y"))
    assert known() == {"j2"}
    states.changed(Change(Kind.SIGNING_KEYS))
    assert known() == {"j2"}
    states.reset()
    assert known() == set()
