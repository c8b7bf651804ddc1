"""Concurrent read-modify-writes of one row lose nothing, on every backend.

An update reads the whole row and writes it back whole. On PostgreSQL at READ
COMMITTED two such units of work, unserialised, both read the row as it was
and the later write undid the earlier one: a rename undid a revocation of
every token, an admin key's rename brought a revoked key back. Each test
holds the first change between its last read and its write, runs the second
change then, and checks that both hold (or that the second saw the first).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from m2mauth.bootstrap import App, bootstrap
from m2mauth.config import Settings
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.errors import InvalidField, NotFound
from m2mauth.core.interfaces import Store
from m2mauth.core.models import Principal
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.store.support import StoreFactory

ENV = Principal(admin_key_id="ak_test", organization_id=None)
# Long enough for the second change to read and write while the first waits.
WRITE_PAUSE = 0.5
WRITES = ("update_organization", "update_application", "update_admin_key")


class _PausedWrites:
    """A unit of work that, in the thread told to, stops before each row write
    and says so: the first change is then between its read and its write."""

    def __init__(self, uow: Any, gate: _Gate) -> None:
        self._uow = uow
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._uow, name)
        if name not in WRITES or threading.get_ident() != self._gate.thread:
            return found

        def paused(*args: Any, **kwargs: Any) -> Any:
            self._gate.writing.set()
            time.sleep(WRITE_PAUSE)
            return found(*args, **kwargs)

        return paused


class _Gate:
    def __init__(self) -> None:
        self.thread: int | None = None
        self.writing = threading.Event()


class _PausingStore:
    def __init__(self, store: Store, gate: _Gate) -> None:
        self._store = store
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextmanager
    def unit_of_work(self) -> Iterator[Any]:
        with self._store.unit_of_work() as uow:
            yield _PausedWrites(uow, self._gate)


@pytest.fixture
def gate() -> _Gate:
    return _Gate()


def _app(store: Store, gate: _Gate) -> App:
    settings = Settings(
        database_url="unused", root_key="unused", issuer="https://auth.example.com"
    ).with_defaults()
    pausing: Any = _PausingStore(store, gate)
    return bootstrap(settings, store=pausing, root_key=secrets.token_bytes(32))


@pytest.fixture
def app(open_store: StoreFactory, gate: _Gate) -> Iterator[App]:
    built = _app(open_store(), gate)
    yield built
    built.close()


@pytest.fixture
def postgres_app(postgres_url: str, gate: _Gate) -> Iterator[App]:
    """Row locks are PostgreSQL's: elsewhere every write is serialised whole."""
    migrate(postgres_url)
    store = SqlStore(postgres_url)
    built = _app(store, gate)
    yield built
    built.close()
    store.close()


def _together(
    gate: _Gate,
    first: Callable[[], object],
    second: Callable[[], object],
    finished: list[int] | None = None,
) -> list[BaseException | None]:
    """Run ``first``; once it is about to write, run ``second``. What each raised;
    ``finished`` gets the changes' indexes in the order they ended."""
    raised: list[BaseException | None] = [None, None]
    ended = finished if finished is not None else []

    def run(index: int, change: Callable[[], object]) -> None:
        if index == 0:
            gate.thread = threading.get_ident()
        try:
            change()
        except BaseException as exc:  # returned to the test's thread
            raised[index] = exc
        ended.append(index)

    first_thread = threading.Thread(target=run, args=(0, first))
    first_thread.start()
    assert gate.writing.wait(30), "the first change never reached its write"
    second_thread = threading.Thread(target=run, args=(1, second))
    second_thread.start()
    for thread in (first_thread, second_thread):
        thread.join(30)
    return raised


def test_a_rename_does_not_undo_an_organization_token_revocation(app: App, gate: _Gate) -> None:
    org = app.organizations.create(ENV, "before", "", True)
    revoked: list[object] = []
    assert _together(
        gate,
        lambda: revoked.append(app.organizations.revoke_tokens(ENV, org.id)),
        lambda: app.organizations.update(ENV, org.id, ["name"], "after", "", None),
    ) == [None, None]
    stored = app.organizations.get(ENV, org.id)
    assert stored.name == "after"
    assert stored.tokens_revoked_before == revoked[0]


def test_a_rename_does_not_undo_an_application_token_revocation(app: App, gate: _Gate) -> None:
    org = app.organizations.create(ENV, "org", "", True)
    made = app.applications.create(ENV, org.id, ApplicationFields(name="before"))
    revoked: list[object] = []
    assert _together(
        gate,
        lambda: revoked.append(app.applications.revoke_tokens(ENV, made.id)),
        lambda: app.applications.update(ENV, made.id, ["name"], ApplicationFields(name="after")),
    ) == [None, None]
    stored = app.applications.get(ENV, made.id)
    assert stored.name == "after"
    assert stored.tokens_revoked_before == revoked[0]


def test_two_updates_of_different_fields_both_hold(app: App, gate: _Gate) -> None:
    org = app.organizations.create(ENV, "org", "", True)
    made = app.applications.create(ENV, org.id, ApplicationFields(name="before"))
    assert _together(
        gate,
        lambda: app.applications.update(ENV, made.id, ["name"], ApplicationFields(name="after")),
        lambda: app.applications.update(
            ENV, made.id, ["scopes"], ApplicationFields(name="", scopes=("invoices:read",))
        ),
    ) == [None, None]
    stored = app.applications.get(ENV, made.id)
    assert (stored.name, stored.scopes) == ("after", ("invoices:read",))


def test_a_rename_does_not_bring_a_revoked_admin_key_back(app: App, gate: _Gate) -> None:
    key, _ = app.admin_keys.create_local(None, name="before")
    _, renaming = _together(
        gate,
        lambda: app.admin_keys.revoke(ENV, key.id),
        lambda: app.admin_keys.update(ENV, key.id, ["name"], "after", None),
    )
    # The rename, second, sees the revocation and is refused; it never writes
    # back the key as it was before.
    assert isinstance(renaming, InvalidField), renaming
    assert app.admin_keys.get(ENV, key.id).revoked_at is not None


def test_another_tenants_row_is_never_locked(postgres_app: App, gate: _Gate) -> None:
    """A key of organization B asking to change A's application is told NOT_FOUND
    at once, even while A's row is held: were it made to wait, the wait would
    say that the id exists (AIP-193)."""
    app = postgres_app
    a = app.organizations.create(ENV, "A", "", True)
    b = app.organizations.create(ENV, "B", "", True)
    target = app.applications.create(ENV, a.id, ApplicationFields(name="a-app"))
    tenant_b = Principal(admin_key_id="ak_b", organization_id=b.id)
    finished: list[int] = []
    _, probing = _together(
        gate,
        lambda: app.applications.revoke_tokens(ENV, target.id),
        lambda: app.applications.update(tenant_b, target.id, ["name"], ApplicationFields(name="x")),
        finished,
    )
    assert isinstance(probing, NotFound), probing
    assert finished == [1, 0]  # answered while A's change still held the row


def test_a_held_organization_does_not_hold_up_new_applications_in_it(
    postgres_app: App, gate: _Gate
) -> None:
    """The row lock is FOR NO KEY UPDATE, as the UPDATE's own: inserting a row
    that references the organization (its FOR KEY SHARE) does not wait."""
    app = postgres_app
    org = app.organizations.create(ENV, "org", "", True)
    finished: list[int] = []
    assert _together(
        gate,
        lambda: app.organizations.update(ENV, org.id, ["name"], "renamed", "", None),
        lambda: app.applications.create(ENV, org.id, ApplicationFields(name="new")),
        finished,
    ) == [None, None]
    assert finished == [1, 0]
