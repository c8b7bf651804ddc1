"""The benchmark's knobs, all from environment variables (see bench/README.md)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "latest.json"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ALGORITHMS = ("RS256", "ES256")
GRPC_LOADS = ("h2load", "grpc.aio")


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    return float(text) if text else default


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    return int(text) if text else default


def _env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    return tuple(item.strip() for item in text.split(",") if item.strip())


@dataclass(frozen=True, slots=True)
class BenchSettings:
    quick: bool
    duration: float  # seconds measured per case
    warmup: float  # seconds of untimed load before each case
    ceiling_duration: float  # seconds per raw-crypto and verify-kit measurement
    concurrencies: tuple[int, ...]
    algorithms: tuple[str, ...]
    backends: tuple[str, ...]
    postgres_url: str
    processes: int  # --processes for the server, when it has that option
    grpc_load: str  # the gRPC load generator: h2load, or grpc.aio (bench/grpc_load.py)
    grpc_client_processes: int  # grpc.aio load processes at the highest concurrency
    only: tuple[str, ...]  # run only the cases whose name contains one of these
    # Extra `serve` arguments, e.g. "--rate-limit-url redis://127.0.0.1:6379/0".
    server_args: tuple[str, ...]
    output: Path

    @classmethod
    def from_env(cls) -> BenchSettings:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        cores = os.cpu_count() or 1
        duration = _env_float("BENCH_DURATION", 2.0 if quick else 10.0)
        grpc_load = os.environ.get("BENCH_GRPC_LOAD", "").strip() or GRPC_LOADS[0]
        if grpc_load not in GRPC_LOADS:
            raise ValueError(f"BENCH_GRPC_LOAD={grpc_load!r}: one of {', '.join(GRPC_LOADS)}")
        return cls(
            quick=quick,
            duration=duration,
            warmup=_env_float("BENCH_WARMUP", 0.5 if quick else 1.0),
            ceiling_duration=_env_float(
                "BENCH_CEILING_DURATION", min(duration, 1.0 if quick else 3.0)
            ),
            concurrencies=tuple(int(c) for c in _env_list("BENCH_CONCURRENCY", ("1", "64"))),
            algorithms=_env_list("BENCH_ALGORITHMS", ALGORITHMS),
            backends=_env_list("BENCH_BACKENDS", ("sqlite", "postgres")),
            postgres_url=os.environ.get("BENCH_POSTGRES_URL")
            or os.environ.get("M2MAUTH_TEST_POSTGRES_URL")
            or DEFAULT_POSTGRES_URL,
            processes=_env_int("BENCH_PROCESSES", cores),
            grpc_load=grpc_load,
            grpc_client_processes=_env_int("BENCH_GRPC_CLIENT_PROCESSES", max(1, cores // 2)),
            only=_env_list("BENCH_ONLY", ()),
            server_args=tuple(os.environ.get("BENCH_SERVER_ARGS", "").split()),
            output=Path(os.environ.get("BENCH_OUTPUT") or DEFAULT_OUTPUT),
        )

    def wants(self, case_name: str) -> bool:
        return not self.only or any(part in case_name for part in self.only)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["output"] = _relative(self.output)
        # The server URL may carry a password: keep only what is after the '@'.
        data["postgres_url"] = self.postgres_url.rpartition("@")[2]
        return data


def _relative(path: Path) -> str:
    """``path`` relative to the repository root when inside it (no machine paths in results)."""
    try:
        return str(path.resolve().relative_to(BENCH_DIR.parent))
    except ValueError:
        return path.name
