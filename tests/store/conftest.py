"""The store contract's backends: memory, SQLite and PostgreSQL, behind one store factory.

The contract suite (test_store_contract.py) asks for ``contract_store`` or, when
a test needs a second store on the same data (another process, a replica, a
restart), for ``open_store``. SQL-only tests keep using tests/conftest.py's
``store``, which is a SqlStore on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from m2mauth.core.interfaces import Store
from m2mauth.store.memory import MemoryDatabase, MemoryStore
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.store.support import StoreFactory


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def open_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """Opens stores on one new database per test, once on each backend.

    Each call returns a new store on the same data: SqlStore(url) again, or a
    MemoryStore on the same MemoryDatabase. All are closed afterwards.
    """
    opened: list[Store] = []
    if request.param == "memory":
        database = MemoryDatabase()

        def new_store() -> Store:
            return MemoryStore(database)
    else:
        url: str = request.getfixturevalue(f"{request.param}_url")
        migrate(url)

        def new_store() -> Store:
            return SqlStore(url)

    def open_one() -> Store:
        store = new_store()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def contract_store(open_store: StoreFactory) -> Store:
    """A store on a new, migrated database, once on each backend."""
    return open_store()
