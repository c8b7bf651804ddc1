"""``--cpu-affinity``: one CPU per worker when the workers are given every CPU.

A gRPC call crosses threads several times in one process: grpc core's event
engine threads read and write the socket, grpcio's completion-queue thread
takes each event, and a pool thread runs the handler. Between two CPUs every
crossing is a wake-up by inter-processor interrupt (dear in a virtual
machine) and the GIL moving to another core's cache; on one CPU it is a plain
context switch. Measured with ``make bench`` on 2 cores, 2 workers, 64
connections: gRPC IssueToken (ES256) 3,145 -> 4,964/s, Introspect 4,849 ->
6,816/s, RS256 IssueToken 2,383 -> 2,819/s; the HTTP shim, which runs on one
event-loop thread, within its noise (6,139 -> 6,182/s).

``auto`` pins only when ``--processes`` equals the CPUs this server may run on
and no cgroup quota gives it fewer: then each worker would have a CPU to
itself anyway. With fewer workers than CPUs, pinning would keep grpc's
threads off the idle ones; with more, or under a quota that shares the CPUs
with other work, the scheduler's freedom to move a worker matters more.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

MODES = ("auto", "off")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    return tuple(sorted(os.sched_getaffinity(0)))


def quota_cpus(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> float:
    """CPUs' worth of time the cgroup v2 ``cpu.max`` quota allows (inf when unlimited
    or unknown), the ``--cpus`` of a container without a cpuset."""
    try:
        lines = proc_cgroup.read_text().splitlines()
        [path] = [line[3:] for line in lines if line.startswith("0::")]
        quota, period = (root / path.lstrip("/") / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return math.inf
    if quota == "max":
        return math.inf
    return int(quota) / int(period)


def worker_cpus(
    processes: int,
    mode: str,
    cpus: tuple[int, ...] | None = None,
    quota: float | None = None,
) -> tuple[int, ...]:
    """The CPU of each worker (worker i on the i-th), or () to leave them unpinned."""
    if mode != "auto" or processes < 2:
        return ()
    cpus = allowed_cpus() if cpus is None else cpus
    quota = quota_cpus() if quota is None else quota
    if processes != len(cpus) or quota < len(cpus):
        return ()
    return cpus


def pin_to(cpu: int) -> None:
    """Run this thread, and every thread it starts from now on, on ``cpu`` only.

    Call before the first thread starts: threads that already run keep their mask.
    """
    os.sched_setaffinity(0, {cpu})
