"""gRPC load with h2load (Debian's ``nghttp2-client``), a C HTTP/2 load generator.

h2load knows HTTP, not gRPC: it POSTs one request file on every stream and
counts any 2xx answer as a success. A unary gRPC call is such a POST (the
request is a 5-byte prefix and the serialized message); its outcome, though,
is the ``grpc-status`` trailer, which h2load does not read, and a failed call
is still HTTP 200. So a call is counted as OK only by its answer's size: a
failed call answers with headers and trailers only (no DATA), an OK one with
exactly one length-prefixed message, whose size the runner learns from a
verification call with grpcio before the load (and checks again after). The
OK calls are then ``data bytes // size of one answer``; the rest are errors.
"""

from __future__ import annotations

import os
import re
import resource
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.server import BenchError
from bench.stats import LoadResult, percentile
from bench.wrk import ensure_tool

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


def ensure_h2load() -> str:
    return ensure_tool("h2load", "nghttp2-client")


def h2load_version(exe: str) -> str:
    done = subprocess.run(  # noqa: S603 - h2load --version prints its version
        [exe, "--version"], capture_output=True, text=True, check=False
    )
    first = done.stdout.strip().splitlines()
    return first[0] if first else "unknown"


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: flag 0 (not compressed), 4-byte big-endian length."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def write_request_file(path: Path, message: bytes) -> Path:
    """The body h2load sends on every stream (``-d``): one framed, uncompressed message."""
    path.write_bytes(grpc_frame(message))
    return path


@dataclass(frozen=True, slots=True)
class H2loadSummary:
    """What h2load's summary says about one run."""

    seconds: float  # "finished in": the -D duration in timing-based runs
    done: int
    succeeded: int  # HTTP-level: h2load cannot see grpc-status
    status_2xx: int
    data_bytes: int  # DATA frame payload received: the length-prefixed answers


_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_FINISHED = re.compile(r"^finished in ([\d.]+)(s|ms|us),", re.MULTILINE)
_REQUESTS = re.compile(r"^requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", re.M)
_STATUS = re.compile(r"^status codes: (\d+) 2xx", re.MULTILINE)
_DATA = re.compile(r"^traffic: .*, [\d.]+[KMG]?B \((\d+)\) data$", re.MULTILINE)


def parse_summary(text: str) -> H2loadSummary:
    """Parse h2load's stdout; a line missing means h2load did not finish (an error)."""
    found = [p.search(text) for p in (_FINISHED, _REQUESTS, _STATUS, _DATA)]
    finished, requests, status, data = found
    if finished is None or requests is None or status is None or data is None:
        raise BenchError(f"unexpected h2load output:\n{text.strip()[-1500:]}")
    return H2loadSummary(
        seconds=float(finished[1]) * _UNITS[finished[2]],
        done=int(requests[1]),
        succeeded=int(requests[2]),
        status_2xx=int(status[1]),
        data_bytes=int(data[1]),
    )


def ok_calls(summary: H2loadSummary, answer_bytes: int) -> int:
    """Calls that got a gRPC message back: the others failed (a grpc-status != 0
    answer carries no DATA) or never finished."""
    if answer_bytes <= 0:
        raise ValueError("answer_bytes must be positive")
    return min(summary.succeeded, summary.status_2xx, summary.data_bytes // answer_bytes)


def read_latencies(log: Path) -> list[float]:
    """Per-request latencies (seconds, sorted) from h2load's ``--log-file``:
    tab-separated start time (us since the epoch), status (-1: failed stream), duration (us)."""
    latencies: list[float] = []
    for line in log.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) == 3:
            latencies.append(int(fields[2]) / 1e6)
    latencies.sort()
    return latencies


def command(
    exe: str, url: str, request_file: Path, *, concurrency: int, seconds: float, log: Path | None
) -> list[str]:
    """``concurrency`` connections with one stream each (wrk's model: a connection
    per in-flight request), on as many threads as cores, h2c prior knowledge."""
    threads = max(1, min(concurrency, os.cpu_count() or 1))
    args = [
        exe,
        f"-t{threads}",
        f"-c{concurrency}",
        "-m1",
        f"-D{max(1, round(seconds))}",
        "-d",
        str(request_file),
    ]
    for header in GRPC_HEADERS:
        args += ["-H", header]
    if log is not None:
        args += ["--log-file", str(log)]
    return [*args, url]


def run_h2load(
    exe: str,
    url: str,
    request_file: Path,
    *,
    answer_bytes: int,
    concurrency: int,
    seconds: float,
    log: Path | None = None,
    on_start: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> LoadResult:
    """Keep ``concurrency`` unary calls in flight for ``seconds``; ``answer_bytes``
    is the size of one OK answer with its 5-byte prefix (see the module docstring)."""
    args = command(exe, url, request_file, concurrency=concurrency, seconds=seconds, log=log)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if on_start:
        on_start()
    done = subprocess.run(  # noqa: S603 - h2load with our arguments
        args, capture_output=True, text=True, check=False, timeout=seconds + 60
    )
    if on_end:
        on_end()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise BenchError(f"h2load failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    summary = parse_summary(done.stdout)
    ok = ok_calls(summary, answer_bytes)
    if ok < summary.done:
        print(f"    {summary.done - ok} calls without an OK answer (gRPC error or unfinished)")
    latencies = read_latencies(log) if log is not None else []
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    threads = args[1][2:]
    return LoadResult(
        requests=summary.done,
        errors=summary.done - ok,
        seconds=summary.seconds,
        p50_ms=percentile(latencies, 50) * 1000,
        p90_ms=percentile(latencies, 90) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        max_ms=(latencies[-1] * 1000) if latencies else 0.0,
        generator_cpu_seconds=cpu,
        generator=f"h2load -t{threads} -c{concurrency} -m1",
    )
