"""``serve --processes N``: N worker processes sharing the gRPC and HTTP ports.

One Python process signs on one core (the GIL); the token path is CPU-bound,
so using every core takes processes. Each worker is a whole server (store
pool, key ring, client cache, gRPC and HTTP) binding the same ports with
SO_REUSEPORT, so the kernel spreads connections between them. What must be
consistent between workers already goes through the store: signing keys
(created once by the parent before any worker starts, rotation seen within
the key ring's refresh interval), revocations, secrets (each worker's client
cache is bounded by its TTL). Prometheus ``/metrics`` are per worker, each on a
port of its own (--metrics-port + i, reserved by the parent), so every scrape
sees one whole process. SIGHUP to the parent is forwarded to every worker, which
reloads its TLS certificates.

Workers are started with ``spawn`` (never ``fork``: grpcio does not survive a
fork after it started threads) and restarted if one dies.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess

from m2mauth import logs
from m2mauth.http.server import bind
from m2mauth.startup import Prepared, StartupError, start_serving
from m2mauth.tls import on_sighup

log = logging.getLogger("m2mauth.workers")

READY_TIMEOUT_SECONDS = 60.0
RESTART_BACKOFF_SECONDS = 1.0
CTX = multiprocessing.get_context("spawn")


def worker_main(prepared: Prepared, index: int, ready: multiprocessing.synchronize.Event) -> None:
    """The body of one worker process."""
    settings = prepared.settings
    logs.configure(settings.log_level, settings.log_format)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # SIGINT too: Ctrl+C in a terminal reaches the whole process group, and
        # the parent then asks for the same graceful stop with SIGTERM.
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(
        target=_stop_when_orphaned, args=(os.getppid(), stop), name="orphan-watch", daemon=True
    ).start()
    # A SIGHUP forwarded before this worker can reload must not end it (the default).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        sock = bind(settings.http_host, settings.http_port, reuse_port=True)
        metrics_port = prepared.metrics_ports[index]
        metrics_sock = bind(settings.metrics_host, metrics_port, reuse_port=True)
        running = start_serving(prepared, sock, metrics_socket=metrics_sock, reuse_port=True)
    except (StartupError, OSError) as exc:
        log.error("worker %d cannot start: %s", index, exc)
        raise SystemExit(3) from None
    uninstall = on_sighup(running.reload_tls)
    ready.set()
    stop.wait()
    uninstall()
    running.stop()
    sock.close()
    metrics_sock.close()


def _stop_when_orphaned(parent: int, stop: threading.Event) -> None:
    # A parent killed without a chance to stop us (SIGKILL, OOM) must not leave
    # workers serving on the ports: when re-parented, stop too.
    while not stop.wait(1.0):
        if os.getppid() != parent:
            log.error("the parent process is gone; stopping")
            stop.set()


class Workers:
    def __init__(self, prepared: Prepared) -> None:
        self._prepared = prepared
        self._procs: list[SpawnProcess] = []
        self._stopping = threading.Event()

    def _spawn(self, index: int) -> tuple[SpawnProcess, multiprocessing.synchronize.Event]:
        ready = CTX.Event()
        proc = CTX.Process(
            target=worker_main,
            args=(self._prepared, index, ready),
            name=f"m2mauth-worker-{index}",
            daemon=False,
        )
        proc.start()
        return proc, ready

    def start(self) -> None:
        """Start every worker; raise StartupError unless all are serving."""
        started = [self._spawn(i) for i in range(self._prepared.settings.processes)]
        self._procs = [proc for proc, _ in started]
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for index, (proc, ready) in enumerate(started):
            while not ready.wait(0.1):
                if not proc.is_alive() or time.monotonic() > deadline:
                    self.stop(0)
                    raise StartupError(f"worker {index} did not start (see the log)", 3)
        threading.Thread(target=self._watch, name="workers-watch", daemon=True).start()

    def _watch(self) -> None:
        """Restart a worker that died; a crash must not shrink the server for good."""
        while not self._stopping.wait(RESTART_BACKOFF_SECONDS):
            for index, proc in enumerate(self._procs):
                if proc.is_alive() or self._stopping.is_set():
                    continue
                log.error("worker %d exited with %s; restarting it", index, proc.exitcode)
                self._procs[index], _ = self._spawn(index)

    def forward_sighup(self) -> None:
        """Ask every worker to reload its certificates."""
        for proc in self._procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGHUP)

    def stop(self, grace: float) -> None:
        self._stopping.set()
        for proc in self._procs:
            if proc.is_alive() and proc.pid is not None:
                proc.terminate()  # SIGTERM: the worker's graceful stop
        for proc in self._procs:
            proc.join(grace + 10)
            if proc.is_alive():
                log.error("worker %s did not stop in time; killing it", proc.name)
                proc.kill()
                proc.join(5)


def serve_workers(
    prepared: Prepared,
    stop: threading.Event,
    banner: Callable[[tuple[str, str]], None],
) -> int:
    settings = prepared.settings
    workers = Workers(prepared)
    workers.start()
    uninstall = on_sighup(workers.forward_sighup)
    scheme = "https" if settings.http_tls() else "http"
    banner(
        (
            f"{settings.grpc_host}:{settings.grpc_port}",
            f"{scheme}://{settings.http_host}:{settings.http_port}",
        )
    )
    stop.wait()
    uninstall()
    log.info("stopping %d workers", settings.processes)
    workers.stop(settings.grace_period_seconds)
    return 0
