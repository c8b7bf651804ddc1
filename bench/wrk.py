"""HTTP load with wrk (https://github.com/wg/wrk) and the ``wrk_report.lua`` script."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from bench.server import BenchError
from bench.stats import LoadResult

SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"
MARKER = "BENCH_JSON "


def ensure_wrk() -> str:
    return ensure_tool("wrk", "wrk")


def ensure_tool(name: str, package: str) -> str:
    """The ``name`` executable; its Debian ``package`` installed with apt-get when it is
    missing and we are root."""
    found = shutil.which(name)
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise BenchError(
            f"{name} is not installed: install it (Debian/Ubuntu: "
            f"`sudo apt-get install -y {package}`) and run `make bench` again"
        )
    print(f"{name} is missing: apt-get install -y {package}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["install", "-y", package], ["update"], ["install", "-y", package]):
        done = subprocess.run(  # noqa: S603 - apt-get with fixed arguments
            [apt, "-q", *args], capture_output=True, text=True, env=env, check=False
        )
        if args[0] == "install" and done.returncode == 0:
            break
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"`apt-get install -y {package}` failed: {done.stderr.strip()[-500:]}")
    return found


def wrk_version(exe: str) -> str:
    done = subprocess.run(  # noqa: S603 - wrk -v prints its version (and exits 1)
        [exe, "-v"], capture_output=True, text=True, check=False
    )
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "unknown"


def run_wrk(
    exe: str,
    url: str,
    *,
    concurrency: int,
    seconds: float,
    method: str = "GET",
    body: str = "",
    authorization: str = "",
    body_file: Path | None = None,
    on_start: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> LoadResult:
    """Keep ``concurrency`` keep-alive connections busy for ``seconds``; with
    ``body_file``, each request sends the next of its lines (see wrk_report.lua)."""
    threads = max(1, min(concurrency, os.cpu_count() or 1))
    command = [
        exe,
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url,
    ]
    env = {
        **os.environ,
        "BENCH_METHOD": method,
        "BENCH_BODY": body,
        "BENCH_AUTHORIZATION": authorization,
        "BENCH_BODY_FILE": str(body_file) if body_file else "",
        "BENCH_THREADS": str(threads),
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if on_start:
        on_start()
    done = subprocess.run(  # noqa: S603 - wrk with our arguments
        command, capture_output=True, text=True, env=env, check=False, timeout=seconds + 60
    )
    if on_end:
        on_end()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    data = json.loads(lines[-1][len(MARKER) :])
    errors = data["non200"] + data["connect"] + data["read"] + data["write"] + data["timeout"]
    if data["non200"]:
        print(f"    {data['non200']} non-200 answers (first: {data['first_bad_status']})")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return LoadResult(
        requests=data["requests"],
        errors=errors,
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        generator_cpu_seconds=cpu,
        generator=f"wrk -t{threads} -c{concurrency}",
    )
