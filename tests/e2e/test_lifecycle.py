"""The process lifecycle as operators meet it: SIGTERM under load and during a
database hang, a supervisor killed at any moment, an edge whose core restarts.

Real processes, real sockets, real SQLite. The database "hangs" by the test
holding SQLite's writer lock: a write (a revocation) then waits for it, up to
the store's busy timeout (5 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from m2mauth.v1 import token_service_pb2 as token_pb
from m2mauth.v1 import token_service_pb2_grpc
from tests.e2e.test_serve import M2MAUTH, Client, Served, clean_env, new_client, start
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the process tree from /proc"
)

PORTS_0 = ["--grpc-port", "0", "--http-port", "0"]
# The slow calls below wait on a locked database for longer than the default
# --store-timeout-seconds (2 s); a longer bound lets them outlive the grace period
# instead of failing fast with UNAVAILABLE, which is what these tests measure.
SLOW_STORE = ["--dev", *PORTS_0, "--store-timeout-seconds", "30"]
# What shutdown may take beyond the grace period: starting the drain, closing the
# listeners, the final flush on an idle database, the interpreter's exit.
MARGIN = 1.5
# How long before SIGTERM a call may have been sent and still meet the shutdown on
# its way in: the signal's delivery, the first steps of the stop, and a server
# busy on a loaded 2-core machine before it picks the call up. (Calls take a few
# milliseconds here, so one sent earlier than this is long answered.)
RACE_SECONDS = 0.5


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


@contextlib.contextmanager
def writer_lock(database: Path) -> Iterator[Callable[[], None]]:
    """Hold SQLite's writer lock (every write waits for it); yields its release."""
    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            conn.execute("ROLLBACK")

    try:
        yield release
    finally:
        release()
        conn.close()


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


# --- SIGTERM ------------------------------------------------------------------------


@dataclass
class Outcome:
    started: float
    ended: float
    ok: bool
    what: str


@dataclass
class Load:
    """Threads calling token and introspection over HTTP and gRPC until stopped."""

    served: Served
    client: Client
    token: str
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for target in (self._http, self._http, self._grpc, self._grpc):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _record(self, started: float, ok: bool, what: str) -> None:
        self.outcomes.append(Outcome(started, time.monotonic(), ok, what))

    def _http(self) -> None:
        auth = (self.client.client_id, self.client.secret)
        with httpx.Client(base_url=self.served.http_url, timeout=30) as http:
            for i in range(10**6):
                if self.stop.is_set():
                    return
                started = time.monotonic()
                try:
                    if i % 2:
                        r = http.post(
                            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=auth
                        )
                    else:
                        r = http.post(
                            "/oauth2/introspection", data={"token": self.token}, auth=auth
                        )
                except httpx.HTTPError as exc:
                    self._record(started, False, f"http: {exc!r}")
                    time.sleep(0.01)
                    continue
                self._record(started, r.status_code == 200, f"http {r.status_code} {r.text[:80]}")

    def _grpc(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.served.port}") as channel:
            tokens = token_service_pb2_grpc.TokenServiceStub(channel)
            for i in range(10**6):
                if self.stop.is_set():
                    return
                started = time.monotonic()
                try:
                    if i % 2:
                        tokens.IssueToken(
                            token_pb.IssueTokenRequest(
                                grant_type="client_credentials",
                                client_id=self.client.client_id,
                                client_secret=self.client.secret,
                            ),
                            timeout=30,
                        )
                    else:
                        tokens.Introspect(
                            token_pb.IntrospectRequest(
                                token=self.token,
                                client_id=self.client.client_id,
                                client_secret=self.client.secret,
                            ),
                            timeout=30,
                        )
                except grpc.RpcError as err:
                    self._record(started, False, f"grpc {err.code()} {err.details()}")
                    time.sleep(0.01)
                    continue
                self._record(started, True, "grpc OK")


def issue(served: Served, client: Client) -> str:
    r = httpx.post(
        f"{served.http_url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client.secret),
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


class SlowCalls:
    """A revocation over HTTP and one over gRPC, each waiting for the writer lock."""

    def __init__(self, served: Served, client: Client) -> None:
        self.http: httpx.Response | Exception | None = None
        self.grpc: str | None = None
        self.http_done = 0.0
        self._threads = [
            threading.Thread(target=self._over_http, args=(served, client, issue(served, client))),
            threading.Thread(target=self._over_grpc, args=(served, client, issue(served, client))),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)

    def _over_http(self, served: Served, client: Client, token: str) -> None:
        try:
            self.http = httpx.post(
                f"{served.http_url}/oauth2/revoke",
                data={"token": token},
                auth=(client.client_id, client.secret),
                timeout=30,
            )
        except httpx.HTTPError as exc:
            self.http = exc
        self.http_done = time.monotonic()

    def _over_grpc(self, served: Served, client: Client, token: str) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
            try:
                token_service_pb2_grpc.TokenServiceStub(channel).RevokeToken(
                    token_pb.RevokeTokenRequest(
                        token=token, client_id=client.client_id, client_secret=client.secret
                    ),
                    timeout=30,
                )
                self.grpc = "OK"
            except grpc.RpcError as err:
                self.grpc = f"{err.code()} {err.details()}"


class HealthWatch:
    """A grpc.health.v1 Watch stream, recording when it first says NOT_SERVING."""

    def __init__(self, port: int) -> None:
        self.not_serving_at = 0.0
        self._serving = threading.Event()
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        assert self._serving.wait(10), "no SERVING from the health Watch"

    def _watch(self) -> None:
        replies = health_pb2_grpc.HealthStub(self._channel).Watch(
            health_pb2.HealthCheckRequest(service="")
        )
        with contextlib.suppress(grpc.RpcError):
            for reply in replies:
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    self._serving.set()
                else:
                    self.not_serving_at = time.monotonic()
                    # As a load balancer would, go elsewhere. (A Watch left open
                    # is an RPC in flight: the drain would wait for it.)
                    replies.cancel()
                    return

    def close(self) -> None:
        self._channel.close()
        self._thread.join(timeout=5)


def test_sigterm_under_load_loses_no_request_in_flight(tmp_path: Path) -> None:
    """SIGTERM while token and introspection calls flow over both transports and a
    slow call is in flight on each: health says NOT_SERVING at once, while the
    listeners still drain; every call sent before the signal succeeds; the whole
    stop takes the slowest call, not one transport's drain after the other's."""
    grace = 4.0
    served = start([*SLOW_STORE, "--grace-period-seconds", str(grace)], tmp_path)
    client = new_client(served)
    load = Load(served, client, issue(served, client))
    slow = SlowCalls(served, client)
    watch = HealthWatch(served.port)
    try:
        with writer_lock(tmp_path / "var" / "m2mauth.db") as release:
            slow.start()
            load.start()
            time.sleep(1.0)
            signalled = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            time.sleep(1.5)  # the slow calls wait this long for the database
            release()
            code = served.process.wait(timeout=3 * grace)
        stopped = time.monotonic()
    finally:
        load.join()
        slow.join()
        watch.close()
        served.process.kill()
    stderr = served.process.stderr.read() if served.process.stderr else ""
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr

    assert isinstance(slow.http, httpx.Response), slow.http
    assert slow.http.status_code == 200, slow.http.text
    assert slow.grpc == "OK"
    # Every call sent before the signal succeeds, except one sent in the instant before
    # it, which may meet the shutdown on its way in: grpc core cancels the calls it has
    # received but grpcio has not yet handed to a handler (grpcio asks for one call per
    # method at a time; the core's shutdown kills the others), and uvicorn closes a
    # keep-alive connection that is idle as the request reaches it. Such a call fails as
    # a refusal (CANCELLED, UNAVAILABLE, a closed connection), never with an answer.
    before = [o for o in load.outcomes if o.started < signalled - RACE_SECONDS]
    racing = [o for o in load.outcomes if signalled - RACE_SECONDS <= o.started < signalled]
    assert len(before) > 50, f"too little load to say anything: {len(before)}"
    failed = [f"{o.what} (sent {signalled - o.started:.3f} s before)" for o in before if not o.ok]
    assert failed == [], failed
    refusals = ("grpc StatusCode.CANCELLED", "grpc StatusCode.UNAVAILABLE", "http: ")
    answered = [o.what for o in racing if not o.ok and not o.what.startswith(refusals)]
    assert answered == [], answered
    # Health goes first: NOT_SERVING while the HTTP listener is still draining.
    assert watch.not_serving_at, "health never said NOT_SERVING"
    assert watch.not_serving_at - signalled < 0.5, watch.not_serving_at - signalled
    assert watch.not_serving_at < slow.http_done
    assert stopped - signalled < grace, f"took {stopped - signalled:.2f} s"


def test_sigterm_during_a_database_hang_answers_503_within_the_grace_period(
    tmp_path: Path,
) -> None:
    """Calls still waiting for a hung database when the grace period ends: the HTTP
    one gets RFC 6749's JSON 503 (never a plain-text 500), and the server is gone
    within the grace period plus a small margin, not twice the grace period."""
    grace = 3.0
    served = start([*SLOW_STORE, "--grace-period-seconds", str(grace)], tmp_path)
    client = new_client(served)
    slow = SlowCalls(served, client)
    watch = HealthWatch(served.port)
    try:
        with writer_lock(tmp_path / "var" / "m2mauth.db") as release:
            slow.start()
            time.sleep(0.5)
            signalled = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            # The database answers again just after the grace period, in time for
            # the final flush, so the stop measures the drain alone.
            time.sleep(grace + 0.3)
            release()
            code = served.process.wait(timeout=3 * grace)
        took = time.monotonic() - signalled
    finally:
        slow.join()
        watch.close()
        served.process.kill()
    stderr = served.process.stderr.read() if served.process.stderr else ""
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert isinstance(slow.http, httpx.Response), f"no answer: {slow.http!r}"
    assert slow.http.status_code == 503, slow.http.text
    assert slow.http.headers["content-type"] == "application/json"
    assert slow.http.json()["error"] == "temporarily_unavailable"
    assert slow.http.headers["retry-after"]
    # RFC 6749 section 5.1, as every other token-endpoint answer.
    assert slow.http.headers["cache-control"] == "no-store"
    assert slow.http.headers["pragma"] == "no-cache"
    assert grace - 0.2 < slow.http_done - signalled < grace + 1.0
    assert watch.not_serving_at - signalled < 0.5, watch.not_serving_at - signalled
    print(f"stopped {took:.2f} s after SIGTERM, with {grace:g} s of grace")
    assert took < grace + 0.3 + MARGIN, f"took {took:.2f} s"


# --- the edge and its core ----------------------------------------------------------


def start_edge(core_port: int, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    edge = subprocess.Popen(
        [
            *M2MAUTH,
            "serve-http",
            "--upstream",
            f"127.0.0.1:{core_port}",
            "--http-port",
            "0",
            "--metrics-port",
            "0",
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert edge.stdout is not None
    for line in edge.stdout:
        if line.startswith("OAuth over HTTP on "):
            return edge, line.split()[4].rstrip(",")
    edge.kill()
    raise AssertionError(f"the edge did not start: {edge.stderr.read() if edge.stderr else ''}")


def test_edge_answers_again_within_a_second_or_so_of_its_core_coming_back(
    tmp_path: Path,
) -> None:
    """The core stops for a while (the edge answers 503 meanwhile, and keeps trying);
    once it serves again on the same port, the edge issues tokens within ~1 s, not
    after grpcio's default reconnect backoff (up to 2 minutes)."""
    core = start(["--dev", *PORTS_0, "--grace-period-seconds", "1"], tmp_path)
    client = new_client(core)
    edge, edge_url = start_edge(core.port, tmp_path)
    auth = (client.client_id, client.secret)
    form = {"grant_type": "client_credentials"}
    try:
        with httpx.Client(base_url=edge_url, timeout=10) as http:
            assert http.post("/oauth2/token", data=form, auth=auth).status_code == 200
            assert http.get("/readyz").status_code == 200
            core.process.send_signal(signal.SIGTERM)
            core.process.wait(timeout=10)
            # Down for a while, with traffic: grpcio backs off further each time.
            down_until = time.monotonic() + 8
            while time.monotonic() < down_until:
                r = http.post("/oauth2/token", data=form, auth=auth)
                assert r.status_code == 503, r.text
                assert r.json()["error"] == "temporarily_unavailable"
                time.sleep(0.2)
            assert http.get("/readyz").status_code == 503

            # The same port, which the kernel chose for the first core: the edge's
            # --upstream names it.
            core = start(["--dev", "--grpc-port", str(core.port), "--http-port", "0"], tmp_path)
            back = time.monotonic()
            while http.post("/oauth2/token", data=form, auth=auth).status_code != 200:
                assert time.monotonic() - back < 20, "the edge never recovered"
                time.sleep(0.05)
            recovered = time.monotonic() - back
            assert http.get("/readyz").status_code == 200
        print(f"edge recovered {recovered:.2f} s after the core was back")
        assert recovered < 2.5, f"the edge took {recovered:.2f} s to use the core again"
    finally:
        edge.terminate()
        core.process.terminate()
        edge.wait(timeout=30)
        core.process.wait(timeout=30)
