"""The store contract for admin keys as a resource, daily usage and the audit
log's filters and retention, on memory, SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from m2mauth.core import ids
from m2mauth.core.errors import AlreadyExists
from m2mauth.core.interfaces import Store
from m2mauth.core.models import (
    AdminKey,
    AdminKeyRole,
    AdminKeyUsage,
    AuditFilter,
    DailyUsage,
    SecretUsage,
)
from tests.store.support import (
    PLUS_TWO,
    T0,
    add,
    make_app,
    make_event,
    make_org,
    make_secret,
    new_id,
)


@pytest.fixture
def store(contract_store: Store) -> Store:
    return contract_store


def make_key(**fields: Any) -> AdminKey:
    key = AdminKey(
        id=new_id(ids.ADMIN_KEY),
        key_hash=b"\x00hash" + new_id("h").encode(),
        hint="wxyz",
        organization_id=None,
        created_at=T0,
    )
    return dataclasses.replace(key, **fields)


# --- admin keys --------------------------------------------------------------------


def test_an_admin_key_round_trips_every_field(store: Store) -> None:
    key = make_key(
        name="billing-api",
        role=AdminKeyRole.TOKEN_VERIFIER,
        organization_id="org_x",
        expires_at=(T0 + timedelta(days=90)).astimezone(PLUS_TWO),
        created_by="ak_creator",
        last_used_at=T0 + timedelta(seconds=1),
        revoked_at=T0 + timedelta(seconds=2),
    )
    add(store, key)
    with store.reading() as uow:
        got = uow.get_admin_key(key.id)
        by_hash = uow.get_admin_key_by_hash(key.key_hash)
    assert got == by_hash
    assert got == dataclasses.replace(key, expires_at=T0 + timedelta(days=90))
    assert got is not None
    assert got.expires_at is not None
    assert got.expires_at.utcoffset() == timedelta(0)


def test_missing_keys_are_none(store: Store) -> None:
    with store.reading() as uow:
        assert uow.get_admin_key(new_id(ids.ADMIN_KEY)) is None
        assert uow.get_admin_key("ak_\x00") is None


def test_admin_keys_list_by_organization_oldest_first_and_skip_revoked(store: Store) -> None:
    env = make_key()
    org_a = make_key(organization_id="org_a")
    revoked = make_key(organization_id="org_a", revoked_at=T0)
    org_b = make_key(organization_id="org_b")
    add(store, env, org_a, revoked, org_b)
    with store.reading() as uow:

        def listed(**kwargs: Any) -> list[str]:
            options: dict[str, Any] = {
                "organization_id": None,
                "include_revoked": False,
                "after_id": None,
                "limit": 10,
            }
            return [k.id for k in uow.list_admin_keys(**{**options, **kwargs})]

        assert listed() == [env.id, org_a.id, org_b.id]
        assert listed(include_revoked=True) == [env.id, org_a.id, revoked.id, org_b.id]
        assert listed(organization_id="org_a") == [org_a.id]
        assert listed(organization_id="org_a", include_revoked=True) == [org_a.id, revoked.id]
        assert listed(after_id=env.id, limit=1) == [org_a.id]
        assert listed(organization_id="org_\x00") == []


def test_an_admin_key_update_replaces_it(store: Store) -> None:
    key = make_key(name="old")
    add(store, key)
    changed = dataclasses.replace(key, name="new", revoked_at=T0 + timedelta(hours=1))
    with store.unit_of_work() as uow:
        uow.update_admin_key(changed)
    with store.reading() as uow:
        assert uow.get_admin_key(key.id) == changed
        assert uow.get_admin_key_by_hash(key.key_hash) == changed


def test_admin_key_usage_keeps_the_latest(store: Store) -> None:
    key = make_key()
    add(store, key)
    later = T0 + timedelta(minutes=5)
    with store.unit_of_work() as uow:
        uow.record_admin_key_usage(
            [AdminKeyUsage(key.id, later), AdminKeyUsage(new_id(ids.ADMIN_KEY), later)]
        )
    with store.unit_of_work() as uow:
        uow.record_admin_key_usage([AdminKeyUsage(key.id, T0)])  # older: ignored
    with store.reading() as uow:
        stored = uow.get_admin_key(key.id)
    assert stored is not None
    assert stored.last_used_at == later


def test_a_duplicate_admin_key_hash_is_refused(store: Store) -> None:
    key = make_key()
    add(store, key)
    with pytest.raises(AlreadyExists) as info, store.unit_of_work() as uow:
        uow.add_admin_key(make_key(key_hash=key.key_hash))
    assert (info.value.resource, info.value.field) == ("admin_key", "key_hash")


# --- daily usage -------------------------------------------------------------------


def test_secret_usage_counts_tokens_per_application_and_day(store: Store) -> None:
    org = make_org()
    app, other = make_app(org), make_app(org)
    first, second = make_secret(app), make_secret(app)
    add(store, org, app, other, first, second)
    day1 = T0.replace(hour=23, minute=59)
    day2 = day1 + timedelta(minutes=2)
    with store.unit_of_work() as uow:
        uow.record_secret_usage(
            [
                SecretUsage(first.id, app.id, day1, 3),
                SecretUsage(second.id, app.id, day1 - timedelta(hours=1), 2),
                SecretUsage(first.id, app.id, day2, 1),
            ]
        )
    with store.unit_of_work() as uow:
        uow.record_secret_usage([SecretUsage(second.id, app.id, day2 + timedelta(seconds=1), 4)])
        # A deleted application (or one never stored) counts nothing and breaks nothing.
        uow.record_secret_usage([SecretUsage(new_id(ids.CLIENT_SECRET), new_id("app"), day2, 9)])
    with store.reading() as uow:
        usage = uow.list_daily_usage(app.id, since=day1.date())
        assert uow.list_daily_usage(other.id, since=day1.date()) == []
        assert uow.list_daily_usage(app.id, since=day2.date()) == usage[:1]
    assert usage == [
        DailyUsage(day2.date(), 5, day2 + timedelta(seconds=1)),
        DailyUsage(day1.date(), 5, day1),
    ]


def test_deleting_an_application_deletes_its_usage(store: Store) -> None:
    org = make_org()
    app = make_app(org)
    secret = make_secret(app)
    add(store, org, app, secret)
    with store.unit_of_work() as uow:
        uow.record_secret_usage([SecretUsage(secret.id, app.id, T0, 1)])
        uow.delete_application(app.id)
    add(store, app)  # the same id again: starts from nothing
    with store.reading() as uow:
        assert uow.list_daily_usage(app.id, since=T0.date()) == []


def test_deleting_an_organization_deletes_its_applications_usage(store: Store) -> None:
    org = make_org()
    app = make_app(org)
    secret = make_secret(app)
    add(store, org, app, secret)
    with store.unit_of_work() as uow:
        uow.record_secret_usage([SecretUsage(secret.id, app.id, T0, 1)])
        uow.delete_organization(org.id)
    add(store, org, app)
    with store.reading() as uow:
        assert uow.list_daily_usage(app.id, since=T0.date()) == []


# --- audit filters and retention ------------------------------------------------------


def test_audit_events_filter_by_action_and_actor(store: Store) -> None:
    a = make_event(action="token.issue_failed", actor="malformed:0123456789ab")
    b = make_event(action="token.issue_failed", actor="client_X")
    c = make_event(action="application.create", actor="client_X")
    add(store, a, b, c)
    with store.reading() as uow:

        def ids_for(**flt: Any) -> list[str]:
            found = uow.list_audit_events(AuditFilter(**flt), before_id=None, limit=10)
            return [e.id for e in found]

        assert ids_for(action="token.issue_failed") == [b.id, a.id]
        assert ids_for(actor="client_X") == [c.id, b.id]
        assert ids_for(action="token.issue_failed", actor="client_X") == [b.id]
        assert ids_for(action="nothing") == []
        assert ids_for(actor="\x00") == []


def test_purging_deletes_only_old_events_oldest_first_in_batches(store: Store) -> None:
    old = [make_event(time=T0 - timedelta(days=100, minutes=i)) for i in range(5)]
    recent = make_event(time=T0)
    add(store, *old, recent)
    cutoff = T0 - timedelta(days=90)
    with store.unit_of_work() as uow:
        assert uow.purge_audit_events(cutoff, limit=2) == 2
    with store.unit_of_work() as uow:
        assert uow.purge_audit_events(cutoff, limit=10) == 3
        assert uow.purge_audit_events(cutoff, limit=10) == 0
    with store.reading() as uow:
        left = uow.list_audit_events(AuditFilter(), before_id=None, limit=10)
    assert [e.id for e in left] == [recent.id]
