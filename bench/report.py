"""The results table, the targets, and bench/results/latest.json."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cases import Measurement

RSS_LIMIT_MIB = 150.0

HEADER = (
    f"{'case':<34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
    f"{'srv CPU':>7} {'gen CPU':>7} {'srv us/req':>10} {'RSS MiB':>7} {'procs':>5} {'ceil%':>6}"
)


def row(m: Measurement) -> str:
    ratio = "" if m.ceiling_ratio is None else f"{m.ceiling_ratio * 100:.0f}%"
    return (
        f"{m.case.name:<34} {m.rps:>8.0f} {m.load.p50_ms:>8.2f} {m.load.p99_ms:>8.2f} "
        f"{m.load.errors:>6d} {m.server_cores_busy:>7.2f} {m.generator_cores_busy:>7.2f} "
        f"{m.server_cpu_us_per_request:>10.0f} {m.peak_rss_mib:>7.1f} {m.server_processes:>5d} "
        f"{ratio:>6}"
    )


@dataclass(frozen=True, slots=True)
class TargetResult:
    target: str
    where: str
    measured: str
    met: bool | None  # None: not measured in this run

    def line(self) -> str:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[self.met]
        return f"{self.target:<48} {self.where:<28} {self.measured:>14}  {verdict}"


def _find(results: Sequence[Measurement], **fields: Any) -> list[Measurement]:
    return [
        m for m in results if all(getattr(m.case, key) == value for key, value in fields.items())
    ]


def evaluate_targets(
    results: Sequence[Measurement], backends: Sequence[str], high: int
) -> list[TargetResult]:
    """Each target of the issue, per database (and per algorithm for introspection)."""
    out: list[TargetResult] = []

    def rate(
        label: str, minimum: float, operation: str, transport: str, algorithms: Sequence[str]
    ) -> None:
        for backend in backends:
            for algorithm in algorithms:
                found = _find(
                    results,
                    backend=backend,
                    algorithm=algorithm,
                    operation=operation,
                    transport=transport,
                    concurrency=high,
                )
                where = f"{backend} {algorithm} c{high}"
                if not found:
                    out.append(TargetResult(label, where, "-", None))
                    continue
                value = found[0].rps
                out.append(TargetResult(label, where, f"{value:,.0f}/s", value >= minimum))

    rate("RS256 issuance over HTTP >= 2,600/s", 2600, "issue", "http", ["RS256"])
    rate("ES256 issuance over HTTP >= 5,000/s", 5000, "issue", "http", ["ES256"])
    rate("ES256 issuance over gRPC >= 4,000/s", 4000, "issue", "grpc", ["ES256"])
    rate(
        "introspection (valid token) over HTTP >= 5,000/s",
        5000,
        "introspect",
        "http",
        ["RS256", "ES256"],
    )
    for backend in backends:
        for transport in ("http", "grpc"):
            found = _find(
                results,
                backend=backend,
                algorithm="ES256",
                operation="issue",
                transport=transport,
                concurrency=high,
            )
            label = f"ES256 issuance p99 < 50 ms at c{high} ({transport})"
            where = f"{backend} ES256 c{high}"
            if not found:
                out.append(TargetResult(label, where, "-", None))
            else:
                p99 = found[0].load.p99_ms
                out.append(TargetResult(label, where, f"{p99:.1f} ms", p99 < 50))
    for backend in backends:
        mine = _find(results, backend=backend)
        label = f"server RSS < {RSS_LIMIT_MIB:.0f} MiB per process"
        if not mine:
            out.append(TargetResult(label, backend, "-", None))
            continue
        peak = max(m.peak_rss_mib for m in mine)
        out.append(
            TargetResult(label, f"{backend} (peak VmHWM)", f"{peak:.1f} MiB", peak < RSS_LIMIT_MIB)
        )
    return out


def print_report(
    results: Sequence[Measurement],
    rates: dict[str, Any],
    targets: Sequence[TargetResult],
    echo: Callable[[str], None] = print,
) -> None:
    echo("")
    echo(HEADER)
    echo("-" * len(HEADER))
    for m in results:
        echo(row(m))
    echo("")
    echo("Single-process rates (cryptography = raw ceiling per core; verify kit = m2mauth.verify):")
    for name, value in rates.items():
        echo(f"  {name:<34} {value['per_second']:>10,.0f}/s")
    echo("")
    echo("Targets:")
    for target in targets:
        echo("  " + target.line())


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
