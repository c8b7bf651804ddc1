"""The process lifecycle as operators meet it: a supervisor killed at any moment.

Real processes, real sockets, real SQLite.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.test_serve import M2MAUTH, clean_env, start
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the process tree from /proc"
)

PORTS_0 = ["--grpc-port", "0", "--http-port", "0"]


def marked_env(mark: str) -> dict[str, str]:
    """The environment of a server whose every descendant carries ``mark``: a
    process re-parented after its parent's death is still found by it."""
    return clean_env(LIFECYCLE_TEST_MARK=mark)


def marked_processes(mark: str) -> set[int]:
    """Live processes (zombies excluded) whose environment carries ``mark``."""
    needle = f"LIFECYCLE_TEST_MARK={mark}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.add(int(entry.name))
    return found


def refused(port: int) -> bool:
    """Nobody listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


# --- a supervisor killed at any moment ---------------------------------------------


# When to kill the supervisor: seconds after it was started, seconds after its first
# worker process appeared (spawned, importing, binding, opening the store), or once
# it serves. (On a 2-core machine the first worker appears about 2 s after the start,
# and the server is ready about 2 s later.)
KILL_TIMES = [
    ("started", 0.2),
    ("started", 0.8),
    ("started", 1.5),
    ("spawned", 0.0),
    ("spawned", 0.4),
    ("spawned", 1.0),
    ("ready", 0.0),
]


@pytest.mark.parametrize(("after", "delay"), KILL_TIMES, ids=[f"{a}+{d}" for a, d in KILL_TIMES])
def test_no_worker_outlives_a_supervisor_killed_with_sigkill(
    tmp_path: Path, after: str, delay: float
) -> None:
    """Whenever the supervisor of ``serve --processes 2`` dies without a chance to
    stop its workers (preparing, spawning them, while they start, once they serve),
    they stop too, and the ports are free."""
    mark = uuid.uuid4().hex
    env = marked_env(mark)
    args = ["--dev", "--processes", "2", *PORTS_0, "--grace-period-seconds", "1"]
    ports: list[int] = []
    if after == "ready":
        served = start(args, tmp_path, env)
        supervisor = served.process
        ports = [served.port, int(served.http_url.rsplit(":", 1)[1])]
        assert len(marked_processes(mark)) >= 3, served.stdout  # the supervisor and 2 workers
    else:
        supervisor = subprocess.Popen(
            [*M2MAUTH, "serve", *args, "--metrics-port", "0"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        if after == "spawned":
            # The supervisor, multiprocessing's resource tracker, a worker.
            assert wait_for(lambda: len(marked_processes(mark)) >= 3, 30, 0.01)
    time.sleep(delay)
    seen = marked_processes(mark)
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(timeout=10)
    try:
        # Workers stop gracefully (1 s of grace here) or, not yet serving, at once.
        assert wait_for(lambda: not marked_processes(mark), timeout=15), (
            f"left behind: {sorted(marked_processes(mark))} (of {sorted(seen)})"
        )
        for port in ports:
            assert refused(port), f"something still listens on {port}"
    finally:
        for pid in marked_processes(mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
