"""RevokeToken (RFC 7009): who may revoke, what is a success, what survives."""

from __future__ import annotations

import pytest

from m2mauth.core import errors
from m2mauth.core.models import AuditEvent, AuditFilter, Principal
from m2mauth.core.token_request import ClientCredentials
from tests.token_requests import secret_request
from tests.unit.conftest import ENV, TokenWorld

INACTIVE = {"active": False}


def revoke_events(world: TokenWorld) -> list[AuditEvent]:
    with world.store.unit_of_work() as uow:
        events = uow.list_audit_events(AuditFilter(), before_id=None, limit=1000)
    return [e for e in events if e.action == "token.revoke"]


def test_the_owner_revokes_its_token(world: TokenWorld) -> None:
    c = world.client()
    issued = world.issue(c)
    other = world.issue(c)
    caller = world.components.authenticate_client(ClientCredentials(c.client_id, c.secret))
    assert world.components.revoke(issued.access_token, caller) is True
    assert world.components.introspect(issued.access_token, ENV) == INACTIVE
    assert world.components.introspect(other.access_token, ENV)["active"] is True
    [event] = revoke_events(world)
    assert event.actor == c.client_id
    assert event.target == issued.claims["jti"]
    assert event.application_id == c.app.id
    assert event.organization_id == c.org.id
    # Again: a success with nothing more to do, and no second event.
    assert world.components.revoke(issued.access_token, caller) is False
    assert len(revoke_events(world)) == 1


def test_admin_keys_revoke_within_their_reach(world: TokenWorld) -> None:
    c = world.client()
    first = world.issue(c).access_token
    second = world.issue(c).access_token
    assert world.components.revoke(first, ENV) is True
    assert world.components.introspect(first, ENV) == INACTIVE
    assert revoke_events(world)[0].actor == ENV.admin_key_id

    same_org = Principal(admin_key_id="ak_same", organization_id=c.org.id)
    assert world.components.revoke(second, same_org) is True
    assert world.components.introspect(second, ENV) == INACTIVE

    third = world.issue(c).access_token
    other_org = Principal(admin_key_id="ak_other", organization_id=world.org().id)
    with pytest.raises(errors.UnauthorizedClient):
        world.components.revoke(third, other_org)
    assert world.components.introspect(third, ENV)["active"] is True


def test_another_applications_token_is_refused_and_stays_active(world: TokenWorld) -> None:
    org = world.org()
    owner = world.client(org)
    intruder = world.client(org)
    token = world.issue(owner).access_token
    caller = world.components.authenticate_client(
        ClientCredentials(intruder.client_id, intruder.secret)
    )
    with pytest.raises(errors.UnauthorizedClient) as info:
        world.components.revoke(token, caller)
    assert info.value.reason == "UNAUTHORIZED_CLIENT"
    assert world.components.introspect(token, ENV)["active"] is True
    assert revoke_events(world) == []


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0.",
        "x" * 20_000,
    ],
)
def test_invalid_tokens_are_a_success_with_nothing_written(world: TokenWorld, token: str) -> None:
    assert world.components.revoke(token, ENV) is False
    assert revoke_events(world) == []


def test_an_expired_token_needs_no_revocation(world: TokenWorld) -> None:
    c = world.client()
    issued = world.issue(c)
    world.clock.advance(600 + 30)  # past exp and the leeway
    caller = world.components.authenticate_client(ClientCredentials(c.client_id, c.secret))
    assert world.components.revoke(issued.access_token, caller) is False
    assert revoke_events(world) == []
    with world.store.unit_of_work() as uow:
        assert not uow.is_token_revoked(issued.claims["jti"])


def test_an_expired_token_of_another_application_is_still_refused(world: TokenWorld) -> None:
    # RFC 7009 section 2.1: the ownership check comes before anything else.
    owner = world.client()
    intruder = world.client()
    token = world.issue(owner).access_token
    world.clock.advance(3600)
    caller = world.components.authenticate_client(
        ClientCredentials(intruder.client_id, intruder.secret)
    )
    with pytest.raises(errors.UnauthorizedClient):
        world.components.revoke(token, caller)


def test_revocations_survive_a_restart(world: TokenWorld) -> None:
    c = world.client()
    token = world.issue(c).access_token
    world.components.revoke(token, ENV)
    world.components.flush()
    restarted = world.build(world.reopen())
    restarted.ring.ensure_keys()
    assert restarted.introspect(token, ENV) == INACTIVE
    fresh = restarted.issue_token(secret_request(c.client_id, c.secret)).access_token
    assert restarted.introspect(fresh, ENV)["active"] is True


def test_revocations_are_purged_only_after_the_token_expired_plus_leeway(
    world: TokenWorld,
) -> None:
    c = world.client()
    issued = world.issue(c)
    jti = issued.claims["jti"]
    world.components.revoke(issued.access_token, ENV)
    world.clock.advance(600 + 29)  # still inside exp + leeway: must stay revoked
    assert world.components.revoker.purge() == 0
    assert world.components.introspect(issued.access_token, ENV) == INACTIVE
    world.clock.advance(2)
    world.components.maintenance()
    with world.store.unit_of_work() as uow:
        assert not uow.is_token_revoked(jti)
    # And the token is dead by expiry now anyway.
    assert world.components.introspect(issued.access_token, ENV) == INACTIVE
