"""Throttling counters in this process: GCRA buckets and fixed windows in dicts.

Exact for one process; with ``--processes N`` each worker counts on its own,
so the effective limits are N times the settings (use Redis to share them).
Memory is bounded: keys whose bucket is full again or whose window is over
carry no information and are swept when the table grows.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

from m2mauth.core.throttling import Bucket

MAX_KEYS = 100_000


class MemoryCounters:
    def __init__(self, clock: Callable[[], float] = time.time, *, max_keys: int = MAX_KEYS) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # GCRA: per key the "theoretical arrival time" of the next token.
        self._tat: dict[str, float] = {}
        # Fixed windows: per key the window's index and its count.
        self._windows: dict[str, tuple[int, int]] = {}

    def blocked_for(self, buckets: Sequence[Bucket]) -> list[float]:
        now = self._clock()
        with self._lock:
            return [
                max(0.0, self._tat.get(b.key, now) - now - b.allowance.tolerance) for b in buckets
            ]

    def spend(self, buckets: Sequence[Bucket]) -> None:
        now = self._clock()
        with self._lock:
            for bucket in buckets:
                allowance = bucket.allowance
                tat = max(self._tat.get(bucket.key, now), now) + allowance.interval
                # An empty bucket stays empty, no emptier: failures that raced
                # past the check cannot lock anyone out for longer.
                self._tat[bucket.key] = min(tat, now + allowance.tolerance + allowance.interval)
            if len(self._tat) > self._max_keys:
                self._tat = {k: v for k, v in self._tat.items() if v > now}

    def count_in_window(self, key: str, window_seconds: int) -> tuple[int, float]:
        now = self._clock()
        index = math.floor(now / window_seconds)
        with self._lock:
            seen = self._windows.get(key)
            count = seen[1] + 1 if seen is not None and seen[0] == index else 1
            self._windows[key] = (index, count)
            if len(self._windows) > self._max_keys:
                self._windows = {k: v for k, v in self._windows.items() if v[0] == index}
        return count, (index + 1) * window_seconds - now

    def close(self) -> None:
        return None
