"""The throttling counters' contract, in this process and in a real Redis alike,
and Redis failing open (limits off, loudly) and recovering by itself."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis as redis_client

from m2mauth.core.throttling import Allowance, Bucket, Counters
from m2mauth.ratelimit import UnsupportedRateLimitUrl, open_counters
from m2mauth.ratelimit.memory import MemoryCounters
from m2mauth.ratelimit.redis import RateLimitCollector, RedisCounters
from tests.tcp_proxy import TcpProxy


def bucket(key: str, per_minute: int) -> Bucket:
    return Bucket(key, Allowance(per_minute), subject=key, description="test")


@pytest.fixture(params=["memory", "redis"])
def counters(request: pytest.FixtureRequest) -> Iterator[Counters]:
    if request.param == "memory":
        yield MemoryCounters()
        return
    url: str = request.getfixturevalue("redis_server")
    prefix: str = request.getfixturevalue("redis_prefix")
    shared = open_counters(url, prefix=prefix)
    assert isinstance(shared, RedisCounters)
    yield shared
    shared.close()


def test_a_bucket_holds_its_allowance_then_waits_one_interval(counters: Counters) -> None:
    b = bucket("a", 6)  # one token every 10 s
    other = bucket("b", 6)
    assert counters.blocked_for([b, other]) == [0.0, 0.0]
    for _ in range(6):
        counters.spend([b])
    wait_b, wait_other = counters.blocked_for([b, other])
    assert 9.0 < wait_b <= 10.0
    assert wait_other == 0.0
    # Spending an empty bucket does not push the wait further than one interval.
    for _ in range(20):
        counters.spend([b])
    assert counters.blocked_for([b])[0] <= 10.0


def test_fixed_windows_count_and_roll_over(counters: Counters) -> None:
    counts = [counters.count_in_window("w", 1)[0] for _ in range(3)]
    assert counts == [1, 2, 3]
    _, left = counters.count_in_window("w", 1)
    assert 0 < left <= 1
    time.sleep(left + 0.05)
    assert counters.count_in_window("w", 1)[0] == 1
    assert counters.count_in_window("another", 1)[0] == 1


def test_two_servers_on_one_redis_share_one_budget(redis_server: str, redis_prefix: str) -> None:
    first = open_counters(redis_server, prefix=redis_prefix)
    second = open_counters(redis_server, prefix=redis_prefix)
    b = bucket("shared", 4)
    for counters in (first, second, first, second):
        counters.spend([b])
    assert first.blocked_for([b])[0] > 0
    assert second.blocked_for([b])[0] > 0
    first.close()
    second.close()


def test_keys_expire_by_themselves(redis_server: str, redis_prefix: str) -> None:
    counters = open_counters(redis_server, prefix=redis_prefix)
    counters.spend([bucket("expiring", 60)])
    client = redis_client.Redis.from_url(redis_server)
    ttl = client.pttl(redis_prefix + "expiring")
    client.close()
    counters.close()
    assert 0 < ttl <= 2_000  # one interval (1 s) plus a second of slack


def test_redis_down_fails_open_loudly_and_recovers(
    redis_server: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = urlsplit(redis_server)
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 6379)
    proxy.start()
    counters = open_counters(f"redis://127.0.0.1:{proxy.port}/0", prefix=redis_prefix)
    assert isinstance(counters, RedisCounters)
    b = bucket("down", 1)
    counters.spend([b])
    assert counters.blocked_for([b])[0] > 0  # working: the bucket is empty
    proxy.cut()
    with caplog.at_level(logging.WARNING, logger="m2mauth.ratelimit"):
        assert counters.blocked_for([b]) == [0.0]  # open, not an error
        counters.spend([b])
        assert counters.count_in_window("w", 60) == (0, 60.0)
    assert counters.errors >= 3
    assert not counters.healthy
    warnings = [r for r in caplog.records if "limits are OFF" in r.getMessage()]
    assert len(warnings) == 1  # loud once, not once per call
    metrics = {m.name: m.samples[0].value for m in RateLimitCollector(counters).collect()}
    assert metrics["m2mauth_rate_limit_store_up"] == 0
    assert metrics["m2mauth_rate_limit_errors"] >= 3
    proxy.restore()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and counters.blocked_for([b])[0] == 0:
        time.sleep(0.1)
    assert counters.blocked_for([b])[0] > 0  # the limit applies again
    assert counters.healthy
    counters.close()
    proxy.cut()


def test_a_rate_limit_url_that_is_not_redis_is_refused() -> None:
    with pytest.raises(UnsupportedRateLimitUrl, match="redis://"):
        open_counters("memcached://127.0.0.1:11211", prefix="x")
