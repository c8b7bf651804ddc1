"""Records and helpers shared by the store tests: ids that sort, one factory per record.

Used by the contract suite (every backend) and by the backend-specific tests alike.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from m2mauth.core import ids
from m2mauth.core.interfaces import Store
from m2mauth.core.models import (
    AdminKey,
    Application,
    AuditEvent,
    ClientSecret,
    Organization,
    RevokedToken,
    SigningKey,
    SigningKeyState,
)

# Opens a new store on the same database each call (see tests/store/conftest.py).
StoreFactory = Callable[[], Store]

# Microseconds and a non-UTC offset on purpose: both must survive the round trip.
T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
_clock_ms = itertools.count(int(T0.timestamp() * 1000))


def new_id(prefix: str) -> str:
    """Ids that sort in the order they are made, as in production."""
    return ids.new_id(prefix, next(_clock_ms))


def make_org(**fields: Any) -> Organization:
    org = Organization(
        id=new_id(ids.ORGANIZATION),
        name="Acme",
        external_id=None,
        enabled=True,
        created_at=T0,
        updated_at=T0,
    )
    return dataclasses.replace(org, **fields)


def make_app(org: Organization, **fields: Any) -> Application:
    app = Application(
        id=new_id(ids.APPLICATION),
        client_id=new_id(ids.CLIENT),
        organization_id=org.id,
        name="billing",
        description="",
        scopes=("read", "write"),
        audiences=("https://api.example.test",),
        token_ttl_seconds=0,
        enabled=True,
        created_at=T0,
        updated_at=T0,
    )
    return dataclasses.replace(app, **fields)


def make_secret(app: Application, **fields: Any) -> ClientSecret:
    secret = ClientSecret(
        id=new_id(ids.CLIENT_SECRET),
        application_id=app.id,
        secret_hash=b"\x00\xffhash" + new_id("h").encode(),
        hint="abcd",
        created_at=T0,
    )
    return dataclasses.replace(secret, **fields)


def make_signing_key(**fields: Any) -> SigningKey:
    key = SigningKey(
        id=new_id(ids.SIGNING_KEY),
        algorithm="ES256",
        state=SigningKeyState.NEXT,
        encrypted_private_key=b"\x00\x01nonce-and-ciphertext\xff",
        public_jwk='{"kty":"EC"}',
        created_at=T0,
    )
    return dataclasses.replace(key, **fields)


def make_event(**fields: Any) -> AuditEvent:
    event = AuditEvent(id=new_id(ids.AUDIT_EVENT), time=T0, actor="ak_1", action="test")
    return dataclasses.replace(event, **fields)


def add(store: Store, *records: object) -> None:
    """Insert records in one unit of work, each with the method for its type."""
    with store.unit_of_work() as uow:
        for record in records:
            match record:
                case Organization():
                    uow.add_organization(record)
                case Application():
                    uow.add_application(record)
                case ClientSecret():
                    uow.add_client_secret(record)
                case AdminKey():
                    uow.add_admin_key(record)
                case SigningKey():
                    uow.add_signing_key(record)
                case AuditEvent():
                    uow.add_audit_event(record)
                case RevokedToken():
                    uow.add_revoked_token(record)
                case _:
                    raise TypeError(record)


@contextmanager
def a_writer_holding_its_lock(store: Store, org: Organization) -> Iterator[threading.Event]:
    """Another thread inside a unit of work that has added ``org`` and not yet
    committed, holding the writer lock (SQLite's, or the memory store's); set
    the event to let it commit."""
    writing, done = threading.Event(), threading.Event()

    def hold_the_writer_lock() -> None:
        with store.unit_of_work() as uow:
            uow.add_organization(org)
            writing.set()
            done.wait(30)

    writer = threading.Thread(target=hold_the_writer_lock)
    writer.start()
    try:
        assert writing.wait(10)
        yield done
    finally:
        done.set()
        writer.join(30)
