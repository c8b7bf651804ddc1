"""open_store: one factory for every backend a database URL can name."""

from __future__ import annotations

import pytest

from m2mauth.store import UnsupportedDatabaseUrl, open_store
from m2mauth.store.memory import MemoryStore
from m2mauth.store.sql import SqlStore
from tests.store.support import make_org


def test_a_sqlite_url_opens_the_sql_store(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    try:
        assert isinstance(store, SqlStore)
        store.migrate()
        store.check_schema()
        with store.unit_of_work() as uow:
            uow.add_organization(make_org())
        with store.reading() as uow:
            assert len(uow.list_organizations(after_id=None, limit=10)) == 1
    finally:
        store.close()


def test_memory_urls_share_data_by_name() -> None:
    first, again, other = (open_store(f"memory://{n}") for n in ("a-test", "a-test", "b-test"))
    assert all(isinstance(s, MemoryStore) for s in (first, again, other))
    org = make_org()
    with first.unit_of_work() as uow:
        uow.add_organization(org)
    with again.reading() as uow:
        assert uow.get_organization(org.id) == org
    with other.reading() as uow:
        assert uow.get_organization(org.id) is None


@pytest.mark.parametrize(
    "url", ["mysql://root@db/m2mauth", "notaurl", "sqlite:/relative.db", "redis://127.0.0.1"]
)
def test_an_unsupported_url_is_one_line_naming_what_works(url: str) -> None:
    with pytest.raises(UnsupportedDatabaseUrl) as info:
        open_store(url)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unsupported database URL")
    assert "postgresql://" in message
    assert "memory://" in message
