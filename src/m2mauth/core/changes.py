"""Changes other processes must see at once, and the caches that follow them.

Every core operation that changes what authentication, introspection or
signing depend on announces it in the same unit of work
(``uow.announce(Change(...))``): the store delivers it to every process only if
the unit of work commits (PostgreSQL NOTIFY, SQLite a change log polled by
``PRAGMA data_version``, the memory store at commit). Each process's
:class:`ChangeFeed` hands the changes to its caches within well under a
second.

While the feed is healthy the caches may answer from memory; the moment it is
lost they stop trusting themselves and read the store on every call, until
the feed is back and every cache has been emptied (a resync: what was missed
is unknown). A cache never serves what the store would not.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("m2mauth.changes")


class Kind(enum.Enum):
    # An application's credentials or state: its secrets, enabled flag, kill switch,
    # scopes, deletion. Key: the application id.
    APPLICATION = "application"
    # An organization's enabled flag, kill switch or deletion. Key: its id.
    ORGANIZATION = "organization"
    # A token revoked (RFC 7009). Key: its jti.
    TOKEN = "token"  # noqa: S105 - a kind of change, not a secret
    # The signing key set changed (created, promoted, retired). Key: "".
    SIGNING_KEYS = "signing_keys"
    # An admin key changed (revoked, expiry). Key: its id.
    ADMIN_KEY = "admin_key"


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    key: str = ""

    def encode(self) -> str:
        return f"{self.kind.value}:{self.key}"

    @classmethod
    def decode(cls, text: str) -> Change | None:
        """A change from its wire form; None for what this version does not know."""
        kind, _, key = text.partition(":")
        try:
            return cls(Kind(kind), key)
        except ValueError:
            return None


class Subscriber(Protocol):
    def changed(self, change: Change) -> None:
        """Forget what this change makes stale."""
        ...

    def reset(self) -> None:
        """Forget everything (changes may have been missed)."""
        ...


class Freshness:
    """Whether this process's caches may answer from memory: the feed is up and
    every cache has been emptied since it (re)connected."""

    def __init__(self, *, healthy: bool = False) -> None:
        self._healthy = threading.Event()
        if healthy:
            self._healthy.set()

    @property
    def healthy(self) -> bool:
        return self._healthy.is_set()

    def lost(self) -> None:
        if self._healthy.is_set():
            log.warning("change feed lost: every call reads the store until it is back")
        self._healthy.clear()

    def restored(self) -> None:
        if not self._healthy.is_set():
            log.info("change feed connected: caches answer from memory again")
        self._healthy.set()


class ChangeFeed:
    """Delivers changes to this process's caches; driven by the store's listener."""

    def __init__(self, subscribers: Sequence[Subscriber], freshness: Freshness) -> None:
        self._subscribers = tuple(subscribers)
        self.freshness = freshness

    def deliver(self, changes: Sequence[Change]) -> None:
        for change in changes:
            for subscriber in self._subscribers:
                try:
                    subscriber.changed(change)
                except Exception:
                    # A cache that cannot apply a change must not serve stale data.
                    log.exception("applying %s failed; resetting the caches", change)
                    self.resync()
                    return

    def connected(self) -> None:
        """The listener is (again) subscribed: empty every cache, then trust them."""
        self.resync()
        self.freshness.restored()

    def resync(self) -> None:
        for subscriber in self._subscribers:
            subscriber.reset()

    def disconnected(self) -> None:
        self.freshness.lost()
