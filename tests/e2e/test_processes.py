"""`serve --processes N`: workers share the ports, agree on keys, and never outlive
the server."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import httpx
import jwt
import pytest

from m2mauth.cpu_affinity import quota_cpus
from tests.e2e.test_serve import new_client, start, stop
from tests.waiting import wait_for


def children(pid: int) -> set[int]:
    """Worker processes of ``pid`` (its spawned Python children)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def tokens_issued(metrics: str) -> int:
    [line] = [x for x in metrics.splitlines() if x.startswith("m2mauth_tokens_issued_total ")]
    return int(float(line.split()[1]))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_workers_share_ports_and_keys_and_stop_with_the_server(tmp_path: Path) -> None:
    served = start(["--dev", "--processes", "2", "--grpc-port", "0", "--http-port", "0"], tmp_path)
    workers = children(served.process.pid)
    try:
        assert len(workers) == 2, served.stdout
        client = new_client(served)
        client_id, secret = client.client_id, client.secret
        kids: Counter[str] = Counter()
        for _ in range(40):
            # A new connection each time, so the kernel may pick either worker.
            with httpx.Client(base_url=served.http_url) as http:
                response = http.post(
                    "/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(client_id, secret),
                )
                assert response.status_code == 200, response.text
                kids[jwt.get_unverified_header(response.json()["access_token"])["kid"]] += 1
        # One signing key, made once before the workers started.
        assert len(kids) == 1, kids
        # Each worker has its metrics port; together they counted every token, and
        # both workers answered.
        assert len(served.metrics_urls) == 2, served.stdout
        issued = [tokens_issued(httpx.get(url).text) for url in served.metrics_urls]
        assert sum(issued) == 40
        assert all(issued), issued
    finally:
        code, stderr = stop(served)
    assert code == 0, stderr
    assert wait_for(lambda: not any(alive(pid) for pid in workers)), "workers outlived it"


def test_workers_stop_when_the_server_is_killed(tmp_path: Path) -> None:
    served = start(["--dev", "--processes", "2", "--grpc-port", "0", "--http-port", "0"], tmp_path)
    workers = children(served.process.pid)
    assert len(workers) == 2
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(timeout=10)
    # No chance to stop them: they notice they were orphaned and stop by themselves.
    assert wait_for(lambda: not any(alive(pid) for pid in workers)), "orphaned workers"


def thread_cpus(pid: int) -> set[frozenset[int]]:
    """The CPU sets of every thread of ``pid`` (a thread may end while we look)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.add(frozenset(os.sched_getaffinity(int(task.name))))
        except ProcessLookupError:
            continue
    return found


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_each_worker_runs_on_a_cpu_of_its_own_when_they_have_every_cpu(
    tmp_path: Path, mode: str
) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2 or quota_cpus() < 2:
        pytest.skip("needs 2 CPUs and a cgroup quota of at least 2 (auto would not pin)")
    given = set(allowed[:2])  # as a container's cpuset of 2 CPUs would be
    args = ["--dev", "--processes", "2", "--grpc-port", "0", "--http-port", "0"]
    served = start([*args, "--cpu-affinity", mode], tmp_path, cpus=given)
    try:
        workers = children(served.process.pid)
        assert len(workers) == 2, served.stdout
        # Every thread of a worker (grpc's, the HTTP loop's, the store's) inherits it.
        per_worker = [thread_cpus(pid) for pid in workers]
        if mode == "auto":
            # One mask per worker, of one CPU, and a different CPU each.
            masks = [next(iter(worker)) for worker in per_worker]
            assert all(len(worker) == 1 for worker in per_worker), per_worker
            assert all(len(mask) == 1 for mask in masks), per_worker
            assert sorted(cpu for mask in masks for cpu in mask) == sorted(given), per_worker
        else:
            assert per_worker == [{frozenset(given)}] * 2
        # The supervisor itself is not pinned.
        assert os.sched_getaffinity(served.process.pid) == given
        with httpx.Client(base_url=served.http_url) as http:
            client = new_client(served)
            response = http.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(client.client_id, client.secret),
            )
            assert response.status_code == 200, response.text
    finally:
        code, stderr = stop(served)
    assert code == 0, stderr
    assert ("one CPU per worker" in stderr) == (mode == "auto"), stderr
