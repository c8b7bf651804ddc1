"""Databases for every test tier: a fresh SQLite file, a fresh PostgreSQL database, a store.

PostgreSQL tests need ``M2MAUTH_TEST_POSTGRES_URL`` naming a server and a user
that may create databases, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``.
Each test gets its own database, dropped afterwards. Without the variable (or
the server) those tests are skipped, and the run ends with a loud line saying so:
a green run that silently skipped PostgreSQL would prove half as much.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import URL, Engine, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from m2mauth.config import Settings
from m2mauth.store.engine import normalize_url
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.toolchains import SKIP_PREFIX as TOOLCHAIN_SKIPPED

# Defined here, not in tests/console/conftest.py, so that this summary does not
# import Playwright.
BROWSER_SKIPPED = "BROWSER MISSING"

POSTGRES_ENV = "M2MAUTH_TEST_POSTGRES_URL"
POSTGRES_SKIPPED = f"PostgreSQL suite SKIPPED ({POSTGRES_ENV} not set / unreachable)"
# Set by CI (.ci/run): there, a PostgreSQL suite that cannot run is a failure.
REQUIRE_ENV = "M2MAUTH_REQUIRE_POSTGRES"


# The ports `make run` serves on. The README puts `make run` and `make test` side by
# side, so every test must bind port 0 (or a free port) for every listener.
DEFAULT_PORTS = {
    "gRPC": Settings().grpc_port,
    "OAuth HTTP": Settings().http_port,
    "metrics": Settings().metrics_port,
}


@pytest.fixture(scope="session", autouse=True)
def _default_ports_held() -> Iterator[None]:
    """Listen on the default ports for the whole run, as a `make run` beside it would:
    a test that binds one of them fails here, not only on a developer's machine.
    A port already taken (by `make run` itself, say) is left to whoever holds it."""
    held = []
    for port in DEFAULT_PORTS.values():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        held.append(sock)
    yield
    for sock in held:
        sock.close()


def _skip_postgres(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL of a new SQLite file (created on first connect), not migrated."""
    return f"sqlite:///{tmp_path / 'm2mauth.db'}"


class PostgresDatabases:
    """Creates throwaway databases one ahead, and drops used ones, in the background.

    CREATE and DROP DATABASE take about 0.3 s each, longer than most tests; done
    in a worker thread they overlap with the tests instead of adding to them.
    """

    def __init__(self, admin: Engine, server_url: URL) -> None:
        self._admin = admin
        self._server_url = server_url
        self._worker = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-databases")
        self._next = self._worker.submit(self._create)
        self._drops: list[Future[None]] = []

    def take(self) -> tuple[str, str]:
        """(name, URL) of a new empty database; the URL keeps the server URL's scheme."""
        name = self._next.result()
        self._next = self._worker.submit(self._create)
        url = self._server_url.set(database=name).render_as_string(hide_password=False)
        return name, url

    def release(self, name: str) -> None:
        self._drops.append(self._worker.submit(self._drop, name))

    def close(self) -> None:
        try:
            self._drop(self._next.result())
        finally:
            self._worker.shutdown(wait=True)
            for drop in self._drops:
                drop.result()  # a failed DROP surfaces here, not silently

    def _create(self) -> str:
        name = f"m2mauth_test_{secrets.token_hex(6)}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        return name

    def _drop(self, name: str) -> None:
        with self._admin.connect() as connection:
            # FORCE: a test that failed mid-way may have left connections open.
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """The test server named by M2MAUTH_TEST_POSTGRES_URL, or a skip saying how to set it."""
    server_url = os.environ.get(POSTGRES_ENV)
    if not server_url:
        _skip_postgres(
            f"PostgreSQL suite skipped: set {POSTGRES_ENV} "
            "(e.g. postgresql://postgres@127.0.0.1:5432/postgres)"
        )
    # AUTOCOMMIT: CREATE/DROP DATABASE cannot run inside a transaction.
    admin = create_engine(
        normalize_url(server_url),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        admin.dispose()
        _skip_postgres(
            f"PostgreSQL suite skipped: {POSTGRES_ENV} server unreachable: {exc.args[0]}"
        )
    databases = PostgresDatabases(admin, make_url(server_url))
    yield databases
    databases.close()
    admin.dispose()


@pytest.fixture
def postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """A URL of a new, empty PostgreSQL database (``postgresql://...``), not migrated."""
    name, url = postgres_databases.take()
    yield url
    postgres_databases.release(name)


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def store_url(request: pytest.FixtureRequest) -> str:
    """A migrated database URL, once on each backend."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    migrate(url)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    """A SqlStore on a migrated database, once on each backend; closed afterwards."""
    sql_store = SqlStore(store_url)
    yield sql_store
    sql_store.close()


REDIS_ENV = "M2MAUTH_TEST_REDIS_URL"
REQUIRE_REDIS_ENV = "M2MAUTH_REQUIRE_REDIS"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The test Redis (M2MAUTH_TEST_REDIS_URL, default the local one), or a loud skip;
    in CI (M2MAUTH_REQUIRE_REDIS=1) an unreachable Redis fails instead."""
    import redis  # noqa: PLC0415

    url = os.environ.get(REDIS_ENV, DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = f"Redis suite skipped: {url} unreachable ({type(exc).__name__})"
        if os.environ.get(REQUIRE_REDIS_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_REDIS_ENV}=1)", pytrace=False)
        pytest.skip(reason)
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis  # noqa: PLC0415

    prefix = f"m2mauth-test-{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_server)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that ask for postgres_url directly; store_url marks its own param.
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A red line per suite that skipped for want of a service or a toolchain: a
    local run says so loudly (CI makes such a skip a failure instead)."""
    skipped = [str(getattr(r, "longrepr", "")) for r in terminalreporter.stats.get("skipped", [])]
    for reason, line in (
        ("PostgreSQL suite skipped", f"{POSTGRES_SKIPPED}: {{}} tests"),
        ("Redis suite skipped", "Redis suite SKIPPED: {} tests"),
        (
            BROWSER_SKIPPED,
            f"Console browser tests SKIPPED ({BROWSER_SKIPPED}): {{}} tests; "
            "`scripts/test-browser install` installs Debian's chromium",
        ),
        (
            TOOLCHAIN_SKIPPED,
            f"Go/protoc client checks SKIPPED ({TOOLCHAIN_SKIPPED}): {{}} tests; "
            "`make client-toolchains` installs them",
        ),
    ):
        count = sum(reason in text for text in skipped)
        if count:
            terminalreporter.write_sep("!", line.format(count), red=True, bold=True)
