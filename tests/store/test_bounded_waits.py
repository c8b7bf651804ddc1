"""Every wait on the database is bounded: a hung or locked database gives
StoreUnavailable within the bound, never a hung call (ARCHITECTURE.md).

The ceilings are generous (the bound plus 3 s, see BOUND and CEILING) and
nothing here asserts speed otherwise: the point is that the call ends, as
unavailable, instead of waiting for as long as the database hangs.
"""

from __future__ import annotations

import contextvars
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from m2mauth.core.blocking import WouldBlock, non_blocking
from m2mauth.core.clock import utc_now
from m2mauth.core.errors import StoreUnavailable
from m2mauth.core.models import Organization
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.tcp_proxy import TcpProxy

# The store's bound in these tests, and the most a call may take with it: the
# bound, plus PostgreSQL's 2-second minimum to connect, plus slack for a busy
# machine. Without the bound each of these calls waits for as long as the
# database hangs (SQLite: its old 5-second busy timeout).
BOUND = 1.0
CEILING = BOUND + 3


def organization(name: str) -> Organization:
    now = utc_now()
    return Organization(
        id=f"org_{name}", name=name, external_id=None, enabled=True, created_at=now, updated_at=now
    )


def timed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    """(what ``call`` raised, or None; how long it took). Run on a thread (in the
    caller's context) and given up on after CEILING + 5 s, so that a call that
    hangs fails the test instead of hanging it."""
    outcome: list[BaseException | None] = []
    context = contextvars.copy_context()

    def run() -> None:
        try:
            context.run(call)
        except BaseException as exc:  # returned to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(CEILING + 5)
    took = time.monotonic() - started
    if not outcome:
        pytest.fail(f"the call still waits on the database after {took:.1f} s")
    return outcome[0], took


def add_organization(store: SqlStore, name: str) -> Callable[[], None]:
    def run() -> None:
        with store.unit_of_work() as uow:
            uow.add_organization(organization(name))

    return run


def read_organizations(store: SqlStore) -> Callable[[], None]:
    def run() -> None:
        with store.reading() as uow:
            uow.list_organizations(after_id=None, limit=10)

    return run


def names(store: SqlStore) -> list[str]:
    with store.reading() as uow:
        return [o.name for o in uow.list_organizations(after_id=None, limit=100)]


# --- SQLite ----------------------------------------------------------------------


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def test_sqlite_write_fails_within_the_bound_while_another_writer_holds_the_lock(
    sqlite_url: str,
) -> None:
    migrate(sqlite_url)
    store = SqlStore(sqlite_url, timeout=BOUND)
    writer = sqlite3.connect(sqlite_path(sqlite_url), isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        error, took = timed(add_organization(store, "blocked"))
        assert isinstance(error, StoreUnavailable)
        assert took < CEILING
        # Reads are not blocked by a writer (WAL), on the loop or not.
        with non_blocking():
            read_organizations(store)()
        writer.execute("ROLLBACK")
        add_organization(store, "after")()
        assert names(store) == ["after"]
    finally:
        writer.close()
        store.close()


@contextmanager
def exclusively_locked(url: str) -> Iterator[None]:
    """Another process holds the whole database (exclusive locking mode): even a
    WAL reader gets "database is locked". It must open the database before any
    connection of the store does, so the store's pool is emptied first."""
    locker = sqlite3.connect(sqlite_path(url), isolation_level=None)
    try:
        locker.execute("PRAGMA locking_mode=EXCLUSIVE")
        locker.execute("BEGIN EXCLUSIVE")
        yield
        locker.execute("ROLLBACK")
    finally:
        locker.close()


def test_sqlite_read_on_the_event_loop_never_waits_for_a_lock(sqlite_url: str) -> None:
    migrate(sqlite_url)
    store = SqlStore(sqlite_url, timeout=BOUND)
    try:
        add_organization(store, "a")()
        store.close()  # no pooled connection left: the locker can take the database
        with exclusively_locked(sqlite_url):
            with non_blocking():
                error, took = timed(read_organizations(store))
            # Where blocking is not allowed the read does not wait at all: it
            # asks to be run on a thread (and the caller does that).
            assert isinstance(error, WouldBlock)
            assert took < BOUND / 2
            # On a thread it waits, for the bound, then reports the store unavailable.
            error, took = timed(read_organizations(store))
            assert isinstance(error, StoreUnavailable)
            assert took < CEILING
        assert names(store) == ["a"]
        with non_blocking():
            read_organizations(store)()  # inline again once the lock is gone
    finally:
        store.close()


# --- PostgreSQL ------------------------------------------------------------------


@contextmanager
def proxied(postgres_url: str) -> Iterator[tuple[SqlStore, TcpProxy]]:
    """A store reaching the database through a proxy the test can pause."""
    migrate(postgres_url)
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    store = SqlStore(urlunsplit(parts._replace(netloc=netloc)), timeout=BOUND)
    try:
        yield store, proxy
    finally:
        proxy.cut()
        store.close()


def test_postgres_paused_fails_every_kind_of_call_within_the_bound(postgres_url: str) -> None:
    with proxied(postgres_url) as (store, proxy):
        add_organization(store, "before")()
        read_organizations(store)()  # pooled connections exist: they will hang too
        proxy.pause()
        try:
            for call in (store.ping, read_organizations(store), add_organization(store, "lost")):
                error, took = timed(call)
                assert isinstance(error, StoreUnavailable), error
                assert took < CEILING
        finally:
            proxy.resume()
        # Back without a restart; the write made during the pause never happened.
        store.ping()
        assert names(store) == ["before"]


def test_postgres_table_lock_fails_the_write_within_the_bound_and_writes_nothing(
    postgres_url: str,
) -> None:
    migrate(postgres_url)
    store = SqlStore(postgres_url, timeout=BOUND)
    holder = psycopg.connect(postgres_url)
    try:
        holder.execute("LOCK TABLE organizations IN ACCESS EXCLUSIVE MODE")
        error, took = timed(add_organization(store, "blocked"))
        assert isinstance(error, StoreUnavailable)
        assert took < CEILING
        holder.rollback()
        assert names(store) == []
        add_organization(store, "after")()  # the same pool, still usable
        assert names(store) == ["after"]
    finally:
        holder.close()
        store.close()


def test_postgres_work_between_statements_is_not_a_wait(postgres_url: str) -> None:
    # Only time spent waiting on the server counts: a unit of work may pause
    # (key generation, hashing) for longer than the bound between statements.
    migrate(postgres_url)
    store = SqlStore(postgres_url, timeout=0.3)
    try:
        with store.unit_of_work() as uow:
            uow.add_organization(organization("slow"))
            time.sleep(0.6)
            uow.list_organizations(after_id=None, limit=1)
        assert names(store) == ["slow"]
    finally:
        store.close()


def test_postgres_signing_key_lock_waits_longer_than_a_request(postgres_url: str) -> None:
    # Another process may hold the key lock while it generates keys: waiting
    # for it is bounded, but by more than one request's bound.
    migrate(postgres_url)
    store = SqlStore(postgres_url, timeout=0.3)
    holder = SqlStore(postgres_url, timeout=0.3)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with holder.unit_of_work() as uow:
            uow.lock_signing_keys()
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        threading.Timer(0.6, release.set).start()
        with store.unit_of_work() as uow:
            uow.lock_signing_keys()  # waits 0.6 s: more than 0.3, less than 5 x 0.3
    finally:
        release.set()
        thread.join()
        holder.close()
        store.close()
