"""The console's sessions at the core: signed, checked against the store on every
use, ended by idle time, by age, by sign-out and by the admin key's fate."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from m2mauth.core import errors
from m2mauth.core.admin_keys import AdminKeys
from m2mauth.core.console_sessions import SIGN_IN, SIGN_OUT, ConsoleSessions, SessionEnded
from m2mauth.core.credentials import CredentialHasher
from m2mauth.core.interfaces import Store
from m2mauth.core.models import AdminKeyRole, AuditFilter
from m2mauth.core.organizations import Organizations
from m2mauth.core.pagination import PageTokenCodec
from m2mauth.core.root_key import DerivedKeys
from tests.unit.conftest import ENV, FakeClock

IDLE = 60
LIFETIME = 600


@dataclass
class Console:
    sessions: ConsoleSessions
    admin_keys: AdminKeys
    orgs: Organizations
    clock: FakeClock
    store: Store
    key_material: bytes

    def other_process(self, store: Store | None = None) -> ConsoleSessions:
        """The same sessions as another process or replica builds them (same root key)."""
        return ConsoleSessions(
            store or self.store,
            self.admin_keys,
            self.key_material,
            self.clock,
            idle_timeout=timedelta(seconds=IDLE),
            lifetime=timedelta(seconds=LIFETIME),
        )


@pytest.fixture
def console(store: Store) -> Console:
    keys = DerivedKeys.from_root(secrets.token_bytes(32))
    pages = PageTokenCodec(keys.page_token)
    clock = FakeClock()
    admin_keys = AdminKeys(store, CredentialHasher(keys.credential_hash), clock, pages)
    sessions = ConsoleSessions(
        store,
        admin_keys,
        keys.console_session,
        clock,
        idle_timeout=timedelta(seconds=IDLE),
        lifetime=timedelta(seconds=LIFETIME),
    )
    return Console(
        sessions, admin_keys, Organizations(store, pages, clock), clock, store, keys.console_session
    )


def test_a_session_names_the_key_not_its_secret_and_any_process_resumes_it(
    console: Console,
) -> None:
    key, plaintext = console.admin_keys.create_local(None)
    session, value = console.sessions.sign_in(plaintext, "10.0.0.1")
    assert session.principal.admin_key_id == key.id
    assert plaintext not in value
    assert plaintext[len("m2m_ak_") :] not in value
    resumed, _ = console.other_process().resume(value)
    assert resumed.id == session.id
    assert resumed.principal == session.principal
    with console.store.reading() as uow:
        [event] = uow.list_audit_events(AuditFilter(action=SIGN_IN), before_id=None, limit=5)
    assert (event.actor, event.target) == (key.id, session.id)


def test_a_wrong_key_is_refused_as_the_api_refuses_it(console: Console) -> None:
    console.admin_keys.create_local(None)
    with pytest.raises(errors.AdminKeyInvalid) as refused:
        console.sessions.sign_in("m2m_ak_" + "x" * 43)
    assert "not valid" in refused.value.message


def test_an_altered_or_foreign_value_is_no_session(console: Console) -> None:
    _, plaintext = console.admin_keys.create_local(None)
    _, value = console.sessions.sign_in(plaintext)
    body, mac = value.split(".")
    for forged in ("", "garbage", value + "x", f"{body}.{mac[:-2]}AA", f"{mac}.{body}"):
        with pytest.raises(SessionEnded) as ended:
            console.sessions.resume(forged)
        assert ended.value.code == "none"
    stranger = ConsoleSessions(
        console.store,
        console.admin_keys,
        secrets.token_bytes(32),
        console.clock,
        idle_timeout=timedelta(seconds=IDLE),
        lifetime=timedelta(seconds=LIFETIME),
    )
    with pytest.raises(SessionEnded):
        stranger.resume(value)


def test_idle_time_ends_a_session_and_each_use_restarts_the_idle_clock(
    console: Console,
) -> None:
    _, plaintext = console.admin_keys.create_local(None)
    _, value = console.sessions.sign_in(plaintext)
    for _ in range(3):
        console.clock.advance(IDLE - 1)
        _, value = console.sessions.resume(value)
    console.clock.advance(IDLE)
    with pytest.raises(SessionEnded) as ended:
        console.sessions.resume(value)
    assert ended.value.code == "idle"


def test_a_busy_session_still_ends_at_its_maximum_length(console: Console) -> None:
    _, plaintext = console.admin_keys.create_local(None)
    _, value = console.sessions.sign_in(plaintext)
    used = 0
    while used + IDLE // 2 < LIFETIME:
        console.clock.advance(IDLE // 2)
        used += IDLE // 2
        _, value = console.sessions.resume(value)
    console.clock.advance(LIFETIME - used)
    with pytest.raises(SessionEnded) as ended:
        console.sessions.resume(value)
    assert ended.value.code == "expired"


def test_sign_out_ends_the_session_in_every_process_and_only_that_one(
    console: Console, reopen_store: Callable[[], Store]
) -> None:
    _, plaintext = console.admin_keys.create_local(None)
    first, first_value = console.sessions.sign_in(plaintext)
    _, second_value = console.sessions.sign_in(plaintext)
    console.sessions.sign_out(first)
    replica = console.other_process(reopen_store())
    for sessions in (console.sessions, replica):
        with pytest.raises(SessionEnded) as ended:
            sessions.resume(first_value)
        assert ended.value.code == "signed_out"
        sessions.resume(second_value)
    with console.store.reading() as uow:
        [event] = uow.list_audit_events(AuditFilter(action=SIGN_OUT), before_id=None, limit=5)
    assert event.target == first.id


def test_revoking_the_key_or_disabling_its_organization_ends_its_sessions(
    console: Console,
) -> None:
    env_key, env_plain = console.admin_keys.create_local(None)
    org = console.orgs.create(ENV, "Acme", "", None)
    _, org_plain = console.admin_keys.create_local(org.id, role=AdminKeyRole.AUDITOR)
    _, env_value = console.sessions.sign_in(env_plain)
    org_session, org_value = console.sessions.sign_in(org_plain)
    assert org_session.principal.organization_id == org.id
    assert org_session.principal.role is AdminKeyRole.AUDITOR

    console.orgs.update(ENV, org.id, ["enabled"], "", "", False)
    with pytest.raises(SessionEnded) as ended:
        console.sessions.resume(org_value)
    assert (ended.value.code, "organization disabled" in str(ended.value)) == ("key", True)

    principal = console.sessions.resume(env_value)[0].principal
    console.admin_keys.revoke(principal, env_key.id)
    with pytest.raises(SessionEnded) as revoked:
        console.sessions.resume(env_value)
    assert "revoked" in str(revoked.value)


def test_csrf_tokens_are_bound_to_their_session_or_sign_in_nonce(console: Console) -> None:
    _, plaintext = console.admin_keys.create_local(None)
    one, _ = console.sessions.sign_in(plaintext)
    two, _ = console.sessions.sign_in(plaintext)
    token = console.sessions.csrf_token(one)
    assert console.sessions.csrf_ok(one, token)
    assert not console.sessions.csrf_ok(two, token)
    assert not console.sessions.csrf_ok(one, "")
    nonce = "n" * 22
    assert console.sessions.sign_in_csrf_ok(nonce, console.sessions.sign_in_csrf(nonce))
    assert not console.sessions.sign_in_csrf_ok("", console.sessions.sign_in_csrf(""))
    assert not console.sessions.sign_in_csrf_ok(nonce, token)


def test_a_store_failure_is_unavailable_never_a_session_answer(
    console: Console, dead_store: Store
) -> None:
    _, plaintext = console.admin_keys.create_local(None)
    _, value = console.sessions.sign_in(plaintext)
    with pytest.raises(errors.StoreUnavailable):
        console.other_process(dead_store).resume(value)
