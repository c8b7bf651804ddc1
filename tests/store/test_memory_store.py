"""What only the memory store has: copy-on-write transactions, failure injection, sharing.

The contract it shares with the SQL store is tested in test_store_contract.py.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from m2mauth.core.blocking import WouldBlock, non_blocking
from m2mauth.core.errors import AlreadyExists, StoreUnavailable
from m2mauth.core.models import AuditFilter, SecretUsage
from m2mauth.store.memory import IntegrityError, MemoryDatabase, MemoryStore
from tests.store.support import (
    T0,
    a_writer_holding_its_lock,
    add,
    make_app,
    make_event,
    make_org,
    make_secret,
)
from tests.store.test_store_failures import CALLS

# The UnitOfWork methods that change data: refused through reading().
WRITES = {
    "add_organization",
    "update_organization",
    "delete_organization",
    "add_application",
    "update_application",
    "delete_application",
    "add_client_secret",
    "delete_client_secret",
    "record_secret_usage",
    "add_admin_key",
    "update_admin_key",
    "record_admin_key_usage",
    "add_audit_event",
    "purge_audit_events",
    "announce",
    "purge_changes",
    "add_signing_key",
    "update_signing_key",
    "use_client_assertion",
    "purge_client_assertions",
    "add_revoked_token",
    "purge_revoked_tokens",
}


class Boom(Exception):
    pass


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def everything(store: MemoryStore) -> dict[str, Any]:
    """All that one can read back, to compare the store before and after."""
    with store.reading() as uow:
        apps = uow.list_applications(organization_id=None, after_id=None, limit=1000)
        return {
            "organizations": uow.list_organizations(after_id=None, limit=1000),
            "applications": apps,
            "secrets": [uow.list_client_secrets(app.id) for app in apps],
            "admin_keys": uow.count_admin_keys(),
            "audit": uow.list_audit_events(AuditFilter(), before_id=None, limit=1000),
            "signing_keys": uow.list_signing_keys(),
            "revoked": uow.is_token_revoked("tok_1"),
        }


# --- atomicity -------------------------------------------------------------------


def test_an_exception_leaves_nothing_of_the_unit_in_any_table(store: MemoryStore) -> None:
    org = make_org(external_id="crm-1")
    app = make_app(org)
    secret = make_secret(app)
    add(store, org, app, secret)
    before = everything(store)

    def write_everywhere_then_fail() -> None:
        with store.unit_of_work() as uow:
            # Every kind of write, on every table, then a failure.
            uow.update_organization(dataclasses.replace(org, name="renamed", external_id="crm-2"))
            uow.add_organization(make_org(external_id="crm-1-again"))
            uow.record_secret_usage([SecretUsage(secret.id, app.id, T0, 1)])
            uow.delete_application(app.id)
            uow.add_audit_event(make_event())
            for method in ("add_admin_key", "add_signing_key", "add_revoked_token"):
                CALLS[method](uow)
            assert uow.get_application(app.id) is None  # its own writes are visible to it
            raise Boom

    with pytest.raises(Boom):
        write_everywhere_then_fail()
    assert everything(store) == before
    with store.reading() as uow:
        # The unique indexes were rolled back with the rows.
        assert uow.get_application_by_client_id(app.client_id) == app
        assert uow.get_token_state(app.client_id, "tok_1") is not None
    # "crm-2" was never taken, "crm-1" still is.
    add(store, make_org(external_id="crm-2"))


def test_a_failed_write_aborts_the_unit_of_work_as_postgresql_does(store: MemoryStore) -> None:
    # Constraints are checked before anything is changed, so a failed statement
    # changes nothing; and like PostgreSQL the unit of work refuses to go on or
    # commit, so code that swallows a store error fails in the unit tier too.
    org = make_org()
    app, other = make_app(org), make_app(org)
    add(store, org, app, other)
    refused = pytest.raises(RuntimeError, match="can neither go on nor commit")
    with refused, store.unit_of_work() as uow:
        with pytest.raises(IntegrityError):
            uow.update_application(
                dataclasses.replace(app, client_id="new-client", organization_id="org_missing")
            )
        uow.get_application(app.id)
    refused = pytest.raises(RuntimeError, match="can neither go on nor commit")
    with refused, store.unit_of_work() as uow, pytest.raises(AlreadyExists):
        uow.add_organization(org)
        # Even without a further statement, the commit is refused.
    with store.reading() as uow:
        assert uow.get_application(app.id) == app
        assert uow.get_application_by_client_id("new-client") is None


def test_foreign_keys_are_enforced(store: MemoryStore) -> None:
    # As the SQL store's driver IntegrityError: a bug or race in the caller,
    # neither "exists" nor "unavailable".
    org = make_org()
    add(store, org)
    with pytest.raises(IntegrityError, match="no organization"), store.unit_of_work() as uow:
        uow.add_application(make_app(make_org()))
    with pytest.raises(IntegrityError, match="no application"), store.unit_of_work() as uow:
        uow.add_client_secret(make_secret(make_app(org)))
    assert everything(store)["applications"] == []


def test_naive_datetimes_are_refused(store: MemoryStore) -> None:
    with pytest.raises(ValueError, match="naive datetime"), store.unit_of_work() as uow:
        uow.add_organization(make_org(created_at=datetime(2026, 1, 1)))
    with pytest.raises(ValueError, match="naive datetime"), store.unit_of_work() as uow:
        uow.purge_revoked_tokens(datetime(2026, 1, 1))
    assert everything(store)["organizations"] == []


def test_stored_records_cannot_be_changed_through_the_callers_objects(
    store: MemoryStore,
) -> None:
    details = {"hint": "abcd"}
    event = make_event(details=details)
    add(store, event)
    details["hint"] = "changed after add"
    with store.reading() as uow:
        (got,) = uow.list_audit_events(AuditFilter(), before_id=None, limit=1)
    got.details["hint"] = "changed after read"
    with store.reading() as uow:
        (again,) = uow.list_audit_events(AuditFilter(), before_id=None, limit=1)
    assert again.details == {"hint": "abcd"}


def test_a_unit_of_work_cannot_be_used_after_it_ended(store: MemoryStore) -> None:
    # A late write through a committed unit would change the published tables
    # outside the writer lock.
    with store.unit_of_work() as uow:
        uow.add_organization(make_org())
    with pytest.raises(RuntimeError, match="ended"):
        uow.add_organization(make_org())
    with store.reading() as reader:
        pass
    with pytest.raises(RuntimeError, match="ended"):
        reader.count_admin_keys()
    assert len(everything(store)["organizations"]) == 1


# --- failure injection -------------------------------------------------------------


def test_fail_with_makes_every_entry_point_unavailable_until_healed(store: MemoryStore) -> None:
    org = make_org()
    add(store, org)
    cause = ConnectionResetError("connection reset by peer")
    store.fail_with(cause)
    entry_points: list[Callable[[], object]] = [
        store.ping,
        lambda: store.unit_of_work().__enter__(),
        lambda: store.reading().__enter__(),
    ]
    for enter in entry_points:
        with pytest.raises(StoreUnavailable) as info:
            enter()
        assert info.value.__cause__ is cause  # kept for the logs, as a driver error is

    store.fail_with(None)
    store.ping()
    with store.reading() as uow:
        assert uow.get_organization(org.id) == org


@pytest.mark.parametrize("method", sorted(CALLS))
def test_every_method_raises_store_unavailable_once_the_store_fails(method: str) -> None:
    # The database goes away in the middle of a unit of work: the next call
    # fails, it never answers "absent".
    store = MemoryStore()
    add(store, make_org())
    with store.unit_of_work() as uow:
        uow.count_admin_keys()
        store.fail_with(OSError("gone"))
        with pytest.raises(StoreUnavailable):
            CALLS[method](uow)
        store.fail_with(None)  # so that the commit, tested below, succeeds


def test_a_commit_to_a_failed_store_writes_nothing(store: MemoryStore) -> None:
    org = make_org()

    def write_then_fail_the_store() -> None:
        with store.unit_of_work() as uow:
            uow.add_organization(org)
            store.fail_with(OSError("gone"))

    with pytest.raises(StoreUnavailable):
        write_then_fail_the_store()
    store.fail_with(None)
    with store.reading() as uow:
        assert uow.get_organization(org.id) is None


def test_a_closed_store_is_unavailable_but_its_database_keeps_the_data() -> None:
    database = MemoryDatabase()
    store, other = MemoryStore(database), MemoryStore(database)
    org = make_org()
    add(store, org)
    store.close()
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable), store.unit_of_work():
        pass
    with pytest.raises(StoreUnavailable), store.reading():
        pass
    with other.reading() as uow:
        assert uow.get_organization(org.id) == org


def test_fail_with_affects_only_that_store() -> None:
    database = MemoryDatabase()
    failing, healthy = MemoryStore(database), MemoryStore(database)
    failing.fail_with(OSError("this replica's connection is broken"))
    org = make_org()
    add(healthy, org)
    healthy.ping()
    with pytest.raises(StoreUnavailable), failing.reading():
        pass


# --- sharing -----------------------------------------------------------------------


def test_stores_on_one_database_share_data_and_others_do_not() -> None:
    database = MemoryDatabase()
    first, second, elsewhere = MemoryStore(database), MemoryStore(database), MemoryStore()
    org = make_org()
    add(first, org)
    with second.unit_of_work() as uow:
        assert uow.get_organization(org.id) == org
        uow.add_application(make_app(org))
    with first.reading() as uow:
        assert uow.count_applications(org.id) == 1
    with elsewhere.reading() as uow:
        assert uow.get_organization(org.id) is None


def test_writers_on_two_stores_of_one_database_are_serialised() -> None:
    # The writer lock belongs to the database, so two "processes" cannot both
    # read-modify-write: the second waits for the first to commit.
    database = MemoryDatabase()
    first, second = MemoryStore(database), MemoryStore(database)
    pending = make_org()
    with a_writer_holding_its_lock(first, pending) as done:
        entered = threading.Event()
        seen = []

        def write_through_second() -> None:
            with second.unit_of_work() as uow:
                entered.set()
                seen.append(uow.get_organization(pending.id))

        waiting = threading.Thread(target=write_through_second)
        waiting.start()
        assert not entered.wait(0.2)  # queued behind the first writer
        done.set()
        waiting.join(10)
    assert not waiting.is_alive()
    assert seen == [pending]  # it read after the first committed


def test_a_unit_of_work_inside_another_on_one_thread_is_refused(store: MemoryStore) -> None:
    # It would wait for the writer lock its own thread holds, forever.
    org = make_org()

    def nest() -> None:
        with store.unit_of_work() as outer:
            outer.add_organization(org)
            with store.unit_of_work():
                pass

    with pytest.raises(RuntimeError, match="inside another"):
        nest()
    add(store, org)  # the lock was released, and nothing was written
    with store.reading() as uow:
        assert uow.list_organizations(after_id=None, limit=10) == [org]


# --- reading -----------------------------------------------------------------------


def test_reading_neither_sees_nor_waits_for_an_uncommitted_writer(store: MemoryStore) -> None:
    committed = make_org(name="committed")
    add(store, committed)
    pending = make_org(name="pending")
    with a_writer_holding_its_lock(store, pending) as done:
        with store.reading() as uow:
            seen = (uow.get_organization(committed.id), uow.get_organization(pending.id))
        assert not done.is_set()  # answered while the writer still held its lock
    assert seen == (committed, None)
    with store.reading() as uow:
        assert uow.get_organization(pending.id) == pending


def test_reading_keeps_its_snapshot_across_a_commit(store: MemoryStore) -> None:
    org = make_org()
    add(store, org)
    with store.reading() as uow:
        before = uow.get_organization(org.id)
        with store.unit_of_work() as writer:
            writer.delete_organization(org.id)
            writer.add_organization(make_org())
        # One consistent snapshot for the whole read, as on SQLite.
        assert uow.get_organization(org.id) == before == org
        assert len(uow.list_organizations(after_id=None, limit=10)) == 1
    with store.reading() as uow:
        assert uow.get_organization(org.id) is None


@pytest.mark.parametrize("method", sorted(WRITES))
def test_writes_through_reading_are_refused(store: MemoryStore, method: str) -> None:
    with pytest.raises(RuntimeError, match="cannot write"), store.reading() as uow:
        CALLS[method](uow)
    with store.reading() as uow:
        assert uow.get_organization("org_1") is None
        assert uow.count_admin_keys() == 0


def test_reads_and_locks_are_allowed_through_reading() -> None:
    assert set(CALLS) >= WRITES  # WRITES names no method that does not exist
    # The others all read (or lock, trivially): reading() allows them.
    store = MemoryStore()
    with store.reading() as uow:
        for method in sorted(set(CALLS) - WRITES):
            CALLS[method](uow)


def test_only_a_writer_may_wait_where_blocking_is_not_allowed(store: MemoryStore) -> None:
    # A unit of work may queue behind another writer; a read never waits.
    with non_blocking():
        with pytest.raises(WouldBlock), store.unit_of_work():
            pass
        store.ping()
        with store.reading() as uow:
            assert uow.count_admin_keys() == 0
