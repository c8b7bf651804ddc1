"""Listening for committed changes (core/changes.py) on the SQL store.

PostgreSQL: a dedicated connection LISTENs on the changes channel; every
notification is a committed change. SQLite: a dedicated connection asks
``PRAGMA data_version`` every few tens of milliseconds (it changes when any
other connection commits), and only then reads the change log past the last
row it delivered.

Either way, a lost connection marks the feed lost at once (the caches stop
answering from memory), and the listener reconnects with a short, bounded
backoff; once subscribed again it resets every cache (what was missed is
unknown) and the feed is trusted again.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from sqlalchemy import Engine, func, select

from m2mauth.core.changes import Change, ChangeFeed
from m2mauth.store.engine import READ_ONLY, normalize_url
from m2mauth.store.tables import CHANGES_CHANNEL, change_log

log = logging.getLogger("m2mauth.feed")

POLL_SECONDS = 0.05
WAIT_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 2
APPLICATION_NAME = "m2mauth change feed"


class _Loop:
    """A daemon thread that runs ``_session`` again after each failure."""

    name = "change-feed"

    def __init__(self, feed: ChangeFeed) -> None:
        self._feed = feed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop listening (bounded); idempotent, and fine if it never started."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        self._feed.disconnected()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._session()
                backoff = 0.1
            except Exception as exc:
                self._feed.disconnected()
                log.warning("change feed: %s; reconnecting in %.1f s", type(exc).__name__, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _session(self) -> None:
        raise NotImplementedError


class PostgresListener(_Loop):
    def __init__(self, url: str, feed: ChangeFeed) -> None:
        super().__init__(feed)
        parsed = normalize_url(url).set(drivername="postgresql")
        self._conninfo = parsed.render_as_string(hide_password=False)

    def _session(self) -> None:
        with psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            # Named, so operators (and tests) can tell it in pg_stat_activity.
            application_name=APPLICATION_NAME,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=2,
        ) as connection:
            connection.execute(f"LISTEN {CHANGES_CHANNEL}")
            # Subscribed: anything committed from now on arrives; empty the caches
            # of whatever came before, then trust them.
            self._feed.connected()
            while not self._stop.is_set():
                changes = [
                    change
                    for notify in connection.notifies(timeout=WAIT_SECONDS, stop_after=1000)
                    if (change := Change.decode(notify.payload)) is not None
                ]
                if changes:
                    self._feed.deliver(changes)
                # A cheap round trip: a dead connection fails here, not silently.
                connection.execute("SELECT 1")


class SqliteListener(_Loop):
    def __init__(self, engine: Engine, feed: ChangeFeed) -> None:
        super().__init__(feed)
        self._engine = engine

    def _session(self) -> None:
        # READ_ONLY: a deferred BEGIN, never the writer lock (see engine.py).
        with self._engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            newest = select(func.coalesce(func.max(change_log.c.id), 0))
            last = connection.execute(newest).scalar_one()
            connection.commit()
            self._feed.connected()
            version = None
            while not self._stop.wait(POLL_SECONDS):
                now = connection.exec_driver_sql("PRAGMA data_version").scalar_one()
                # Hold no transaction between polls: an open read would pin a
                # snapshot and keep locks other connections may need.
                connection.commit()
                if now == version:
                    continue
                version = now
                rows = connection.execute(
                    select(change_log.c.id, change_log.c.kind, change_log.c.key)
                    .where(change_log.c.id > last)
                    .order_by(change_log.c.id)
                ).all()
                connection.commit()  # end the read, so the next one sees new commits
                changes = [
                    change
                    for row in rows
                    if (change := Change.decode(f"{row.kind}:{row.key}")) is not None
                ]
                if rows:
                    last = rows[-1].id
                if changes:
                    self._feed.deliver(changes)
