"""Fixtures for the token tests: a token world over a real store, with movable time."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

from m2mauth.config import Settings
from m2mauth.core.applications import ApplicationFields, Applications
from m2mauth.core.credentials import CredentialHasher
from m2mauth.core.interfaces import Store, UnitOfWork
from m2mauth.core.issuance import IssuedToken
from m2mauth.core.models import Application, ClientSecret, Organization, Principal
from m2mauth.core.organizations import Organizations
from m2mauth.core.pagination import PageTokenCodec
from m2mauth.core.root_key import DerivedKeys
from m2mauth.core.tokens import TokenComponents, build_token_components
from m2mauth.store.sql import SqlStore

ISSUER = "https://auth.example.test"
AUDIENCE = "https://api.example.test"
ENV = Principal(admin_key_id="ak_test", organization_id=None)


class FakeClock:
    """Wall-clock time that only moves when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        # Whole seconds: iat/exp arithmetic in the tests stays exact.
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeMonotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


class CountingStore:
    """A store that counts the units of work opened through it."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.opened = 0

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        self.opened += 1
        return self.inner.unit_of_work()

    def reading(self) -> AbstractContextManager[UnitOfWork]:
        self.opened += 1
        return self.inner.reading()

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


def token_settings(**overrides: Any) -> Settings:
    base = Settings(
        database_url="unused",
        root_key="unused",
        issuer=ISSUER,
        audience=AUDIENCE,
        token_ttl_seconds=600,
        max_token_ttl_seconds=3600,
        key_rotation_interval_seconds=86400,
        jwks_max_age_seconds=300,
        clock_leeway_seconds=30,
    )
    return dataclasses.replace(base, **overrides).with_defaults()


@dataclass
class Client:
    app: Application
    org: Organization
    secret: str
    secret_record: ClientSecret

    @property
    def client_id(self) -> str:
        return self.app.client_id


@dataclass
class TokenWorld:
    store: Store
    settings: Settings
    keys: DerivedKeys
    # Opens another store on the same database (a process restart).
    reopen: Callable[[], Store]
    clock: FakeClock = field(default_factory=FakeClock)
    monotonic: FakeMonotonic = field(default_factory=FakeMonotonic)
    built: list[TokenComponents] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hasher = CredentialHasher(self.keys.credential_hash)
        pages = PageTokenCodec(self.keys.page_token)
        self.orgs = Organizations(self.store, pages, self.clock)
        self.apps = Applications(self.store, pages, self.hasher, self.clock)
        self.components = self.build()

    def build(self, store: Store | None = None, **kwargs: Any) -> TokenComponents:
        """New components (a "restart") over the same root key and clock."""
        components = build_token_components(
            self.settings,
            store or self.store,
            self.keys,
            self.hasher,
            self.clock,
            monotonic=self.monotonic,
            **kwargs,
        )
        self.built.append(components)
        return components

    def org(self, enabled: bool = True) -> Organization:
        return self.orgs.create(ENV, f"org {secrets.token_hex(4)}", "", enabled)

    def client(
        self,
        org: Organization | None = None,
        *,
        scopes: tuple[str, ...] = (),
        audiences: tuple[str, ...] = (),
        ttl: int = 0,
        expires_at: datetime | None = None,
    ) -> Client:
        org = org or self.org()
        app = self.apps.create(
            ENV,
            org.id,
            ApplicationFields(
                name="svc", scopes=scopes, audiences=audiences, token_ttl_seconds=ttl
            ),
        )
        record, plaintext = self.apps.create_secret(ENV, app.id, expires_at)
        return Client(app, org, plaintext, record)

    def issue(self, client: Client, scope: str = "", audience: str = "") -> IssuedToken:
        return self.components.issue_token(
            "client_credentials", client.client_id, client.secret, scope, audience
        )


def make_world(store: Store, reopen: Callable[[], Store], **settings: Any) -> TokenWorld:
    return TokenWorld(
        store=store,
        settings=token_settings(**settings),
        keys=DerivedKeys.from_root(secrets.token_bytes(32)),
        reopen=reopen,
    )


@pytest.fixture
def world(store: Store, reopen_store: Callable[[], Store]) -> Iterator[TokenWorld]:
    w = make_world(store, reopen_store)
    w.components.ring.ensure_keys()
    yield w
    for components in w.built:
        components.close()


@pytest.fixture
def reopen_store(store_url: str) -> Iterator[Callable[[], Store]]:
    """Open another SqlStore on the test database, as a restarted process would."""
    opened: list[SqlStore] = []

    def reopen() -> Store:
        opened.append(SqlStore(store_url))
        return opened[-1]

    yield reopen
    for s in opened:
        s.close()


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
