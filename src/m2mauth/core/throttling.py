"""Throttling: failed client authentication (RFC 6749 section 2.3.1 asks for
brute-force protection) and per-application token quotas.

Failures are throttled per (client, source address) and per source address
with token buckets (GCRA: one stored time per key): a client that keeps
failing from one address is slowed there, an address that tries many clients
is slowed everywhere, and an attacker elsewhere never locks the real client
out (the lesson of keycloak#30077). Buckets refill, so nobody is locked out
for good. Only failures spend; a check before authenticating decides, so a
throttled caller costs no store read and no hash comparison.

Quotas count issued tokens per application in fixed one-minute windows: the
limit's N+1st token in a window is refused until the window ends.

The counters themselves live behind :class:`Counters`: in this process
(:mod:`m2mauth.ratelimit.memory`), or in Redis for every process and replica
(:mod:`m2mauth.ratelimit.redis`), which fails open: limits protect, they do
not decide correctness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from m2mauth.core import ids
from m2mauth.core.errors import QuotaExceeded, RateLimited
from m2mauth.core.failures import presented_actor
from m2mauth.core.models import Application

QUOTA_WINDOW_SECONDS = 60
UNKNOWN_SOURCE = "(none)"


@dataclass(frozen=True, slots=True)
class Allowance:
    """A token bucket: ``per_minute`` tokens, refilled evenly over a minute."""

    per_minute: int

    @property
    def interval(self) -> float:
        """Seconds between two refills (GCRA's emission interval)."""
        return 60.0 / self.per_minute

    @property
    def tolerance(self) -> float:
        """How far ahead of now the bucket may be spent (GCRA's burst tolerance)."""
        return self.interval * (self.per_minute - 1)


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    allowance: Allowance
    # For QuotaFailure: what is limited, and how.
    subject: str
    description: str


class Counters(Protocol):
    """Shared counters; each call is one round trip where they are remote."""

    def blocked_for(self, buckets: Sequence[Bucket]) -> list[float]:
        """Per bucket, seconds until it has a token again (0: it has one now).
        Spends nothing."""
        ...

    def spend(self, buckets: Sequence[Bucket]) -> None:
        """Take one token from each bucket (an empty bucket stays empty)."""
        ...

    def count_in_window(self, key: str, window_seconds: int) -> tuple[int, float]:
        """Count one event in the current fixed window of ``key``; return the
        window's count so far (this one included) and the seconds it has left."""
        ...

    def close(self) -> None: ...


class FailureThrottle:
    """Slows down failed client authentication, per (client, source) and per source."""

    def __init__(
        self,
        counters: Counters,
        fingerprint: Callable[[str], str],
        *,
        per_client: Allowance | None,
        per_source: Allowance | None,
    ) -> None:
        """``None``: that bucket is off."""
        self._counters = counters
        self._fingerprint = fingerprint
        self._per_client = per_client
        self._per_source = per_source

    def _buckets(self, client_id: str, source: str) -> list[Bucket]:
        # The client as the audit log records it: never a presented secret.
        client = presented_actor(client_id, ids.CLIENT, self._fingerprint)
        source = source or UNKNOWN_SOURCE
        buckets: list[Bucket] = []
        if self._per_client is not None:
            buckets.append(
                Bucket(
                    f"auth-failures:client:{client}:{source}",
                    self._per_client,
                    subject=f"client:{client}",
                    description=(
                        f"at most {self._per_client.per_minute} failed authentications of "
                        "one client per minute from one address"
                    ),
                )
            )
        if self._per_source is not None:
            buckets.append(
                Bucket(
                    f"auth-failures:source:{source}",
                    self._per_source,
                    subject=f"source:{source}",
                    description=(
                        f"at most {self._per_source.per_minute} failed authentications per "
                        "minute from one address"
                    ),
                )
            )
        return buckets

    def check(self, client_id: str, source: str) -> None:
        """Raise RateLimited if this client or address has failed too often lately."""
        buckets = self._buckets(client_id, source)
        if not buckets:
            return
        waits = self._counters.blocked_for(buckets)
        wait, empty = max(zip(waits, buckets, strict=True), key=lambda pair: pair[0])
        if wait > 0:
            raise RateLimited(
                "too many failed authentications; retry later",
                retry_after_seconds=max(1, math.ceil(wait)),
                subject=empty.subject,
                description=empty.description,
            )

    def failed(self, client_id: str, source: str) -> None:
        buckets = self._buckets(client_id, source)
        if buckets:
            self._counters.spend(buckets)


class TokenQuota:
    """Per-application tokens-per-minute limits (``token_quota_per_minute``)."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def take(self, app: Application) -> None:
        """Count one token for ``app``; QuotaExceeded past its quota in this minute."""
        limit = app.token_quota_per_minute
        if limit <= 0:
            return
        count, left = self._counters.count_in_window(f"token-quota:{app.id}", QUOTA_WINDOW_SECONDS)
        if count > limit:
            raise QuotaExceeded(
                f"the application's quota of {limit} tokens per minute is used up; "
                "cache tokens until they expire instead of asking for one per call",
                retry_after_seconds=max(1, math.ceil(left)),
                subject=f"application:{app.id}",
                description=f"at most {limit} tokens per minute",
            )
