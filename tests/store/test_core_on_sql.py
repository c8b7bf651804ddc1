"""The unit tier's store-sensitive rules, again on a real database (SQLite and PostgreSQL).

The unit tier runs the core on the in-memory store, which the contract suite
holds to the SQL store's behaviour. The rules below depend on what only a real
database does (a connection that cannot be made, a second process opening the
same database, a read that would block the event loop on PostgreSQL, a crash in
the middle of a rotation), so they run here too, unchanged: the same test
functions, given SQL fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from m2mauth.core.interfaces import Store
from m2mauth.store.sql import SqlStore
from tests.token_world import TokenWorld, make_world
from tests.unit.test_introspection import (
    test_a_store_failure_is_unavailable_never_inactive as test_introspection_never_inactive,
)
from tests.unit.test_issuance import (
    test_a_store_failure_is_unavailable_never_invalid_client as test_issuance_never_invalid,
)
from tests.unit.test_revocation import test_revocations_survive_a_restart
from tests.unit.test_signing_keys import (
    test_an_event_loop_never_waits_for_the_ring_lock,
    test_another_process_rotation_is_seen_on_refresh_and_on_unknown_kid,
    test_failure_mid_rotation_leaves_a_usable_key_and_a_retry_completes,
)

__all__ = [
    "test_an_event_loop_never_waits_for_the_ring_lock",
    "test_another_process_rotation_is_seen_on_refresh_and_on_unknown_kid",
    "test_failure_mid_rotation_leaves_a_usable_key_and_a_retry_completes",
    "test_introspection_never_inactive",
    "test_issuance_never_invalid",
    "test_revocations_survive_a_restart",
]


@pytest.fixture
def reopen_store(store_url: str) -> Iterator[Callable[[], Store]]:
    """Another SqlStore on the test database, as a restarted process would open."""
    opened: list[SqlStore] = []

    def reopen() -> Store:
        opened.append(SqlStore(store_url))
        return opened[-1]

    yield reopen
    for other in opened:
        other.close()


@pytest.fixture
def world(store: SqlStore, reopen_store: Callable[[], Store]) -> TokenWorld:
    w = make_world(store, reopen_store)
    w.components.ring.ensure_keys()
    return w


@pytest.fixture
def dead_store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    """A store of the same kind whose database cannot be reached."""
    url = make_url(store_url)
    if url.get_backend_name() == "sqlite":
        dead = url.set(database=str(tmp_path / "no-such-directory" / "m2mauth.db"))
    else:
        dead = url.set(host="127.0.0.1", port=1)  # nothing listens on port 1
    store = SqlStore(dead.render_as_string(hide_password=False))
    yield store
    store.close()
