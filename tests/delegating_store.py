"""A store that passes every call to another: the base of the tests' failing,
counting and switchable stores, which override only what they change."""

from __future__ import annotations

from contextlib import AbstractContextManager

from m2mauth.core.changes import ChangeFeed
from m2mauth.core.interfaces import Listener, Store, UnitOfWork


class DelegatingStore:
    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        return self.inner.unit_of_work()

    def reading(self) -> AbstractContextManager[UnitOfWork]:
        return self.inner.reading()

    def ping(self) -> None:
        self.inner.ping()

    def migrate(self) -> None:
        self.inner.migrate()

    def check_schema(self) -> None:
        self.inner.check_schema()

    def listen(self, feed: ChangeFeed) -> Listener:
        return self.inner.listen(feed)

    def close(self) -> None:
        self.inner.close()
