"""The benchmark's arithmetic: percentiles, load split, ceiling ratio, target verdicts."""

from __future__ import annotations

import pytest
from bench.cases import Case, Measurement
from bench.grpc_load import split
from bench.report import evaluate_targets
from bench.stats import LoadResult, percentile


def load(requests: int, *, errors: int = 0, seconds: float = 10.0, p99: float = 10.0) -> LoadResult:
    return LoadResult(
        requests=requests,
        errors=errors,
        seconds=seconds,
        p50_ms=1.0,
        p90_ms=2.0,
        p99_ms=p99,
        max_ms=p99,
        generator_cpu_seconds=1.0,
        generator="test",
    )


def measured(case: Case, result: LoadResult, *, rss_kib: int = 100 * 1024) -> Measurement:
    return Measurement(
        case=case,
        load=result,
        server_cpu_seconds=15.0,
        server_processes=2,
        server_vmhwm_kib={1: rss_kib, 2: rss_kib // 2},
        cores=2,
        sign_per_core=2_000.0 if case.operation == "issue" else None,
    )


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) == 0.0


@pytest.mark.parametrize(
    ("concurrency", "processes", "shares"),
    [(64, 1, [64]), (64, 3, [22, 21, 21]), (2, 8, [1, 1]), (1, 4, [1])],
)
def test_split_spreads_calls_over_processes(
    concurrency: int, processes: int, shares: list[int]
) -> None:
    assert split(concurrency, processes) == shares


def test_rates_count_only_successes_and_the_ceiling_uses_every_core() -> None:
    m = measured(Case("sqlite", "RS256", "issue", "http", 64), load(30_000, errors=1_000))
    assert m.rps == 2_900.0
    assert m.ceiling_ratio == pytest.approx(2_900 / (2_000 * 2))
    assert m.server_cores_busy == 1.5
    assert m.peak_rss_mib == 100.0
    introspection = measured(Case("sqlite", "RS256", "introspect", "http", 64), load(10))
    assert introspection.ceiling_ratio is None


def test_targets_are_judged_per_backend_and_unmeasured_ones_say_so() -> None:
    results = [
        measured(Case("sqlite", "RS256", "issue", "http", 64), load(26_000)),  # 2,600/s
        measured(Case("sqlite", "ES256", "issue", "http", 64), load(49_990, p99=49.9)),
        measured(Case("sqlite", "ES256", "issue", "grpc", 64), load(45_000, p99=50.0)),
        measured(
            Case("sqlite", "ES256", "introspect", "http", 64), load(60_000), rss_kib=151 * 1024
        ),
    ]
    verdicts = {(t.target, t.where): t.met for t in evaluate_targets(results, ["sqlite"], 64)}
    assert verdicts[("RS256 issuance over HTTP >= 2,600/s", "sqlite RS256 c64")] is True
    assert verdicts[("ES256 issuance over HTTP >= 5,000/s", "sqlite ES256 c64")] is False
    assert verdicts[("ES256 issuance over gRPC >= 4,000/s", "sqlite ES256 c64")] is True
    introspection = "introspection (valid token) over HTTP >= 5,000/s"
    assert verdicts[(introspection, "sqlite ES256 c64")] is True
    assert verdicts[(introspection, "sqlite RS256 c64")] is None  # not measured
    assert verdicts[("ES256 issuance p99 < 50 ms at c64 (http)", "sqlite ES256 c64")] is True
    assert verdicts[("ES256 issuance p99 < 50 ms at c64 (grpc)", "sqlite ES256 c64")] is False
    assert verdicts[("server RSS < 150 MiB per process", "sqlite (peak VmHWM)")] is False
