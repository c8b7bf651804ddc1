"""The store contract (core.interfaces.UnitOfWork), run against memory, SQLite and PostgreSQL alike.

Every test here runs on each backend of tests/store/conftest.py. What only the
SQL store has (its tables, engines, driver errors) is tested in test_sql_store.py,
what only the memory store has in test_memory_store.py.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from m2mauth.core import ids
from m2mauth.core.errors import AlreadyExists
from m2mauth.core.interfaces import Store, UnitOfWork
from m2mauth.core.models import (
    AdminKey,
    AuditFilter,
    FederatedCredential,
    RevokedToken,
    SecretUsage,
    SigningKeyState,
    TokenEndpointAuthMethod,
    TokenState,
)
from tests.store.support import (
    PLUS_TWO,
    T0,
    StoreFactory,
    a_writer_holding_its_lock,
    add,
    make_app,
    make_event,
    make_org,
    make_secret,
    make_signing_key,
    new_id,
)


@pytest.fixture
def store(contract_store: Store) -> Store:
    """Here ``store`` is the contract's: every backend, not tests/conftest.py's SQL only."""
    return contract_store


# --- organizations -------------------------------------------------------------


def test_organization_round_trips_with_aware_utc_microsecond_times(store: Store) -> None:
    org = make_org(
        external_id="crm-1",
        created_at=T0,
        updated_at=T0.astimezone(PLUS_TWO) + timedelta(microseconds=1),
        tokens_revoked_before=T0 + timedelta(seconds=1, microseconds=999999),
    )
    add(store, org)
    with store.unit_of_work() as uow:
        got = uow.get_organization(org.id)
    assert got == org
    assert got is not None
    for value in (got.created_at, got.updated_at, got.tokens_revoked_before):
        assert value is not None
        assert value.utcoffset() == timedelta(0)
    assert got.updated_at.microsecond == 123457  # given as 07:06:07.123457+02:00
    assert got.updated_at.hour == 5


def test_missing_records_are_none(store: Store) -> None:
    with store.unit_of_work() as uow:
        assert uow.get_organization(new_id(ids.ORGANIZATION)) is None
        assert uow.get_application(new_id(ids.APPLICATION)) is None
        assert uow.get_application_by_client_id(new_id(ids.CLIENT)) is None
        assert uow.get_admin_key_by_hash(b"nope") is None
        assert uow.get_token_state(new_id(ids.CLIENT), "jti") is None
        assert uow.is_token_revoked("jti") is False
        assert uow.list_client_secrets(new_id(ids.APPLICATION)) == []
        assert uow.count_applications(new_id(ids.ORGANIZATION)) == 0
        assert uow.count_admin_keys() == 0
        assert uow.list_signing_keys() == []


def test_update_organization_replaces_the_row(store: Store) -> None:
    org = make_org(external_id="old")
    other = make_org()
    add(store, org, other)
    changed = dataclasses.replace(
        org,
        name="Renamed",
        external_id=None,
        enabled=False,
        updated_at=T0 + timedelta(hours=1),
        tokens_revoked_before=T0 + timedelta(minutes=5),
    )
    with store.unit_of_work() as uow:
        uow.update_organization(changed)
    with store.unit_of_work() as uow:
        assert uow.get_organization(org.id) == changed
        assert uow.get_organization(other.id) == other


def test_list_organizations_pages_by_ascending_id(store: Store) -> None:
    orgs = [make_org(name=f"org {i}") for i in range(5)]
    add(store, *reversed(orgs))  # insertion order must not matter
    with store.unit_of_work() as uow:
        first = uow.list_organizations(after_id=None, limit=2)
        second = uow.list_organizations(after_id=first[-1].id, limit=2)
        third = uow.list_organizations(after_id=second[-1].id, limit=2)
        only = uow.list_organizations(after_id=None, limit=10, only_id=orgs[3].id)
        only_before_cursor = uow.list_organizations(
            after_id=orgs[3].id, limit=10, only_id=orgs[3].id
        )
    assert first + second + third == orgs
    assert [len(first), len(second), len(third)] == [2, 2, 1]
    assert only == [orgs[3]]
    assert only_before_cursor == []


def test_external_id_is_unique(store: Store) -> None:
    taken = make_org(external_id="crm-1")
    add(store, taken)
    with pytest.raises(AlreadyExists) as info, store.unit_of_work() as uow:
        uow.add_organization(make_org(external_id="crm-1"))
    assert (info.value.resource, info.value.field) == ("organization", "external_id")

    other = make_org(external_id="crm-2")
    add(store, other)
    with pytest.raises(AlreadyExists) as info, store.unit_of_work() as uow:
        uow.update_organization(dataclasses.replace(other, external_id="crm-1"))
    assert (info.value.resource, info.value.field) == ("organization", "external_id")


def test_unique_values_freed_by_an_update_or_a_delete_can_be_taken_again(store: Store) -> None:
    org = make_org(external_id="crm-1")
    app = make_app(org)
    add(store, org, app)
    moved = dataclasses.replace(app, client_id=new_id(ids.CLIENT))
    with store.unit_of_work() as uow:
        uow.update_organization(dataclasses.replace(org, external_id="crm-2"))
        uow.update_application(moved)
        # Keeping one's own value is no clash.
        uow.update_application(dataclasses.replace(moved, name="renamed"))
    with store.unit_of_work() as uow:
        assert uow.get_application_by_client_id(app.client_id) is None
        assert uow.get_application_by_client_id(moved.client_id) == dataclasses.replace(
            moved, name="renamed"
        )
        assert uow.get_token_state(app.client_id, "jti") is None
    reuser = make_org(external_id="crm-1")
    add(store, reuser, make_app(reuser, client_id=app.client_id))
    with store.unit_of_work() as uow:
        uow.delete_organization(org.id)
    add(store, make_org(external_id="crm-2"), make_app(reuser, client_id=moved.client_id))


def test_many_organizations_may_have_no_external_id(store: Store) -> None:
    orgs = [make_org(external_id=None) for _ in range(3)]
    add(store, *orgs)
    with store.unit_of_work() as uow:
        assert uow.list_organizations(after_id=None, limit=10) == orgs


def test_duplicate_id_is_already_exists(store: Store) -> None:
    org = make_org()
    add(store, org)
    with pytest.raises(AlreadyExists) as info, store.unit_of_work() as uow:
        uow.add_organization(dataclasses.replace(org, name="again"))
    assert (info.value.resource, info.value.field) == ("organization", "id")


def test_duplicate_ids_of_every_record_are_already_exists(store: Store) -> None:
    org = make_org()
    app = make_app(org)
    secret = make_secret(app)
    admin_key = AdminKey(new_id(ids.ADMIN_KEY), b"hash", "abcd", None, T0)
    signing_key = make_signing_key()
    event = make_event()
    add(store, org, app, secret, admin_key, signing_key, event)
    # Only the id repeats: every other unique value is new.
    duplicates: dict[str, object] = {
        "application": dataclasses.replace(app, client_id=new_id(ids.CLIENT)),
        "client_secret": dataclasses.replace(secret, hint="wxyz"),
        "admin_key": dataclasses.replace(admin_key, key_hash=b"another hash"),
        "signing_key": dataclasses.replace(signing_key, algorithm="EdDSA"),
        "audit_event": dataclasses.replace(event, action="another"),
    }
    for resource, duplicate in duplicates.items():
        with pytest.raises(AlreadyExists) as info:
            add(store, duplicate)
        assert (info.value.resource, info.value.field) == (resource, "id")


# --- applications --------------------------------------------------------------


def test_application_round_trips(store: Store) -> None:
    org = make_org()
    app = make_app(
        org,
        description="ünïcödé, \"quotes\", and 'more'",
        scopes=("a:read", "b:write", "c"),
        audiences=("https://one.test", "https://two.test"),
        token_ttl_seconds=900,
        enabled=False,
        tokens_revoked_before=T0.astimezone(PLUS_TWO),
    )
    bare = make_app(org, scopes=(), audiences=())
    add(store, org, app, bare)
    with store.unit_of_work() as uow:
        assert uow.get_application(app.id) == app
        assert uow.get_application_by_client_id(app.client_id) == app
        got_bare = uow.get_application(bare.id)
        assert uow.count_applications(org.id) == 2
    assert got_bare == bare
    assert got_bare is not None
    assert isinstance(got_bare.scopes, tuple)
    assert isinstance(got_bare.audiences, tuple)


def test_an_applications_auth_method_and_jwks_round_trip(store: Store) -> None:
    org = make_org()
    keyed = make_app(
        org,
        token_endpoint_auth_method=TokenEndpointAuthMethod.PRIVATE_KEY_JWT,
        jwks='{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}',
    )
    default = make_app(org)
    add(store, org, keyed, default)
    with store.reading() as uow:
        assert uow.get_application_by_client_id(keyed.client_id) == keyed
        got_default = uow.get_application(default.id)
    assert got_default is not None
    assert got_default.token_endpoint_auth_method is TokenEndpointAuthMethod.CLIENT_SECRET
    assert got_default.jwks == ""
    federated = make_app(
        org,
        token_endpoint_auth_method=TokenEndpointAuthMethod.FEDERATED,
        federated_credentials=(
            FederatedCredential("https://oidc.example.test", "system:serviceaccount:a:b", "m2m"),
            FederatedCredential("https://gha.example.test", 'repo:"quoted"/ü:*', "m2m"),
        ),
    )
    add(store, federated)
    with store.reading() as uow:
        assert uow.get_application(federated.id) == federated
        unfederated = uow.get_application(default.id)
    assert unfederated is not None
    assert unfederated.federated_credentials == ()
    switched = dataclasses.replace(
        keyed, token_endpoint_auth_method=TokenEndpointAuthMethod.CLIENT_SECRET, jwks=""
    )
    with store.unit_of_work() as uow:
        uow.update_application(switched)
    with store.reading() as uow:
        assert uow.get_application(keyed.id) == switched


def test_update_application_replaces_the_row(store: Store) -> None:
    org = make_org()
    app = make_app(org)
    add(store, org, app)
    changed = dataclasses.replace(
        app, name="renamed", scopes=("x",), audiences=(), token_ttl_seconds=60, enabled=False
    )
    with store.unit_of_work() as uow:
        uow.update_application(changed)
    with store.unit_of_work() as uow:
        assert uow.get_application(app.id) == changed


def test_client_id_is_unique(store: Store) -> None:
    org = make_org()
    app = make_app(org)
    add(store, org, app)
    with pytest.raises(AlreadyExists) as info, store.unit_of_work() as uow:
        uow.add_application(make_app(org, client_id=app.client_id))
    assert (info.value.resource, info.value.field) == ("application", "client_id")


def test_list_applications_pages_by_ascending_id_optionally_per_org(store: Store) -> None:
    org_a, org_b = make_org(), make_org()
    apps = [make_app(org_a if i % 2 == 0 else org_b) for i in range(6)]
    add(store, org_a, org_b, *reversed(apps))
    of_a = [a for a in apps if a.organization_id == org_a.id]
    with store.unit_of_work() as uow:
        everything = uow.list_applications(organization_id=None, after_id=None, limit=100)
        page_1 = uow.list_applications(organization_id=org_a.id, after_id=None, limit=2)
        page_2 = uow.list_applications(organization_id=org_a.id, after_id=page_1[-1].id, limit=2)
        after_all = uow.list_applications(organization_id=None, after_id=apps[-1].id, limit=100)
    assert everything == apps
    assert page_1 + page_2 == of_a
    assert len(page_1) == 2
    assert after_all == []


def test_delete_organization_cascades_to_applications_and_secrets(store: Store) -> None:
    doomed, kept = make_org(), make_org()
    doomed_apps = [make_app(doomed), make_app(doomed)]
    kept_app = make_app(kept)
    doomed_secrets = [make_secret(a) for a in doomed_apps for _ in range(2)]
    kept_secret = make_secret(kept_app)
    add(store, doomed, kept, *doomed_apps, kept_app, *doomed_secrets, kept_secret)

    with store.unit_of_work() as uow:
        uow.delete_organization(doomed.id)

    with store.unit_of_work() as uow:
        assert uow.get_organization(doomed.id) is None
        assert uow.count_applications(doomed.id) == 0
        for app in doomed_apps:
            assert uow.get_application(app.id) is None
            assert uow.list_client_secrets(app.id) == []
        assert uow.get_organization(kept.id) == kept
        assert uow.get_application(kept_app.id) == kept_app
        assert uow.list_client_secrets(kept_app.id) == [kept_secret]


def test_delete_application_deletes_its_secrets(store: Store) -> None:
    org = make_org()
    app, other = make_app(org), make_app(org)
    secret, other_secret = make_secret(app), make_secret(other)
    add(store, org, app, other, secret, other_secret)
    with store.unit_of_work() as uow:
        uow.delete_application(app.id)
    with store.unit_of_work() as uow:
        assert uow.get_application(app.id) is None
        assert uow.get_application_by_client_id(app.client_id) is None
        assert uow.list_client_secrets(app.id) == []
        assert uow.list_client_secrets(other.id) == [other_secret]
        assert uow.count_applications(org.id) == 1


# --- client secrets ------------------------------------------------------------


def test_client_secrets_round_trip_in_id_order(store: Store) -> None:
    org = make_org()
    app = make_app(org)
    secrets = [
        make_secret(app),
        make_secret(app, expires_at=T0 + timedelta(days=30), last_used_at=T0.astimezone(PLUS_TWO)),
        make_secret(app, hint="wxyz"),
    ]
    add(store, org, app, *reversed(secrets))
    with store.unit_of_work() as uow:
        assert uow.list_client_secrets(app.id) == secrets


def test_delete_client_secret_only_deletes_that_applications_secret(store: Store) -> None:
    org = make_org()
    app, intruder = make_app(org), make_app(org)
    secret = make_secret(app)
    add(store, org, app, intruder, secret)
    with store.unit_of_work() as uow:
        assert uow.delete_client_secret(intruder.id, secret.id) is False
        assert uow.list_client_secrets(app.id) == [secret]
        assert uow.delete_client_secret(app.id, secret.id) is True
        assert uow.delete_client_secret(app.id, secret.id) is False
        assert uow.list_client_secrets(app.id) == []


def test_record_secret_usage_keeps_the_latest_time(store: Store) -> None:
    org = make_org()
    app, other_app = make_app(org), make_app(org)
    never_used = make_secret(app)
    used = make_secret(app, last_used_at=T0 + timedelta(hours=1))
    add(store, org, app, other_app, never_used, used)

    with store.unit_of_work() as uow:
        uow.record_secret_usage([])  # nothing to do is fine
        uow.record_secret_usage(
            [
                SecretUsage(never_used.id, app.id, T0 + timedelta(microseconds=7), 3),
                # Older than what is stored: must not move last_used_at back.
                SecretUsage(used.id, app.id, T0, 1),
                # Unknown secret (deleted meanwhile): ignored.
                SecretUsage(new_id(ids.CLIENT_SECRET), app.id, T0, 1),
            ]
        )
    with store.unit_of_work() as uow:
        by_id = {s.id: s for s in uow.list_client_secrets(app.id)}
    assert by_id[never_used.id].last_used_at == T0 + timedelta(microseconds=7)
    assert by_id[used.id].last_used_at == T0 + timedelta(hours=1)

    with store.unit_of_work() as uow:
        uow.record_secret_usage([SecretUsage(used.id, app.id, T0 + timedelta(hours=2), 1)])
        # The secret id with another application's id changes nothing.
        uow.record_secret_usage(
            [SecretUsage(never_used.id, other_app.id, T0 + timedelta(days=1), 1)]
        )
    with store.unit_of_work() as uow:
        by_id = {s.id: s for s in uow.list_client_secrets(app.id)}
    assert by_id[used.id].last_used_at == T0 + timedelta(hours=2)
    assert by_id[never_used.id].last_used_at == T0 + timedelta(microseconds=7)


# --- admin keys ----------------------------------------------------------------


def test_admin_keys(store: Store) -> None:
    env_key = AdminKey(new_id(ids.ADMIN_KEY), b"\x00hash-1\xff", "aaaa", None, T0)
    org = make_org()
    org_key = AdminKey(
        new_id(ids.ADMIN_KEY), b"hash-2", "bbbb", org.id, T0, revoked_at=T0.astimezone(PLUS_TWO)
    )
    add(store, org, env_key, org_key)
    with store.unit_of_work() as uow:
        assert uow.get_admin_key_by_hash(b"\x00hash-1\xff") == env_key
        assert uow.get_admin_key_by_hash(b"hash-2") == org_key
        assert uow.get_admin_key_by_hash(b"hash-3") is None
        assert uow.count_admin_keys() == 2
    with pytest.raises(AlreadyExists) as info, store.unit_of_work() as uow:
        uow.add_admin_key(dataclasses.replace(env_key, id=new_id(ids.ADMIN_KEY)))
    assert (info.value.resource, info.value.field) == ("admin_key", "key_hash")


# --- audit ---------------------------------------------------------------------


def test_audit_events_list_newest_first_with_filters(store: Store) -> None:
    org_a, org_b = new_id(ids.ORGANIZATION), new_id(ids.ORGANIZATION)
    app_a = new_id(ids.APPLICATION)
    events = [
        make_event(
            time=T0 + timedelta(minutes=i),
            organization_id=org_a if i % 2 == 0 else org_b,
            application_id=app_a if i % 3 == 0 else None,
            target=f"target-{i}" if i else None,
            details={"hint": "abcd", "n": str(i)} if i else {},
        )
        for i in range(7)
    ]
    add(store, *events)
    newest_first = list(reversed(events))

    def listed(flt: AuditFilter, before_id: str | None = None, limit: int = 100) -> list[str]:
        with store.unit_of_work() as uow:
            return [e.id for e in uow.list_audit_events(flt, before_id=before_id, limit=limit)]

    with store.unit_of_work() as uow:
        assert uow.list_audit_events(AuditFilter(), before_id=None, limit=100) == newest_first
    page_1 = listed(AuditFilter(), limit=3)
    page_2 = listed(AuditFilter(), before_id=page_1[-1], limit=3)
    assert page_1 + page_2 == [e.id for e in newest_first[:6]]
    assert listed(AuditFilter(organization_id=org_a)) == [
        e.id for e in newest_first if e.organization_id == org_a
    ]
    assert listed(AuditFilter(application_id=app_a)) == [events[6].id, events[3].id, events[0].id]
    assert listed(AuditFilter(organization_id=org_a, application_id=app_a)) == [
        events[6].id,
        events[0].id,
    ]
    # start is inclusive, end exclusive.
    start, end = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)
    window = AuditFilter(start=start, end=end)
    assert listed(window) == [events[4].id, events[3].id, events[2].id]
    # The same instants given in another offset select the same events.
    shifted = AuditFilter(start=start.astimezone(PLUS_TWO), end=end.astimezone(PLUS_TWO))
    assert listed(shifted) == listed(window)
    assert listed(dataclasses.replace(window, organization_id=org_a), before_id=events[4].id) == [
        events[2].id
    ]


# --- signing keys --------------------------------------------------------------


def test_signing_keys_list_newest_first_and_update(store: Store) -> None:
    old = make_signing_key(state=SigningKeyState.CURRENT, activated_at=T0)
    new = make_signing_key(algorithm="EdDSA")
    add(store, old, new)
    with store.unit_of_work() as uow:
        assert uow.list_signing_keys() == [new, old]
    promoted = dataclasses.replace(new, state=SigningKeyState.CURRENT, activated_at=T0)
    demoted = dataclasses.replace(
        old,
        state=SigningKeyState.PREVIOUS,
        deactivated_at=T0 + timedelta(seconds=1),
        retire_at=T0 + timedelta(days=1),
    )
    with store.unit_of_work() as uow:
        uow.lock_signing_keys()
        uow.update_signing_key(promoted)
        uow.update_signing_key(demoted)
    with store.unit_of_work() as uow:
        listed = uow.list_signing_keys()
    assert listed == [promoted, demoted]
    assert listed[1].state is SigningKeyState.PREVIOUS


# --- client assertions ---------------------------------------------------------


def test_a_client_assertion_is_used_once_across_stores(open_store: StoreFactory) -> None:
    """Two stores on one database stand for two processes or replicas: the second
    use of one key is refused whichever process saw the first."""
    one, other = open_store(), open_store()
    key, another = "a" * 64, "b" * 64
    with one.unit_of_work() as uow:
        assert uow.use_client_assertion(key, T0 + timedelta(minutes=5)) is True
    with other.unit_of_work() as uow:
        assert uow.use_client_assertion(key, T0 + timedelta(minutes=5)) is False
        assert uow.use_client_assertion(another, T0 + timedelta(minutes=5)) is True
    with one.unit_of_work() as uow:
        assert uow.use_client_assertion(another, T0 + timedelta(hours=1)) is False


def test_a_rolled_back_use_of_a_client_assertion_is_forgotten(store: Store) -> None:
    key = "c" * 64

    def use_then_fail() -> None:
        with store.unit_of_work() as uow:
            assert uow.use_client_assertion(key, T0) is True
            raise Boom

    with pytest.raises(Boom):
        use_then_fail()
    with store.unit_of_work() as uow:
        assert uow.use_client_assertion(key, T0) is True


def test_purge_client_assertions_deletes_only_expired_ones(store: Store) -> None:
    expired = [f"{i:064x}" for i in range(3)]
    with store.unit_of_work() as uow:
        for i, key in enumerate(expired):
            assert uow.use_client_assertion(key, T0 - timedelta(seconds=i + 1))
        assert uow.use_client_assertion("e" * 64, T0)
        assert uow.use_client_assertion("f" * 64, T0 + timedelta(microseconds=1))
    with store.unit_of_work() as uow:
        assert uow.purge_client_assertions(T0) == 3
    with store.unit_of_work() as uow:
        # Purged ones may be used again (their assertions have long expired);
        # the ones at or after the cutoff are still remembered.
        assert [uow.use_client_assertion(k, T0) for k in expired] == [True] * 3
        assert uow.use_client_assertion("e" * 64, T0) is False
        assert uow.use_client_assertion("f" * 64, T0) is False
        assert uow.purge_client_assertions(T0 - timedelta(days=1)) == 0


def test_concurrent_uses_of_one_client_assertion_let_exactly_one_through(
    open_store: StoreFactory,
) -> None:
    stores = [open_store() for _ in range(4)]
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(len(stores))

    def use(s: Store) -> None:
        start.wait()
        with s.unit_of_work() as uow:
            outcome = uow.use_client_assertion("d" * 64, T0 + timedelta(minutes=1))
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=use, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False, False, False, True]


# --- revocation ----------------------------------------------------------------


def test_revoking_a_token_twice_keeps_the_first_revocation(store: Store) -> None:
    app_id = new_id(ids.APPLICATION)
    first = RevokedToken("tok_1", app_id, expires_at=T0 + timedelta(minutes=5), revoked_at=T0)
    add(store, first)
    add(store, dataclasses.replace(first, expires_at=T0 + timedelta(hours=5)))
    with store.unit_of_work() as uow:
        assert uow.is_token_revoked("tok_1") is True
        assert uow.is_token_revoked("tok_2") is False
        # Purging between the two expiries removes it: the first record was kept.
        assert uow.purge_revoked_tokens(T0 + timedelta(minutes=10)) == 1
        assert uow.is_token_revoked("tok_1") is False


def test_purge_revoked_tokens_deletes_only_expired_ones(store: Store) -> None:
    app_id = new_id(ids.APPLICATION)
    expired = [
        RevokedToken(f"old_{i}", app_id, T0 - timedelta(seconds=i + 1), T0) for i in range(3)
    ]
    at_cutoff = RevokedToken("at_cutoff", app_id, T0, T0)
    live = RevokedToken("live", app_id, T0 + timedelta(microseconds=1), T0)
    add(store, *expired, at_cutoff, live)
    with store.unit_of_work() as uow:
        assert uow.purge_revoked_tokens(T0) == 3
    with store.unit_of_work() as uow:
        assert [uow.is_token_revoked(r.jti) for r in expired] == [False] * 3
        assert uow.is_token_revoked("at_cutoff") is True
        assert uow.is_token_revoked("live") is True
        assert uow.purge_revoked_tokens(T0) == 0


def test_get_token_state_joins_application_organization_and_revocation(store: Store) -> None:
    org = make_org(enabled=False, tokens_revoked_before=T0 + timedelta(seconds=1))
    app = make_app(org, tokens_revoked_before=T0.astimezone(PLUS_TWO))
    other = make_app(org, enabled=False)
    add(store, org, app, other)
    add(store, RevokedToken("tok_revoked", app.id, T0 + timedelta(hours=1), T0))
    with store.unit_of_work() as uow:
        live = uow.get_token_state(app.client_id, "tok_live")
        revoked = uow.get_token_state(app.client_id, "tok_revoked")
        of_other = uow.get_token_state(other.client_id, "tok_live")
    assert live == TokenState(
        application_id=app.id,
        organization_id=org.id,
        application_enabled=True,
        organization_enabled=False,
        application_tokens_revoked_before=T0,
        organization_tokens_revoked_before=T0 + timedelta(seconds=1),
        jti_revoked=False,
    )
    assert revoked == dataclasses.replace(live, jti_revoked=True)
    assert of_other is not None
    assert (of_other.application_id, of_other.application_enabled) == (other.id, False)
    assert of_other.application_tokens_revoked_before is None


def test_lookup_keys_with_nul_characters_are_simply_absent(store: Store) -> None:
    # PostgreSQL rejects NUL in text parameters; a caller-sent client_id with one
    # must read as "no such client", not as a store outage.
    org = make_org()
    app = make_app(org)
    add(store, org, app)
    with store.unit_of_work() as uow:
        assert uow.get_application_by_client_id(app.client_id + "\x00") is None
        assert uow.get_application("app\x00") is None
        assert uow.get_organization("org\x00") is None
        assert uow.list_organizations(after_id=None, limit=5, only_id="o\x00") == []
        assert uow.list_applications(organization_id="o\x00", after_id=None, limit=5) == []
        assert uow.list_client_secrets("a\x00") == []
        assert uow.delete_client_secret(app.id, "s\x00") is False
        assert uow.count_applications("o\x00") == 0
        assert uow.is_token_revoked("t\x00") is False
        assert uow.get_token_state("c\x00", "t") is None
        state = uow.get_token_state(app.client_id, "t\x00")
        assert (
            uow.list_audit_events(AuditFilter(application_id="a\x00"), before_id=None, limit=5)
            == []
        )
    assert state is not None
    assert state.jti_revoked is False


# --- transactions --------------------------------------------------------------


class Boom(Exception):
    pass


def test_an_exception_rolls_back_the_whole_unit_of_work(store: Store) -> None:
    org = make_org()

    def write_then_fail() -> None:
        with store.unit_of_work() as uow:
            uow.add_organization(org)
            uow.add_application(make_app(org))
            assert uow.get_organization(org.id) == org  # visible inside the unit
            raise Boom

    with pytest.raises(Boom):
        write_then_fail()
    with store.unit_of_work() as uow:
        assert uow.get_organization(org.id) is None
        assert uow.count_applications(org.id) == 0


def test_a_unique_violation_rolls_back_earlier_writes_of_the_unit(store: Store) -> None:
    existing = make_org(external_id="taken")
    add(store, existing)
    first = make_org()
    with pytest.raises(AlreadyExists):
        add(store, first, make_event(organization_id=first.id), make_org(external_id="taken"))
    with store.unit_of_work() as uow:
        assert uow.get_organization(first.id) is None
        assert uow.list_audit_events(AuditFilter(), before_id=None, limit=10) == []
        assert uow.list_organizations(after_id=None, limit=10) == [existing]


def test_a_committed_unit_is_visible_to_the_next(store: Store) -> None:
    org = make_org()
    with store.unit_of_work() as uow:
        uow.add_organization(org)
    with store.unit_of_work() as uow:
        assert uow.get_organization(org.id) == org


def test_another_store_on_the_same_database_sees_every_commit(open_store: StoreFactory) -> None:
    # Another process, a replica, or this one restarted: the data belongs to the
    # database, not to the store object, and closing one store keeps it.
    first, second = open_store(), open_store()
    org = make_org()
    add(first, org)
    with second.reading() as uow:
        assert uow.get_organization(org.id) == org
    first.close()
    renamed = dataclasses.replace(org, name="renamed")
    with second.unit_of_work() as uow:
        uow.update_organization(renamed)
    with open_store().unit_of_work() as uow:
        assert uow.get_organization(org.id) == renamed


def test_locks_can_be_taken_in_any_unit_of_work(store: Store) -> None:
    org = make_org()
    app = make_app(org)
    add(store, org, app)
    with store.unit_of_work() as uow:
        uow.lock_signing_keys()
        uow.lock_signing_keys()  # re-entrant within one transaction
        uow.lock_application(app.id)
        uow.lock_application(new_id(ids.APPLICATION))  # missing: nothing to lock
        uow.add_client_secret(make_secret(app))
    with store.unit_of_work() as uow:
        assert len(uow.list_client_secrets(app.id)) == 1


# --- concurrency ---------------------------------------------------------------


def run_two_read_modify_writes(
    store: Store,
    lock: Callable[[UnitOfWork], None],
    read: Callable[[UnitOfWork], int],
    write: Callable[[UnitOfWork, int], None],
) -> None:
    """The first unit locks, reads, waits, writes; the second starts while it waits.

    Serialised, the second reads after the first commits. Without the lock both
    read the same count and write the same thing, and one fails.
    """
    first_locked = threading.Event()
    errors: list[BaseException] = []

    def work(first: bool) -> None:
        try:
            with store.unit_of_work() as uow:
                lock(uow)
                if first:
                    first_locked.set()
                seen = read(uow)
                if first:
                    time.sleep(0.5)  # the window in which an unserialised second would read
                write(uow, seen)
        except BaseException as exc:
            errors.append(exc)
            first_locked.set()

    first = threading.Thread(target=work, args=(True,))
    first.start()
    assert first_locked.wait(10)
    second = threading.Thread(target=work, args=(False,))
    second.start()
    first.join(30)
    second.join(30)
    assert not first.is_alive()
    assert not second.is_alive()
    assert errors == []


def test_lock_signing_keys_serialises_read_modify_write(store: Store) -> None:
    run_two_read_modify_writes(
        store,
        lock=lambda uow: uow.lock_signing_keys(),
        read=lambda uow: len(uow.list_signing_keys()),
        write=lambda uow, n: uow.add_signing_key(make_signing_key(id=f"key_{n:02d}")),
    )
    with store.unit_of_work() as uow:
        # The second saw the first's key: it wrote key_01, not a clashing key_00.
        assert [k.id for k in uow.list_signing_keys()] == ["key_01", "key_00"]


def test_lock_application_serialises_read_modify_write(store: Store) -> None:
    org = make_org()
    app = make_app(org)
    add(store, org, app)
    run_two_read_modify_writes(
        store,
        lock=lambda uow: uow.lock_application(app.id),
        read=lambda uow: len(uow.list_client_secrets(app.id)),
        write=lambda uow, n: uow.add_client_secret(make_secret(app, id=f"secret_{n:02d}")),
    )
    with store.unit_of_work() as uow:
        assert [s.id for s in uow.list_client_secrets(app.id)] == ["secret_00", "secret_01"]


# Had these queued behind the writer, they would have waited out SQLite's busy
# timeout (5 s, less than the writer holds on) and failed as unavailable.


def test_ping_does_not_wait_for_a_writer(store: Store) -> None:
    # Health checks must answer while a unit of work holds SQLite's writer lock.
    with a_writer_holding_its_lock(store, make_org()) as done:
        store.ping()
        assert not done.is_set()


def test_reading_sees_the_last_commit_while_a_writer_holds_its_lock(store: Store) -> None:
    # Reads (client authentication, introspection) must not queue behind a writer.
    committed = make_org(name="committed")
    add(store, committed)
    pending = make_org(name="pending")
    with a_writer_holding_its_lock(store, pending) as done:
        with store.reading() as uow:
            seen = (uow.get_organization(committed.id), uow.get_organization(pending.id))
        assert not done.is_set()
    assert seen == (committed, None)
    with store.reading() as uow:
        assert uow.get_organization(pending.id) == pending


def test_many_threads_lose_no_update_and_never_deadlock(store: Store) -> None:
    org = make_org(name="0")
    add(store, org)
    threads, rounds = 8, 10
    errors: list[BaseException] = []

    def increment() -> None:
        try:
            for _ in range(rounds):
                with store.unit_of_work() as uow:
                    uow.lock_signing_keys()
                    current = uow.get_organization(org.id)
                    assert current is not None
                    uow.update_organization(
                        dataclasses.replace(current, name=str(int(current.name) + 1))
                    )
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=increment) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    with store.unit_of_work() as uow:
        final = uow.get_organization(org.id)
    assert final is not None
    assert final.name == str(threads * rounds)
