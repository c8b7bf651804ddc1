"""What one load run measured, whichever tool generated the load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(pct / 100.0 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Client-side view of one measured window."""

    requests: int  # completed requests (errors included)
    errors: int  # non-200 HTTP answers, non-OK gRPC statuses, socket errors, timeouts
    seconds: float  # the measured window
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    generator_cpu_seconds: float  # CPU the load generator used in the window
    generator: str  # e.g. "wrk -t2 -c64" or "grpc.aio 1 proc x 64"

    @property
    def ok_per_second(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0
