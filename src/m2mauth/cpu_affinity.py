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
and no cgroup quota (of its cgroup or any above it, v2 or v1) gives it fewer:
then each worker would have a CPU to itself anyway. With fewer workers than
CPUs, pinning would keep grpc's threads off the idle ones; with more, or
under a quota that shares the CPUs with other work, the scheduler's freedom
to move a worker matters more. A host whose CPUs other busy work shares
without any quota (a pod with requests and no limits) should say ``off``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

MODES = ("auto", "off")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    return tuple(sorted(os.sched_getaffinity(0)))


def quota_cpus(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> float:
    """CPUs' worth of time this process may use by its cgroups' quotas (the
    ``--cpus`` of a container without a cpuset): the smallest of its cgroup's and
    every ancestor's, cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``; inf when
    there is none or it cannot be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return math.inf
    found: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            found += _quotas(root, path, _v2_quota)
        elif "cpu" in controllers.split(","):
            found += _quotas(root / controllers, path, _v1_quota)
    return min(found, default=math.inf)


def _quotas(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quotas set on ``path`` and its ancestors under ``mount``. Without a
    cgroup namespace, ``path`` is the host's name for a cgroup the container's
    mount shows as its root: the ancestors that exist there are read, down to
    the mount itself."""
    parts = [part for part in path.split("/") if part]
    dirs = [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [quota for quota in map(read, dirs) if quota is not None]


def _v2_quota(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


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


def pin_to(cpu: int) -> str:
    """Run this thread, and every thread it starts from now on, on ``cpu`` only;
    "" if done, else why not (the CPU left the cpuset since the plan was made:
    the worker then runs unpinned rather than not at all).

    Call before the first thread starts: threads that already run keep their mask.
    """
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        return f"cannot run on CPU {cpu} ({exc.strerror}); left to the scheduler"
    return ""
