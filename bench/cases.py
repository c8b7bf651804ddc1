"""The benchmark's cases and what each measured."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.stats import LoadResult

MIB = 1024


@dataclass(frozen=True, slots=True)
class Case:
    backend: str  # sqlite | postgres
    algorithm: str  # RS256 | ES256: the server's signing key
    operation: str  # issue | introspect | jwks
    transport: str  # http | grpc
    concurrency: int

    @property
    def name(self) -> str:
        return (
            f"{self.backend}/{self.algorithm}/{self.operation}/{self.transport}/c{self.concurrency}"
        )


@dataclass(slots=True)
class Measurement:
    case: Case
    load: LoadResult
    server_cpu_seconds: float
    server_processes: int
    server_vmhwm_kib: dict[int, int]  # pid -> VmHWM (peak RSS since the process started)
    cores: int  # cores taken as available to the server (os.cpu_count())
    sign_per_core: float | None = None  # raw signatures/s of one core, issuance only
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.load.ok_per_second

    @property
    def server_cores_busy(self) -> float:
        return self.server_cpu_seconds / self.load.seconds if self.load.seconds else 0.0

    @property
    def generator_cores_busy(self) -> float:
        return self.load.generator_cpu_seconds / self.load.seconds if self.load.seconds else 0.0

    @property
    def server_cpu_us_per_request(self) -> float:
        done = self.load.requests
        return self.server_cpu_seconds / done * 1e6 if done else 0.0

    @property
    def peak_rss_mib(self) -> float:
        return max(self.server_vmhwm_kib.values(), default=0) / MIB

    @property
    def ceiling_ratio(self) -> float | None:
        """tokens/s / (raw signatures/s per core x cores available to the server)."""
        if not self.sign_per_core or self.case.operation != "issue":
            return None
        return self.rps / (self.sign_per_core * self.cores)

    def as_json(self) -> dict[str, Any]:
        load = asdict(self.load)
        return {
            "name": self.case.name,
            **asdict(self.case),
            "requests_per_second": round(self.rps, 1),
            "requests": self.load.requests,
            "errors": self.load.errors,
            "seconds": round(self.load.seconds, 3),
            "latency_ms": {k[:-3]: round(load[k], 3) for k in load if k.endswith("_ms")},
            "load_generator": self.load.generator,
            "load_generator_cpu_seconds": round(self.load.generator_cpu_seconds, 3),
            "load_generator_cores_busy": round(self.generator_cores_busy, 3),
            "server_cpu_seconds": round(self.server_cpu_seconds, 3),
            "server_cores_busy": round(self.server_cores_busy, 3),
            "server_cpu_us_per_request": round(self.server_cpu_us_per_request, 1),
            "server_processes": self.server_processes,
            "server_peak_rss_mib_per_process": [
                round(v / MIB, 1) for v in self.server_vmhwm_kib.values()
            ],
            "server_peak_rss_mib_max": round(self.peak_rss_mib, 1),
            "ceiling_ratio": None if self.ceiling_ratio is None else round(self.ceiling_ratio, 3),
            **self.extra,
        }
