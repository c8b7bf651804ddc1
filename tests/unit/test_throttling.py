"""Throttling failed authentication and per-application quotas, in the core.

The counters here are the in-process ones on a movable clock; the same
behaviour over Redis, shared by two servers, is tested in tests/e2e.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from m2mauth.core import errors
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.failures import FailedAttempts, fingerprinter
from m2mauth.core.throttling import Allowance, FailureThrottle, TokenQuota
from m2mauth.core.tokens import TokenComponents, build_token_components
from m2mauth.ratelimit.memory import MemoryCounters
from tests.token_requests import secret_request
from tests.unit.conftest import ENV, CountingStore, TokenWorld


class Seconds:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def throttled_components(
    world: TokenWorld, clock: Seconds, *, per_client: int = 5, per_source: int = 20
) -> tuple[TokenComponents, CountingStore]:
    counters = MemoryCounters(clock)
    fingerprint = fingerprinter(world.keys.audit_fingerprint)
    counting = CountingStore(world.store)
    components = build_token_components(
        world.policy,
        counting,
        world.keys.key_encryption,
        world.hasher,
        world.pages,
        world.clock,
        failures=FailedAttempts(world.store, world.clock),
        fingerprint=fingerprint,
        throttle=FailureThrottle(
            counters,
            fingerprint,
            per_client=Allowance(per_client),
            per_source=Allowance(per_source),
        ),
        quota=TokenQuota(counters),
        monotonic=world.monotonic,
    )
    components.ring.ensure_keys()
    return components, counting


def fails(call: Callable[[], object]) -> type[Exception]:
    with pytest.raises((errors.InvalidClient, errors.RateLimited)) as info:
        call()
    return type(info.value)


def test_a_client_failing_from_one_address_is_slowed_there_only(world: TokenWorld) -> None:
    clock = Seconds()
    components, _ = throttled_components(world, clock, per_client=5)
    c = world.client()

    def attack() -> object:
        return components.issue_token(secret_request(c.client_id, "wrong", source="192.0.2.66"))

    assert [fails(attack) for _ in range(5)] == [errors.InvalidClient] * 5
    with pytest.raises(errors.RateLimited) as info:
        attack()
    # 5 per minute: one comes back every 12 s.
    assert info.value.retry_after_seconds == 12
    assert info.value.subject == f"client:{c.client_id}"
    # The real client, from its own address, is not locked out.
    real = secret_request(c.client_id, c.secret, source="198.51.100.1")
    assert components.issue_token(real).access_token
    # The bucket refills: after 12 s one more try is allowed (and fails), not more.
    clock.now += 12
    assert fails(attack) is errors.InvalidClient
    assert fails(attack) is errors.RateLimited


def test_an_address_trying_many_clients_is_slowed_everywhere(world: TokenWorld) -> None:
    clock = Seconds()
    components, _ = throttled_components(world, clock, per_client=100, per_source=20)
    clients = [world.client() for _ in range(3)]
    outcomes = [
        fails(
            lambda c=c: components.issue_token(  # type: ignore[misc]
                secret_request(c.client_id, "guess", source="203.0.113.9")
            )
        )
        for _ in range(8)
        for c in clients
    ]
    assert outcomes.count(errors.InvalidClient) == 20
    assert outcomes[20:] == [errors.RateLimited] * 4
    # Even the right secret is refused from that address until it has waited.
    with pytest.raises(errors.RateLimited) as info:
        components.issue_token(
            secret_request(clients[0].client_id, clients[0].secret, source="203.0.113.9")
        )
    assert info.value.subject == "source:203.0.113.9"
    clock.now += 60
    assert components.issue_token(
        secret_request(clients[0].client_id, clients[0].secret, source="203.0.113.9")
    ).access_token


def test_a_throttled_call_reads_nothing_and_failures_keep_the_cached_lookup(
    world: TokenWorld,
) -> None:
    clock = Seconds()
    components, counting = throttled_components(world, clock, per_client=3)
    c = world.client()
    components.issue_token(secret_request(c.client_id, c.secret))  # cached now
    for _ in range(3):
        with pytest.raises(errors.InvalidClient):
            components.issue_token(secret_request(c.client_id, "x", source="192.0.2.66"))
    counting.opened = 0
    for _ in range(50):
        with pytest.raises(errors.RateLimited):
            components.issue_token(secret_request(c.client_id, "x", source="192.0.2.66"))
    assert counting.opened == 0  # refused before any store read
    # The failures did not evict the real client's cached lookup.
    for _ in range(10):
        components.issue_token(secret_request(c.client_id, c.secret))
    assert counting.opened == 0


def test_a_secret_in_the_client_id_field_is_never_a_counter_key(world: TokenWorld) -> None:
    clock = Seconds()
    counters = MemoryCounters(clock)
    throttle = FailureThrottle(
        counters,
        fingerprinter(world.keys.audit_fingerprint),
        per_client=Allowance(5),
        per_source=Allowance(5),
    )
    secret = world.client().secret
    throttle.failed(secret, "192.0.2.1")
    assert counters._tat
    assert not any(secret in key for key in counters._tat)


def test_the_61st_token_of_a_minute_is_refused_and_the_next_minute_is_fresh(
    world: TokenWorld,
) -> None:
    clock = Seconds()
    clock.now = 999_980.0  # 20 s into a minute (999,960 is 16,666 minutes)
    components, _ = throttled_components(world, clock)
    org = world.org()
    app = world.apps.create(ENV, org.id, ApplicationFields(name="busy", token_quota_per_minute=60))
    _, secret = world.apps.create_secret(ENV, app.id, None)
    other = world.client(org)  # no quota
    for _ in range(60):
        components.issue_token(secret_request(app.client_id, secret))
    with pytest.raises(errors.QuotaExceeded) as info:
        components.issue_token(secret_request(app.client_id, secret))
    assert info.value.retry_after_seconds == 40
    assert info.value.reason == "TOKEN_QUOTA_EXCEEDED"
    for _ in range(100):
        components.issue_token(secret_request(other.client_id, other.secret))
    clock.now += 40
    assert components.issue_token(secret_request(app.client_id, secret)).access_token


def test_quota_is_validated_and_updatable(world: TokenWorld) -> None:
    org = world.org()
    with pytest.raises(errors.InvalidField) as info:
        world.apps.create(ENV, org.id, ApplicationFields(name="x", token_quota_per_minute=-1))
    assert info.value.field == "token_quota_per_minute"
    app = world.apps.create(ENV, org.id, ApplicationFields(name="x"))
    assert app.token_quota_per_minute == 0
    updated = world.apps.update(
        ENV, app.id, ["token_quota_per_minute"], ApplicationFields(token_quota_per_minute=5)
    )
    assert updated.token_quota_per_minute == 5
    assert world.apps.get(ENV, app.id).token_quota_per_minute == 5
