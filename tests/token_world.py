"""A token world for tests: organizations, clients and the token side over any store,
with time that moves only when the test says so. Used by the unit tier (on the
in-memory store) and the gRPC tier (on SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from m2mauth.bootstrap import token_policy
from m2mauth.config import Settings
from m2mauth.core.applications import ApplicationFields, Applications
from m2mauth.core.credentials import CredentialHasher
from m2mauth.core.failures import FailedAttempts, fingerprinter
from m2mauth.core.interfaces import Store, UnitOfWork
from m2mauth.core.issuance import IssuedToken
from m2mauth.core.models import (
    Application,
    ClientSecret,
    Organization,
    Principal,
    TokenEndpointAuthMethod,
)
from m2mauth.core.organizations import Organizations
from m2mauth.core.pagination import PageTokenCodec
from m2mauth.core.policy import TokenPolicy
from m2mauth.core.root_key import DerivedKeys
from m2mauth.core.tokens import TokenComponents, build_token_components
from tests.delegating_store import DelegatingStore
from tests.token_requests import secret_request

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


class CountingStore(DelegatingStore):
    """A store that counts the units of work opened through it."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.opened = 0

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        self.opened += 1
        return self.inner.unit_of_work()

    def reading(self) -> AbstractContextManager[UnitOfWork]:
        self.opened += 1
        return self.inner.reading()


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
    root_key: bytes
    # Opens another store on the same database (a process restart).
    reopen: Callable[[], Store]
    clock: FakeClock = field(default_factory=FakeClock)
    monotonic: FakeMonotonic = field(default_factory=FakeMonotonic)

    def __post_init__(self) -> None:
        self.keys = DerivedKeys.from_root(self.root_key)
        self.hasher = CredentialHasher(self.keys.credential_hash)
        self.pages = PageTokenCodec(self.keys.page_token)
        self.orgs = Organizations(self.store, self.pages, self.clock)
        self.apps = Applications(self.store, self.pages, self.hasher, self.clock)
        self.components = self.build()

    @property
    def policy(self) -> TokenPolicy:
        return token_policy(self.settings)

    def build(self, store: Store | None = None, **kwargs: Any) -> TokenComponents:
        """New components (a "restart") over the same root key and clock."""
        return build_token_components(
            self.policy,
            store or self.store,
            self.keys.key_encryption,
            self.hasher,
            self.pages,
            self.clock,
            failures=FailedAttempts(store or self.store, self.clock),
            fingerprint=fingerprinter(self.keys.audit_fingerprint),
            monotonic=self.monotonic,
            **kwargs,
        )

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

    def keyed_client(
        self, jwks: str, org: Organization | None = None, *, scopes: tuple[str, ...] = ()
    ) -> Application:
        """An application that authenticates with private_key_jwt and this JWK Set."""
        org = org or self.org()
        return self.apps.create(
            ENV,
            org.id,
            ApplicationFields(
                name="keyed",
                scopes=scopes,
                token_endpoint_auth_method=TokenEndpointAuthMethod.PRIVATE_KEY_JWT,
                jwks=jwks,
            ),
        )

    def issue(self, client: Client, scope: str = "", audience: str = "") -> IssuedToken:
        return self.components.issue_token(
            secret_request(client.client_id, client.secret, scope, audience)
        )


def make_world(store: Store, reopen: Callable[[], Store], **settings: Any) -> TokenWorld:
    return TokenWorld(
        store=store,
        settings=token_settings(**settings),
        root_key=secrets.token_bytes(32),
        reopen=reopen,
    )
