"""Engines for the store's two databases, configured for safe concurrent use and
bounded waits.

Shared by :mod:`m2mauth.store.sql` (serving) and :mod:`m2mauth.store.schema`
(migrating), so a migration runs with the same driver and SQLite settings as
the server.

The bound (ARCHITECTURE.md: "every wait is bounded"): with ``timeout`` set, no
wait on the database lasts longer than ``timeout`` seconds, so a hung database
gives StoreUnavailable, not a hung request. How, per kind of wait:

- PostgreSQL, the server is slow or a lock is held: ``lock_timeout`` (70% of
  the bound) and ``statement_timeout`` (80%) make the server cancel the
  statement itself; the connection stays usable.
- PostgreSQL, the server does not answer at all (paused, a half-open network):
  nothing on the wire says so, TCP keepalives only notice after tens of
  seconds, and a cancel request would hang too. :class:`_Watchdog` shuts down
  the socket of a connection that has waited the whole bound, which fails the
  waiting call at once; the connection is then discarded.
- PostgreSQL, connecting: libpq's ``connect_timeout`` (whole seconds, at least
  2) bounds it, the startup parameters that set the timeouts above included.
- Waiting for a pooled connection: the pool's timeout is the bound.
- SQLite: ``busy_timeout`` is the bound for the writer lock, and 0 where
  blocking is not allowed (:mod:`m2mauth.core.blocking`): an event loop never
  sleeps in SQLite's busy handler, the read fails at once and is re-run on a
  thread (see ``SqlStore.reading``).

Without ``timeout`` (migrations: they may wait for another replica's
migration, and may run long statements) the old limits apply: 10 s to
connect, 5 s for SQLite's writer lock, no statement limit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, ExceptionContext, ExecutionContext, make_url
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from m2mauth.core.blocking import may_block

log = logging.getLogger("m2mauth.store")

# Without a bound (migrations): seconds libpq waits to connect (its default is
# forever), and milliseconds a SQLite transaction waits for the writer lock.
POSTGRES_CONNECT_TIMEOUT = 10
SQLITE_BUSY_TIMEOUT_MS = 5000
# libpq rounds connect_timeout to whole seconds and raises anything below 2 to 2.
POSTGRES_MIN_CONNECT_TIMEOUT = 2
# The shares of the bound after which PostgreSQL itself cancels a lock wait or a
# statement: before the watchdog's full bound, so that a held lock or a slow
# statement ends with a clean error on a connection that stays usable. The lock
# one is shorter, so that the log says "lock timeout" when that is the cause.
LOCK_SHARE = 0.7
STATEMENT_SHARE = 0.8
# A transaction left open between two statements for this many bounds is
# ended by the server, releasing its locks. Our own transactions pause only
# for CPU work (key generation, hashing): well under this.
IDLE_IN_TRANSACTION_BOUNDS = 5
# TCP keepalives: an idle pooled connection to a vanished host is noticed in
# about idle + interval * count = 25 s instead of the kernel's two hours.
POSTGRES_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
# Execution option: this connection only reads (see _SqliteWaits.begin).
READ_ONLY = "m2mauth_read_only"
# Execution option: this statement's bound in seconds, where it waits on
# another process's long work rather than on the database (see
# sql.py lock_signing_keys).
WAIT_BOUND = "m2mauth_wait_bound"
# Keys in a pool entry's info dictionary.
_WAIT = "m2mauth_wait"
_FRESH = "m2mauth_fresh"
_BUSY_TIMEOUT_MS = "m2mauth_busy_timeout_ms"


def normalize_url(url: str) -> URL:
    """Parse a database URL; ``postgresql://`` (and ``postgres://``) mean psycopg 3.

    SQLAlchemy's bare ``postgresql`` scheme picks psycopg2, which we do not ship.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_store_engine(url: str, *, pool_size: int = 10, timeout: float | None = None) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql://...``).

    ``timeout``: the bound on every wait, in seconds (see the module's
    docstring); None for migrations.
    """
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    pool_options: dict[str, Any] = {"pool_size": pool_size}
    if timeout is not None:
        pool_options["pool_timeout"] = timeout
    if backend == "sqlite":
        busy_ms = SQLITE_BUSY_TIMEOUT_MS if timeout is None else round(timeout * 1000)
        # sqlite3's own default busy timeout is 5 s: the bound from the first statement.
        engine = create_engine(parsed, connect_args={"timeout": busy_ms / 1000}, **pool_options)
        waits = _SqliteWaits(busy_ms)
        event.listen(engine, "connect", waits.connect)
        event.listen(engine, "begin", waits.begin)
        return engine
    if backend == "postgresql":
        return _postgres_engine(parsed, pool_options, timeout)
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _postgres_engine(parsed: URL, pool_options: dict[str, Any], timeout: float | None) -> Engine:
    # Parameters the URL sets win: an operator may know better for their network.
    connect_args: dict[str, Any] = {
        key: value for key, value in POSTGRES_KEEPALIVES.items() if key not in parsed.query
    }
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = (
            POSTGRES_CONNECT_TIMEOUT
            if timeout is None
            else max(POSTGRES_MIN_CONNECT_TIMEOUT, math.ceil(timeout))
        )
    if timeout is None:
        # pre_ping: a pooled connection killed by a database restart is replaced
        # instead of failing the next request.
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args, **pool_options)
    statement_ms = max(1, round(timeout * STATEMENT_SHARE * 1000))
    lock_ms = max(1, round(timeout * LOCK_SHARE * 1000))
    idle_ms = max(1, round(timeout * IDLE_IN_TRANSACTION_BOUNDS * 1000))
    # Startup parameters, not SET statements after connecting: they cost no round
    # trip, and connect_timeout covers them. The URL's own options come after
    # ours, so that they win.
    options = (
        f"-c statement_timeout={statement_ms} -c lock_timeout={lock_ms} "
        f"-c idle_in_transaction_session_timeout={idle_ms}"
    )
    given = parsed.query.get("options")
    if isinstance(given, str) and given:
        options = f"{options} {given}"
    connect_args["options"] = options
    # The pre-ping is done by _Watchdog.checkout instead of pool_pre_ping, so
    # that it is bounded like every other wait.
    engine = create_engine(parsed, connect_args=connect_args, **pool_options)
    _Watchdog.shared().attach(engine, timeout)
    return engine


class _SqliteWaits:
    """SQLite's busy timeout: the bound where blocking is allowed, 0 where not."""

    def __init__(self, busy_ms: int) -> None:
        self._busy_ms = busy_ms

    def _wanted(self) -> int:
        return self._busy_ms if may_block() else 0

    @staticmethod
    def _set(dbapi_connection: Any, info: dict[Any, Any], busy_ms: int) -> None:
        # Only when it changes: on the driver's connection, a PRAGMA is a few
        # microseconds, but reads on the loop cost tens.
        if info.get(_BUSY_TIMEOUT_MS) != busy_ms:
            dbapi_connection.execute(f"PRAGMA busy_timeout={busy_ms}")
            info[_BUSY_TIMEOUT_MS] = busy_ms

    def connect(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        assert isinstance(dbapi_connection, sqlite3.Connection)
        # Take transaction control away from the sqlite3 module (it would not BEGIN
        # before SELECT or DDL); begin() emits BEGIN itself. This is the recipe
        # from SQLAlchemy's SQLite dialect documentation.
        dbapi_connection.isolation_level = None
        # First: the PRAGMAs below may wait for a lock too.
        self._set(dbapi_connection, record.info, self._wanted())
        cursor = dbapi_connection.cursor()
        try:
            # WAL: readers do not block the writer nor the writer readers.
            cursor.execute("PRAGMA journal_mode=WAL")
            # Off by default in SQLite; the ON DELETE CASCADE clauses need it.
            cursor.execute("PRAGMA foreign_keys=ON")
            # Durable across application crashes; in WAL mode only a power loss can
            # lose the last commits, never corrupt the database.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    def begin(self, conn: Connection) -> None:
        self._set(conn.connection.dbapi_connection, conn.info, self._wanted())
        # BEGIN IMMEDIATE takes the writer lock up front. A deferred BEGIN would
        # take it at the first write, and two transactions that both read and then
        # write would deadlock: SQLite fails one with SQLITE_BUSY at once, without
        # waiting busy_timeout. Taking it up front makes units of work queue instead,
        # which is also what serialises lock_application and lock_signing_keys.
        # Pure reads (ping, schema check) use a deferred BEGIN and never queue.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_sqlite_busy(exc: BaseException) -> bool:
    """Whether a driver error is SQLite's "database is locked" (any SQLITE_BUSY_*)."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    return (
        isinstance(orig, sqlite3.OperationalError)
        and code is not None
        and (code & 0xFF == sqlite3.SQLITE_BUSY)
    )


class _Wait:
    """One checked-out PostgreSQL connection, as the watchdog sees it."""

    __slots__ = ("bound", "deadline", "killed", "sock", "waited")

    def __init__(self, sock: socket.socket, bound: float) -> None:
        # A duplicate of the driver's descriptor: libpq may close its own on an
        # error at any moment, and the number could then name another socket.
        self.sock = sock
        self.bound = bound
        # While the connection waits on the server: until when it may, and its
        # bound for this call. None between calls.
        self.deadline: float | None = None
        self.waited = bound
        self.killed = False

    def start(self, bound: float | None = None) -> None:
        self.waited = self.bound if bound is None else bound
        self.deadline = time.monotonic() + self.waited

    def stop(self) -> None:
        self.deadline = None


class _Watchdog:
    """Shuts down the socket of any PostgreSQL connection that has waited on the
    server for its whole bound, so that the waiting call fails instead of hanging.

    Only time spent in a call to the server counts (a statement, a commit or
    rollback, the ping at checkout), not the CPU work a unit of work does
    between statements. One thread for the process, awake only while a
    connection is checked out; it looks every :attr:`INTERVAL` seconds, so a
    call fails between its bound and its bound plus the interval.
    """

    INTERVAL = 0.1
    _instance: _Watchdog | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits: set[_Wait] = set()
        self._someone = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    @classmethod
    def shared(cls) -> _Watchdog:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def attach(self, engine: Engine, bound: float) -> None:
        """Watch every connection of ``engine`` while it is checked out."""
        dialect = engine.dialect

        def connect(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            record.info[_FRESH] = True

        def checkout(
            dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
        ) -> None:
            wait = self._watch(record, dbapi_connection, bound)
            if record.info.pop(_FRESH, False):
                return  # just connected: nothing to check
            # The pre-ping (what pool_pre_ping does, bounded): a connection a
            # database restart killed is replaced instead of failing the request.
            wait.start()
            try:
                dialect.do_ping(dbapi_connection)
            except dialect.loaded_dbapi.Error as exc:
                # The watchdog ended it: the database is hung, and a new connection
                # would only wait again. Raised as is, SQLAlchemy wraps it (a
                # DBAPIError, StoreUnavailable to the store) and discards the entry.
                if wait.killed or not dialect.is_disconnect(exc, dbapi_connection, None):
                    raise
                # A restart: every pooled connection is stale; SQLAlchemy reconnects.
                raise sa_exc.InvalidatePoolError() from exc
            finally:
                wait.stop()

        def unwatch(_dbapi_connection: Any, record: ConnectionPoolEntry, *_: Any) -> None:
            self._unwatch(record)

        def executing(
            conn: Connection,
            _cursor: Any,
            _statement: str,
            _parameters: Any,
            context: ExecutionContext | None,
            _executemany: bool,
        ) -> None:
            wait = conn.info.get(_WAIT)
            if wait is not None:
                options = context.execution_options if context is not None else {}
                wait.start(options.get(WAIT_BOUND))

        def waiting(conn: Connection) -> None:
            wait = conn.info.get(_WAIT)
            if wait is not None:
                wait.start()

        def answered(conn: Connection, *_: Any) -> None:
            wait = conn.info.get(_WAIT)
            if wait is not None:
                wait.stop()

        def error(context: ExceptionContext) -> None:
            if context.connection is not None and not context.connection.invalidated:
                answered(context.connection)

        def resetting(_dbapi_connection: Any, record: ConnectionPoolEntry, _state: Any) -> None:
            wait = record.info.get(_WAIT)
            if wait is not None:
                wait.start()

        event.listen(engine, "connect", connect)
        event.listen(engine, "checkout", checkout)
        event.listen(engine, "reset", resetting)
        for name in ("checkin", "invalidate", "close"):
            event.listen(engine.pool, name, unwatch)
        event.listen(engine, "before_cursor_execute", executing)
        event.listen(engine, "after_cursor_execute", answered)
        event.listen(engine, "commit", waiting)
        event.listen(engine, "rollback", waiting)
        event.listen(engine, "handle_error", error)

    def _watch(self, record: ConnectionPoolEntry, dbapi_connection: Any, bound: float) -> _Wait:
        self._unwatch(record)  # a checkout that failed half-way may have left one
        wait = _Wait(socket.socket(fileno=os.dup(dbapi_connection.fileno())), bound)
        record.info[_WAIT] = wait
        with self._lock:
            if not self._waits:
                self._someone.notify()  # only then is the thread asleep for good
            self._waits.add(wait)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="store-watchdog", daemon=True
                )
                self._thread.start()
        return wait

    def _unwatch(self, record: ConnectionPoolEntry) -> None:
        wait = record.info.pop(_WAIT, None)
        if wait is None:
            return
        # Under the lock: the watchdog never shuts down a socket that has been
        # handed back, nor one whose duplicate is being closed.
        with self._lock:
            self._waits.discard(wait)
            wait.sock.close()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waits:
                    self._someone.wait()
            time.sleep(self.INTERVAL)
            with self._lock:
                now = time.monotonic()
                overdue = [
                    wait
                    for wait in self._waits
                    if wait.deadline is not None and not wait.killed and now >= wait.deadline
                ]
                for wait in overdue:
                    wait.killed = True
                    # Wakes the thread blocked on the socket: libpq sees the
                    # connection end, and the call fails. (OSError: the other
                    # side closed it already.)
                    with contextlib.suppress(OSError):
                        wait.sock.shutdown(socket.SHUT_RDWR)
            for wait in overdue:
                log.warning(
                    "the database did not answer within %.1f s: connection closed, "
                    "the call fails as store unavailable",
                    wait.waited,
                )
