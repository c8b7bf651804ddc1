"""--cpu-affinity: when workers are pinned, and to which CPU."""

from __future__ import annotations

import math
import os
from pathlib import Path

from m2mauth.cpu_affinity import pin_to, quota_cpus, worker_cpus


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


def _tree(base: Path, proc_cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake /proc/self/cgroup and /sys/fs/cgroup: ``files`` by path under the latter."""
    base.mkdir()
    proc = base / "cgroup"
    proc.write_text(proc_cgroup)
    root = base / "fs"
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return proc, root


def test_the_v2_quota_is_the_smallest_of_the_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    here = "0::/kubepods/pod1/ctr\n"
    assert (
        quota_cpus(*_tree(tmp_path / "a", here, {"kubepods/pod1/ctr/cpu.max": "150000 100000\n"}))
        == 1.5
    )
    # Limited one level up (a pod's limit, a systemd slice's CPUQuota=), not here.
    parent = {
        "kubepods/pod1/cpu.max": "100000 100000\n",
        "kubepods/pod1/ctr/cpu.max": "max 100000\n",
    }
    assert quota_cpus(*_tree(tmp_path / "b", here, parent)) == 1.0
    assert (
        quota_cpus(*_tree(tmp_path / "c", here, {"kubepods/pod1/ctr/cpu.max": "max 100000\n"}))
        == math.inf
    )
    # Inside a container without a cgroup namespace the path is the host's; the
    # container's own mount is read from its root.
    assert (
        quota_cpus(*_tree(tmp_path / "d", "0::/docker/abc\n", {"cpu.max": "50000 100000\n"})) == 0.5
    )


def test_the_v1_quota_is_read_from_the_cpu_controller(tmp_path: Path) -> None:
    v1 = "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n0::/\n"
    limited = {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "150000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    }
    assert quota_cpus(*_tree(tmp_path / "a", v1, limited)) == 1.5
    unlimited = {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    }
    assert quota_cpus(*_tree(tmp_path / "b", v1, unlimited)) == math.inf


def test_no_readable_quota_is_no_quota(tmp_path: Path) -> None:
    assert quota_cpus(tmp_path / "missing", tmp_path) == math.inf
    garbled = {"cpu.max": "lots\n"}
    assert quota_cpus(*_tree(tmp_path / "a", "0::/\n", garbled)) == math.inf


def test_a_cpu_that_left_the_cpuset_leaves_the_worker_unpinned() -> None:
    before = os.sched_getaffinity(0)
    gone = max(before) + 4096  # no such CPU on any machine this runs on
    assert "cannot run on CPU" in pin_to(gone)
    assert os.sched_getaffinity(0) == before
