"""The shim's event loop never waits for an SQLite lock (m2mauth.core.blocking).

SQLite reads run on the loop: in WAL mode they wait for no lock. When the
database is locked all the same (another process holds it exclusively), the
read must not sit in SQLite's busy handler on the loop for the store's bound,
stalling every other request: it is re-run on a thread, and fails there.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx

from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.http.conftest import running_shim
from tests.http.test_other_endpoints import admin, token_for

BOUND = 2.0
CEILING = BOUND + 3
# /healthz runs on the loop and touches nothing: it answers at once unless the
# loop is stalled, and a stall would last the whole bound.
STALLED = BOUND / 2


def test_a_locked_sqlite_database_does_not_stall_the_loop(sqlite_url: str) -> None:
    migrate(sqlite_url)
    store = SqlStore(sqlite_url, timeout=BOUND)
    try:
        with running_shim(store, "in_process") as shim, shim.client() as http:
            token = token_for(http, shim.partner())
            locker = sqlite3.connect(Path(sqlite_url.removeprefix("sqlite:///")), timeout=10)
            try:
                locker.isolation_level = None
                locker.execute("PRAGMA locking_mode=EXCLUSIVE")
                # Only a database nobody has open can be taken exclusively: stop the
                # change feed's listener (its own connection; the caches then read
                # the store) and close the store's pooled connections (it opens new
                # ones when asked).
                shim.container.changes.close()
                store.close()
                locker.execute("BEGIN EXCLUSIVE")
                answer: list[tuple[int, float]] = []

                def introspect() -> None:
                    started = time.monotonic()
                    with httpx.Client(base_url=shim.base_url, timeout=CEILING + 5) as other:
                        response = other.post(
                            "/oauth2/introspection", data={"token": token}, headers=admin(shim)
                        )
                    answer.append((response.status_code, time.monotonic() - started))

                caller = threading.Thread(target=introspect)
                caller.start()
                slowest = 0.0
                while caller.is_alive():
                    started = time.monotonic()
                    assert http.get("/healthz").status_code == 200
                    slowest = max(slowest, time.monotonic() - started)
                    time.sleep(0.05)
                caller.join()
                [(status, took)] = answer
                assert status == 503  # the store is locked: unavailable, never "inactive"
                assert took < CEILING
                assert slowest < STALLED
                locker.execute("ROLLBACK")
            finally:
                locker.close()
            response = http.post(
                "/oauth2/introspection", data={"token": token}, headers=admin(shim)
            )
            assert response.json()["active"] is True
    finally:
        store.close()
