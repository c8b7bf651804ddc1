"""The unit tier: the core on the in-memory store, no database and no sockets.

Every test here gets a fresh MemoryStore; a "restarted process" is another
MemoryStore on the same MemoryDatabase, and an unreachable database is a store
made to fail (MemoryStore.fail_with). The store contract suite (tests/store)
shows the memory store behaves as SQLite and PostgreSQL do, so what holds here
holds there. A test that opens a socket fails: that belongs to another tier.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator

import pytest

from m2mauth.core import jws, signing_keys
from m2mauth.core.interfaces import Store
from m2mauth.store.memory import MemoryDatabase, MemoryStore
from tests.token_world import (
    AUDIENCE,
    ENV,
    ISSUER,
    Client,
    CountingStore,
    FakeClock,
    FakeMonotonic,
    TokenWorld,
    make_world,
    token_settings,
)

__all__ = [
    "AUDIENCE",
    "ENV",
    "ISSUER",
    "Client",
    "CountingStore",
    "FakeClock",
    "FakeMonotonic",
    "TokenWorld",
    "make_world",
    "token_settings",
]


class SocketOpened(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit tier opens no socket: no database, no server, no network."""

    def refuse(*args: object, **kwargs: object) -> socket.socket:
        raise SocketOpened("the unit tier must not open sockets; move this test to another tier")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# Fresh RSA keys cost 50-150 ms each on this kind of machine, two per token
# world: most of the tier's time. Tests draw them from a pool that is made once
# (distinct keys within any one test: no ring in a test holds 16 at once).
_RSA_POOL_SIZE = 16
_rsa_pool: list[jws.PrivateKey] = []
_real_generate = signing_keys.generate_private_key


def _pooled_rsa() -> Callable[[str], jws.PrivateKey]:
    if not _rsa_pool:
        _rsa_pool.extend(_real_generate("RS256") for _ in range(_RSA_POOL_SIZE))
    cycle = itertools.cycle(_rsa_pool)

    def generate(algorithm: str) -> jws.PrivateKey:
        return next(cycle) if algorithm == "RS256" else _real_generate(algorithm)

    return generate


@pytest.fixture(autouse=True)
def pooled_rsa_keys(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("real_key_generation") is None:
        monkeypatch.setattr(signing_keys, "generate_private_key", _pooled_rsa())


@pytest.fixture
def database() -> MemoryDatabase:
    return MemoryDatabase()


@pytest.fixture
def store(database: MemoryDatabase) -> Store:
    """A new, empty in-memory store."""
    return MemoryStore(database)


@pytest.fixture
def reopen_store(database: MemoryDatabase) -> Callable[[], Store]:
    """Another store on the same data, as a restarted process would open."""
    return lambda: MemoryStore(database)


@pytest.fixture
def dead_store(database: MemoryDatabase) -> Iterator[Store]:
    """A store on the same data whose database cannot be reached."""
    dead = MemoryStore(database)
    dead.fail_with(ConnectionRefusedError("the database went away"))
    yield dead
    dead.close()


@pytest.fixture
def world(store: Store, reopen_store: Callable[[], Store]) -> TokenWorld:
    w = make_world(store, reopen_store)
    w.components.ring.ensure_keys()
    return w
