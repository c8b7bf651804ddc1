"""Concurrent read-modify-writes of one row lose nothing, on every backend.

An update reads the whole row and writes it back whole. On PostgreSQL at READ
COMMITTED two such units of work, unserialised, both read the row as it was
and the later write undoes the earlier one: a rename undid a revocation of
every token, an admin key's rename brought a revoked key back. Each test widens
the window between the read and the write (the reads sleep), starts the second
change inside it, and checks that both changes hold.
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
from m2mauth.core.errors import InvalidField
from m2mauth.core.interfaces import Store
from m2mauth.core.models import Principal
from tests.store.support import StoreFactory

ENV = Principal(admin_key_id="ak_test", organization_id=None)
READ_PAUSE = 0.3
SLOW_READS = ("get_organization", "get_application", "get_admin_key")


class _SlowReads:
    """A unit of work whose row reads take READ_PAUSE longer."""

    def __init__(self, uow: Any) -> None:
        self._uow = uow

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._uow, name)
        if name not in SLOW_READS:
            return found

        def slow(*args: Any, **kwargs: Any) -> Any:
            row = found(*args, **kwargs)
            time.sleep(READ_PAUSE)
            return row

        return slow


class _SlowStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextmanager
    def unit_of_work(self) -> Iterator[Any]:
        with self._store.unit_of_work() as uow:
            yield _SlowReads(uow)


@pytest.fixture
def app(open_store: StoreFactory) -> Iterator[App]:
    settings = Settings(
        database_url="unused", root_key="unused", issuer="https://auth.example.com"
    ).with_defaults()
    slow: Any = _SlowStore(open_store())
    built = bootstrap(settings, store=slow, root_key=secrets.token_bytes(32))
    yield built
    built.close()


def _together(
    first: Callable[[], object], second: Callable[[], object]
) -> list[BaseException | None]:
    """Run ``first``, and ``second`` while ``first`` is between its read and its
    write; what each raised (None: nothing)."""
    raised: list[BaseException | None] = [None, None]

    def run(index: int, change: Callable[[], object]) -> None:
        try:
            change()
        except BaseException as exc:  # returned to the test's thread
            raised[index] = exc

    threads = [
        threading.Thread(target=run, args=(index, change))
        for index, change in enumerate((first, second))
    ]
    threads[0].start()
    time.sleep(READ_PAUSE / 3)
    threads[1].start()
    for thread in threads:
        thread.join(30)
    return raised


def test_a_rename_does_not_undo_an_organization_token_revocation(app: App) -> None:
    org = app.organizations.create(ENV, "before", "", True)
    revoked: list[object] = []
    assert _together(
        lambda: app.organizations.update(ENV, org.id, ["name"], "after", "", None),
        lambda: revoked.append(app.organizations.revoke_tokens(ENV, org.id)),
    ) == [None, None]
    stored = app.organizations.get(ENV, org.id)
    assert stored.name == "after"
    assert stored.tokens_revoked_before == revoked[0]


def test_a_rename_does_not_undo_an_application_token_revocation(app: App) -> None:
    org = app.organizations.create(ENV, "org", "", True)
    made = app.applications.create(ENV, org.id, ApplicationFields(name="before"))
    revoked: list[object] = []
    assert _together(
        lambda: app.applications.update(ENV, made.id, ["name"], ApplicationFields(name="after")),
        lambda: revoked.append(app.applications.revoke_tokens(ENV, made.id)),
    ) == [None, None]
    stored = app.applications.get(ENV, made.id)
    assert stored.name == "after"
    assert stored.tokens_revoked_before == revoked[0]


def test_two_updates_of_different_fields_both_hold(app: App) -> None:
    org = app.organizations.create(ENV, "org", "", True)
    made = app.applications.create(ENV, org.id, ApplicationFields(name="before"))
    assert _together(
        lambda: app.applications.update(ENV, made.id, ["name"], ApplicationFields(name="after")),
        lambda: app.applications.update(
            ENV, made.id, ["scopes"], ApplicationFields(name="", scopes=("invoices:read",))
        ),
    ) == [None, None]
    stored = app.applications.get(ENV, made.id)
    assert (stored.name, stored.scopes) == ("after", ("invoices:read",))


def test_a_rename_does_not_bring_a_revoked_admin_key_back(app: App) -> None:
    key, _ = app.admin_keys.create_local(None, name="before")
    _, renaming = _together(
        lambda: app.admin_keys.revoke(ENV, key.id),
        lambda: app.admin_keys.update(ENV, key.id, ["name"], "after", None),
    )
    # The rename, second, sees the revocation and is refused; it never writes
    # back the key as it was before.
    assert isinstance(renaming, InvalidField), renaming
    assert app.admin_keys.get(ENV, key.id).revoked_at is not None
