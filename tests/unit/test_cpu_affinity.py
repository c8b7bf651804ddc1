"""--cpu-affinity: when workers are pinned, and to which CPU."""

from __future__ import annotations

import math
from pathlib import Path

from m2mauth.cpu_affinity import quota_cpus, worker_cpus


def test_one_cpu_per_worker_when_the_workers_have_every_cpu() -> None:
    assert worker_cpus(2, "auto", cpus=(2, 5), quota=math.inf) == (2, 5)
    assert worker_cpus(4, "auto", cpus=(0, 1, 2, 3), quota=4.0) == (0, 1, 2, 3)


def test_left_to_the_scheduler_otherwise() -> None:
    assert worker_cpus(2, "off", cpus=(0, 1), quota=math.inf) == ()
    # Fewer workers than CPUs: grpc's threads may use the others.
    assert worker_cpus(2, "auto", cpus=(0, 1, 2, 3), quota=math.inf) == ()
    # More workers than CPUs: they share them anyway.
    assert worker_cpus(4, "auto", cpus=(0, 1), quota=math.inf) == ()
    # One process: nothing to keep apart.
    assert worker_cpus(1, "auto", cpus=(0,), quota=math.inf) == ()
    # A quota (a container's --cpus) smaller than the CPUs it may run on.
    assert worker_cpus(2, "auto", cpus=(0, 1), quota=1.5) == ()


def _cgroup(tmp_path: Path, cpu_max: str | None) -> tuple[Path, Path]:
    tmp_path.mkdir()
    proc = tmp_path / "cgroup"
    proc.write_text("0::/kubepods/pod1\n")
    root = tmp_path / "fs"
    (root / "kubepods" / "pod1").mkdir(parents=True)
    if cpu_max is not None:
        (root / "kubepods" / "pod1" / "cpu.max").write_text(cpu_max)
    return proc, root


def test_quota_is_read_from_the_cgroup_v2_cpu_max(tmp_path: Path) -> None:
    assert quota_cpus(*_cgroup(tmp_path / "a", "150000 100000\n")) == 1.5
    assert quota_cpus(*_cgroup(tmp_path / "b", "max 100000\n")) == math.inf
    # No cpu controller there (cgroup v1, or not delegated): no quota known.
    assert quota_cpus(*_cgroup(tmp_path / "c", None)) == math.inf
    assert quota_cpus(tmp_path / "missing", tmp_path) == math.inf
