"""The audit log stays useful and bounded: failed authentications are aggregated,
old events are purged, and nothing a caller presents is stored unless it is an id."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from m2mauth.core import errors, ids
from m2mauth.core.audit import PURGE_BATCH, AuditRetention, event
from m2mauth.core.failures import (
    DEFAULT_MAX_GROUPS_PER_MINUTE,
    MANY,
    FailedAttempts,
    fingerprinter,
    presented_actor,
)
from m2mauth.core.interfaces import Store
from m2mauth.core.models import AuditEvent, AuditFilter
from tests.token_requests import secret_request
from tests.unit.conftest import FakeClock, TokenWorld


def all_events(store: Store) -> list[AuditEvent]:
    found: list[AuditEvent] = []
    before = None
    with store.reading() as uow:
        while True:
            page = uow.list_audit_events(AuditFilter(), before_id=before, limit=1000)
            found += page
            if len(page) < 1000:
                return found
            before = page[-1].id


def test_a_30_second_flood_writes_a_few_hundred_rows_and_loses_no_count(
    world: TokenWorld,
) -> None:
    real = world.client()
    rate, seconds = 100, 30  # 3,000 failures, every one from another "client"
    for _ in range(seconds):
        for i in range(rate):
            client_id = secrets.choice([ids.new_id(ids.CLIENT), "x" + secrets.token_hex(8)])
            with pytest.raises(errors.InvalidClient):
                world.components.issue_token(
                    secret_request(client_id, "wrong", source=f"198.51.100.{i % 250}")
                )
        # The real client, guessing wrong too, from its own address.
        with pytest.raises(errors.InvalidClient):
            world.components.issue_token(secret_request(real.client_id, "x", source="192.0.2.1"))
        world.clock.advance(1)
        world.components.flush()  # the background job, every "second"
    world.components.flush(final=True)
    failures = [e for e in all_events(world.store) if e.action == "token.issue_failed"]
    # Bounded by groups per minute (30 s span at most two minutes), not by attempts.
    assert len(failures) <= 2 * (DEFAULT_MAX_GROUPS_PER_MINUTE + 5)
    assert sum(int(e.details["count"]) for e in failures) == (rate + 1) * seconds
    # The overflow is visible as such, and the real client's failures stay its own.
    assert any(e.actor == MANY for e in failures)
    # Under the flood the real client's failures may be folded, but never
    # into the unknown clients' count: they stay on its application.
    mine = [e for e in failures if e.application_id == real.app.id]
    assert sum(int(e.details["count"]) for e in mine) == seconds
    assert {e.actor for e in mine} <= {real.client_id, MANY}
    assert {e.details["source"] for e in mine} <= {"192.0.2.1", MANY}


def test_repeats_in_one_minute_are_one_event_with_a_count(world: TokenWorld) -> None:
    c = world.client()
    for _ in range(7):
        with pytest.raises(errors.InvalidClient):
            world.components.issue_token(secret_request(c.client_id, "nope", source="192.0.2.9"))
    world.components.flush(final=True)
    [only] = [e for e in all_events(world.store) if e.action == "token.issue_failed"]
    assert only.details == {"reason": "invalid_secret", "source": "192.0.2.9", "count": "7"}
    assert only.application_id == c.app.id


def test_failures_survive_a_store_outage_and_are_written_later(world: TokenWorld) -> None:
    attempts = FailedAttempts(world.store, world.clock)
    attempts.record(actor="client_x", action="a", reason="r", source="s")
    dead = world.reopen()
    attempts_on_dead = FailedAttempts(dead, world.clock)
    attempts_on_dead.record(actor="client_x", action="a", reason="r", source="s")
    dead.fail_with(ConnectionError("down"))  # type: ignore[attr-defined]
    with pytest.raises(errors.StoreUnavailable):
        attempts_on_dead.flush(final=True)
    assert attempts_on_dead.pending() == 1
    dead.fail_with(None)  # type: ignore[attr-defined]
    assert attempts_on_dead.flush(final=True) == 1


def test_what_was_presented_is_kept_only_if_it_is_an_id() -> None:
    fingerprint = fingerprinter(b"k" * 32)
    client_id = ids.new_id(ids.CLIENT)
    assert presented_actor(client_id, ids.CLIENT, fingerprint) == client_id
    assert presented_actor("", ids.CLIENT, fingerprint) == "(none)"
    for secret in ("m2m_ak_" + "A" * 43, "m2m_cs_" + "B" * 43, "eyJhbGc.eyJzdWIi.sig", "hunter2"):
        actor = presented_actor(secret, ids.CLIENT, fingerprint)
        assert actor.startswith("malformed:")
        assert secret not in actor
        # The same value correlates; another key gives another fingerprint.
        assert actor == presented_actor(secret, ids.CLIENT, fingerprint)
        assert actor != presented_actor(secret, ids.CLIENT, fingerprinter(b"j" * 32))


def test_old_events_are_purged_in_batches_and_recent_ones_kept(store: Store) -> None:
    clock = FakeClock()
    old = [
        event(clock() - timedelta(days=91, seconds=i), "ak_x", "old")
        for i in range(PURGE_BATCH + 7)
    ]
    recent = event(clock() - timedelta(days=89), "ak_x", "recent")
    with store.unit_of_work() as uow:
        for e in [*old, recent]:
            uow.add_audit_event(e)
    assert AuditRetention(store, clock, retention_days=90).purge() == PURGE_BATCH + 7
    assert [e.action for e in all_events(store)] == ["recent"]
    # 0 days: keep for ever.
    clock.advance(365 * 86400)
    assert AuditRetention(store, clock, retention_days=0).purge() == 0
    assert len(all_events(store)) == 1
