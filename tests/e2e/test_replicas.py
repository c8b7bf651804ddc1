"""Two replicas on one database agree within a second, and fall back to the store
when their change feed is lost (PostgreSQL LISTEN/NOTIFY; SQLite's change log).

Each replica is a whole App (its own store connections, caches and feed) over
the same database, as two processes or hosts would be.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text

from m2mauth.bootstrap import App, bootstrap
from m2mauth.config import Settings
from m2mauth.core import errors
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.interfaces import UnitOfWork
from m2mauth.core.models import Principal, TokenEndpointAuthMethod
from m2mauth.store.engine import normalize_url
from m2mauth.store.feed import APPLICATION_NAME
from m2mauth.store.sql import SqlStore
from tests.assertions import assertion, assertion_request, jwks_of, new_key
from tests.delegating_store import DelegatingStore
from tests.token_requests import secret_request

ENV = Principal(admin_key_id="ak_ops", organization_id=None)
WITHIN_SECONDS = 1.0


class CountingReads(DelegatingStore):
    """Counts the reads a replica makes, to see what it answers from memory."""

    reads = 0

    def reading(self) -> AbstractContextManager[UnitOfWork]:
        self.reads += 1
        return self.inner.reading()


@dataclass
class Replica:
    app: App
    store: CountingReads


@contextlib.contextmanager
def replicas(
    url: str, count: int = 2, issuers: tuple[str, ...] = ("https://auth.example.test",)
) -> Iterator[list[Replica]]:
    """``count`` replicas on ``url``; replica i has issuer ``issuers[i]`` (the last one
    for the rest)."""
    root = secrets.token_bytes(32)
    made: list[Replica] = []
    try:
        for i in range(count):
            settings = Settings(
                database_url=url,
                root_key="unused",
                issuer=issuers[min(i, len(issuers) - 1)],
                signing_algorithm="ES256",
            ).with_defaults()
            store = CountingReads(SqlStore(url))
            app = bootstrap(settings, store=store, root_key=root)
            app.start()
            made.append(Replica(app, store))
        for replica in made:
            wait_for(lambda r=replica: r.app.tokens.clients is not None and feed_up(r.app))  # type: ignore[misc]
        yield made
    finally:
        for replica in made:
            replica.app.close()
            replica.store.close()


def feed_up(app: App) -> bool:
    return app.tokens.introspector.states.usable


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> float:
    """Seconds until ``condition`` held; fails after ``seconds``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            pytest.fail(f"not true after {seconds} s")
        time.sleep(0.01)
    return time.monotonic() - started


def client(app: App) -> tuple[str, str, str]:
    org = app.organizations.create(ENV, "Acme", "", None)
    application = app.applications.create(ENV, org.id, ApplicationFields(name="svc"))
    _, secret = app.applications.create_secret(ENV, application.id, None)
    return application.id, application.client_id, secret


def active(app: App, token: str) -> bool:
    return bool(app.tokens.introspect(token, ENV)["active"])


def test_a_revocation_through_one_replica_is_seen_by_the_other_within_a_second(
    store_url: str,
) -> None:
    with replicas(store_url) as (a, b):
        _, client_id, secret = client(a.app)
        token = a.app.tokens.issue_token(secret_request(client_id, secret)).access_token
        assert active(b.app, token)
        before = b.store.reads
        for _ in range(50):
            assert active(b.app, token)
        assert b.store.reads == before  # answered from memory while the feed is up
        a.app.tokens.revoke(token, ENV)
        assert wait_for(lambda: not active(b.app, token)) < WITHIN_SECONDS


def test_a_disabled_application_and_a_kill_switch_reach_the_other_replica(
    store_url: str,
) -> None:
    with replicas(store_url) as (a, b):
        app_id, client_id, secret = client(a.app)
        token = b.app.tokens.issue_token(secret_request(client_id, secret)).access_token
        org_id = a.app.applications.get(ENV, app_id).organization_id
        a.app.organizations.revoke_tokens(ENV, org_id)
        assert wait_for(lambda: not active(b.app, token)) < WITHIN_SECONDS
        b.app.tokens.issue_token(secret_request(client_id, secret))  # cached on b now
        a.app.applications.update(ENV, app_id, ["enabled"], ApplicationFields(enabled=False))

        def refused() -> bool:
            try:
                b.app.tokens.issue_token(secret_request(client_id, secret))
            except errors.InvalidClient:
                return True
            return False

        assert wait_for(refused) < WITHIN_SECONDS


def test_replicas_with_different_issuers_refuse_each_others_tokens_out_loud(
    store_url: str,
) -> None:
    """The measured failure: replica B, with another issuer, took A's token for none
    of its own, so revoking it through B said 200 and revoked nothing. Now B tells
    the caller, and nothing is written."""
    issuers = ("https://a.example.test", "https://b.example.test")
    with replicas(store_url, issuers=issuers) as (a, b):
        _, client_id, secret = client(a.app)
        token = a.app.tokens.issue_token(secret_request(client_id, secret)).access_token
        with pytest.raises(errors.IssuerMismatch) as revoking:
            b.app.tokens.revoke(token, ENV)
        assert revoking.value.field == "token"
        assert "https://a.example.test" in revoking.value.message
        assert "https://b.example.test" in revoking.value.message
        with pytest.raises(errors.IssuerMismatch):
            b.app.tokens.introspect(token, ENV)
        assert active(a.app, token)  # nothing was revoked
        own = b.app.tokens.issue_token(secret_request(client_id, secret)).access_token
        assert active(b.app, own)


def test_a_rotation_is_published_by_the_other_replica_within_a_second(store_url: str) -> None:
    with replicas(store_url) as (a, b):
        for _ in range(3):
            current, _ = a.app.tokens.ring.rotate()
            assert (
                wait_for(lambda c=current: c.id in {k["kid"] for k in b.app.tokens.jwks()})  # type: ignore[misc]
                < WITHIN_SECONDS
            )
            # b signs with a's new key within the same bound; meanwhile it signs with
            # the one before, which both still publish (PREVIOUS).
            assert (
                wait_for(lambda c=current: b.app.tokens.ring.current_signer()[0] == c.id)  # type: ignore[misc]
                < WITHIN_SECONDS
            )
            signing = b.app.tokens.ring.current_signer()[0]
            assert signing in {k["kid"] for k in a.app.tokens.jwks()}


@pytest.mark.postgres
def test_a_lost_feed_falls_back_to_the_store_then_back_to_memory(postgres_url: str) -> None:
    from m2mauth.store.schema import migrate  # noqa: PLC0415

    migrate(postgres_url)
    with replicas(postgres_url) as (a, b):
        _, client_id, secret = client(a.app)
        token = a.app.tokens.issue_token(secret_request(client_id, secret)).access_token
        assert active(b.app, token)
        admin = create_engine(normalize_url(postgres_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            killed = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = :name"
                ),
                {"name": APPLICATION_NAME},
            ).all()
        admin.dispose()
        assert len(killed) == 2  # both replicas' feeds
        # While either feed is down its caches are bypassed: still exactly right.
        a.app.tokens.revoke(token, ENV)
        assert wait_for(lambda: not active(b.app, token)) < WITHIN_SECONDS
        # Then both reconnect and answer from memory again.
        wait_for(lambda: feed_up(a.app) and feed_up(b.app))
        fresh = a.app.tokens.issue_token(secret_request(client_id, secret)).access_token
        assert active(b.app, fresh)
        before = b.store.reads
        for _ in range(20):
            assert active(b.app, fresh)
        assert b.store.reads == before


def test_a_client_assertion_used_on_one_replica_is_refused_by_the_other(
    store_url: str,
) -> None:
    """The jti replay record is the database's: every replica refuses a replay,
    and a key set changed on one replica is used by the other at once."""
    old, new = new_key("ES256"), new_key("EdDSA")
    with replicas(store_url) as (a, b):
        org = a.app.organizations.create(ENV, "Keyed", "", None)
        keyed = a.app.applications.create(
            ENV,
            org.id,
            ApplicationFields(
                name="svc",
                token_endpoint_auth_method=TokenEndpointAuthMethod.PRIVATE_KEY_JWT,
                jwks=jwks_of(old),
            ),
        )
        endpoint = a.app.tokens.policy.token_endpoint_url
        signed = assertion(old, keyed.client_id, endpoint)
        issued = a.app.tokens.issue_token(assertion_request(signed))
        assert issued.claims["org_id"] == org.id
        with pytest.raises(errors.InvalidClient):
            b.app.tokens.issue_token(assertion_request(signed))
        with pytest.raises(errors.InvalidClient):
            a.app.tokens.issue_token(assertion_request(signed))
        a.app.applications.update(ENV, keyed.id, ["jwks"], ApplicationFields(jwks=jwks_of(new)))
        with pytest.raises(errors.InvalidClient):
            b.app.tokens.issue_token(assertion_request(assertion(old, keyed.client_id, endpoint)))
        fresh = assertion(new, keyed.client_id, endpoint)
        assert b.app.tokens.issue_token(assertion_request(fresh)).claims["org_id"] == org.id
