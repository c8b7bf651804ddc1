"""Where the throttling counters live: this process, or Redis for every replica.

:func:`open_counters` turns ``--rate-limit-url`` into a
:class:`~m2mauth.core.throttling.Counters`: empty for the embedded,
in-process counters (one node), ``redis://`` or ``rediss://`` for counters
every process and replica shares.
"""

from __future__ import annotations

from m2mauth.core.throttling import Counters

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class UnsupportedRateLimitUrl(ValueError):
    def __init__(self, url: str) -> None:
        scheme = f"{url.partition('://')[0]}://..." if "://" in url else "(no scheme://)"
        super().__init__(
            f"unsupported rate-limit URL {scheme}: use redis://host:6379/0 (or rediss:// for "
            "TLS), or leave it empty for counters in this process"
        )


def open_counters(url: str, *, prefix: str = "m2mauth:") -> Counters:
    if not url:
        from m2mauth.ratelimit.memory import MemoryCounters  # noqa: PLC0415

        return MemoryCounters()
    if url.startswith(REDIS_SCHEMES):
        # Imported here: the embedded default needs no Redis client.
        from m2mauth.ratelimit.redis import RedisCounters  # noqa: PLC0415

        return RedisCounters.from_url(url, prefix=prefix)
    raise UnsupportedRateLimitUrl(url)
