"""Throttling counters in Redis, shared by every process and replica.

Each operation is one Lua script, so one round trip, atomic, and timed by the
Redis server's clock (replicas with skewed clocks still agree). Keys expire by
themselves once they carry no information.

Redis down or slow (the socket timeouts are short): the limits fail open,
with a warning at most every 30 s and a count in ``errors`` (exported as
``m2mauth_rate_limit_errors_total``); the next call tries again, so they
recover by themselves. Limits protect; they never decide whether a request
is correct.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from m2mauth.core.blocking import check_may_block
from m2mauth.core.throttling import Bucket

log = logging.getLogger("m2mauth.ratelimit")

SOCKET_TIMEOUT_SECONDS = 0.25
WARN_EVERY_SECONDS = 30.0

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""
# KEYS: buckets; ARGV[i]: each bucket's tolerance. Returns each wait, as text.
_BLOCKED_FOR = (
    _NOW
    + """
local waits = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key)) or now
  local w = tat - now - tonumber(ARGV[i])
  if w < 0 then w = 0 end
  waits[i] = tostring(w)
end
return waits
"""
)
# KEYS: buckets; ARGV[2i-1], ARGV[2i]: each bucket's interval and tolerance.
_SPEND = (
    _NOW
    + """
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  tat = tat + interval
  if tat > now + tolerance + interval then tat = now + tolerance + interval end
  redis.call('SET', key, tostring(tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
end
return 1
"""
)
# KEYS[1]: the counter's name; ARGV[1]: the window in seconds.
_WINDOW = (
    _NOW
    + """
local window = tonumber(ARGV[1])
local index = math.floor(now / window)
local key = KEYS[1] .. ':' .. index
local count = redis.call('INCR', key)
if count == 1 then redis.call('PEXPIRE', key, window * 1000 + 5000) end
return {count, tostring((index + 1) * window - now)}
"""
)


class RedisCounters:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._blocked_for = client.register_script(_BLOCKED_FOR)
        self._spend = client.register_script(_SPEND)
        self._window = client.register_script(_WINDOW)
        self._lock = threading.Lock()
        self.errors = 0
        self.healthy = True
        self._warned_at = 0.0

    @classmethod
    def from_url(cls, url: str, *, prefix: str) -> RedisCounters:
        client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            health_check_interval=30,
        )
        return cls(client, prefix=prefix)

    def blocked_for(self, buckets: Sequence[Bucket]) -> list[float]:
        result = self._run(
            self._blocked_for,
            [self._prefix + b.key for b in buckets],
            [repr(b.allowance.tolerance) for b in buckets],
        )
        if result is None:  # failing open
            return [0.0] * len(buckets)
        return [float(wait) for wait in result]

    def spend(self, buckets: Sequence[Bucket]) -> None:
        args: list[str] = []
        for bucket in buckets:
            args += [repr(bucket.allowance.interval), repr(bucket.allowance.tolerance)]
        self._run(self._spend, [self._prefix + b.key for b in buckets], args)

    def count_in_window(self, key: str, window_seconds: int) -> tuple[int, float]:
        result = self._run(self._window, [self._prefix + key], [str(window_seconds)])
        if result is None:
            return 0, float(window_seconds)
        count, left = result
        return int(count), float(left)

    def _run(self, script: Any, keys: list[str], args: list[str]) -> Any:
        # A network round trip: never on an event loop (see core/blocking.py).
        check_may_block()
        try:
            result = script(keys=keys, args=args)
        except redis.RedisError as exc:
            self._failed(exc)
            return None
        if not self.healthy:
            self.healthy = True
            log.warning("rate-limit store reachable again; limits apply again")
        return result

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self.errors += 1
            self.healthy = False
            now = time.monotonic()
            loud = now - self._warned_at >= WARN_EVERY_SECONDS
            if loud:
                self._warned_at = now
        if loud:
            log.warning(
                "rate-limit store unreachable: limits are OFF until it is back (%s)",
                type(exc).__name__,
                extra={"rate_limit_errors": self.errors},
            )

    def close(self) -> None:
        self._client.close()


class RateLimitCollector(Collector):
    """Prometheus view of the shared counters' health."""

    def __init__(self, counters: RedisCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Any]:
        errors = CounterMetricFamily(
            "m2mauth_rate_limit_errors",
            "Calls to the rate-limit store (Redis) that failed; limits were off for them.",
        )
        errors.add_metric([], self._counters.errors)
        yield errors
        up = GaugeMetricFamily(
            "m2mauth_rate_limit_store_up", "1 while the rate-limit store (Redis) answers."
        )
        up.add_metric([], 1 if self._counters.healthy else 0)
        yield up
