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

A worker never outlives its supervisor, whenever the supervisor dies (SIGKILL,
the OOM killer), even while the worker is still starting: on Linux the kernel
sends it SIGTERM when the supervisor dies (PR_SET_PDEATHSIG, asked for as the
worker's first act, after which it checks that the supervisor has not died
already); everywhere, a thread waits on multiprocessing's pipe from the
supervisor, which reads end-of-file when the supervisor is gone. Either way the
worker stops gracefully, and exits anyway once the grace period and a margin
are over.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess

from m2mauth import logs
from m2mauth.cpu_affinity import pin_to, worker_cpus
from m2mauth.http.server import bind
from m2mauth.startup import Prepared, StartupError, start_serving
from m2mauth.tls import on_sighup

log = logging.getLogger("m2mauth.workers")

READY_TIMEOUT_SECONDS = 60.0
RESTART_BACKOFF_SECONDS = 1.0
CTX = multiprocessing.get_context("spawn")


# Beyond the grace period: what a worker may take to stop (closing the store,
# the final flush) before the supervisor kills it, or an orphan exits on its own.
STOP_MARGIN_SECONDS = 10.0
# prctl(2): "the signal that the calling process will get when its parent dies".
PR_SET_PDEATHSIG = 1
EXIT_ORPHANED = 4


def worker_main(
    prepared: Prepared,
    index: int,
    ready: multiprocessing.synchronize.Event,
    supervisor: int,
    cpu: int | None = None,
) -> None:
    """The body of one worker process; ``supervisor`` is the pid that spawned it,
    ``cpu`` the one it runs on (see m2mauth.cpu_affinity), None for any."""
    # First of all: from here on the kernel ends this worker with its supervisor.
    _signal_on_parent_death(signal.SIGTERM)
    if os.getppid() != supervisor:
        # The supervisor died before the line above (while this process was being
        # spawned or importing): nobody will signal it, so it leaves now.
        raise SystemExit(EXIT_ORPHANED)
    # Before any thread starts: they inherit it.
    unpinned = pin_to(cpu) if cpu is not None else ""
    settings = prepared.settings
    logs.configure(settings.log_level, settings.log_format)
    if unpinned:
        log.warning("worker %d: %s", index, unpinned)
    stop = threading.Event()
    _stop_on_signal_or_orphaned(stop, settings.grace_period_seconds + STOP_MARGIN_SECONDS)
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


def _signal_on_parent_death(sig: int) -> None:
    """Ask the kernel for ``sig`` when the parent dies (Linux). Elsewhere, or if
    refused, the pipe watched by :func:`_stop_on_signal_or_orphaned` still ends
    the worker."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:  # no libc, or no prctl in it
        log.warning("prctl(PR_SET_PDEATHSIG) is unavailable: %s", exc)


def _stop_on_signal_or_orphaned(stop: threading.Event, deadline: float) -> None:
    """Set ``stop`` on SIGTERM or SIGINT, or when the supervisor is gone; then exit
    anyway after ``deadline`` seconds, as nobody may be left to kill this worker.

    The signal handler only writes to a pipe: a handler that set the Event itself
    could run inside ``stop.set()`` on the main thread and deadlock on its lock
    (see m2mauth.cli.stop_on_signals), and a worker gets a signal twice when
    Ctrl+C reaches the whole process group and the supervisor then sends SIGTERM.
    """
    signalled, wake = os.pipe()

    def on_signal(*_: object) -> None:
        os.write(wake, b"!")

    for sig in (signal.SIGTERM, signal.SIGINT):
        # SIGINT too: Ctrl+C in a terminal reaches the whole process group, and
        # the parent then asks for the same graceful stop with SIGTERM.
        signal.signal(sig, on_signal)
    parent = multiprocessing.parent_process()
    # multiprocessing's own pipe from the supervisor: end-of-file once it is gone,
    # however it died. (None only outside a spawned process, as in tests.)
    watched: list[int] = [signalled] + ([parent.sentinel] if parent is not None else [])

    def watch() -> None:
        woken = multiprocessing.connection.wait(watched)
        if signalled not in woken:
            log.error("the supervisor is gone; stopping")
        stop.set()
        time.sleep(deadline)
        log.error("still stopping after %g s; exiting", deadline)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()


class Workers:
    def __init__(self, prepared: Prepared) -> None:
        self._prepared = prepared
        self._procs: list[SpawnProcess] = []
        self._stopping = threading.Event()
        settings = prepared.settings
        self._cpus = worker_cpus(settings.processes, settings.cpu_affinity)

    def _cpu(self, index: int) -> int | None:
        return self._cpus[index] if self._cpus else None

    def _spawn(self, index: int) -> tuple[SpawnProcess, multiprocessing.synchronize.Event]:
        ready = CTX.Event()
        # The worker is signalled when the thread spawning it ends (PR_SET_PDEATHSIG
        # follows the thread): the main thread at start, the watch thread for a
        # restart; both last until the workers are asked to stop anyway.
        proc = CTX.Process(
            target=worker_main,
            args=(self._prepared, index, ready, os.getpid(), self._cpu(index)),
            name=f"m2mauth-worker-{index}",
            daemon=False,
        )
        proc.start()
        return proc, ready

    def start(self) -> None:
        """Start every worker; raise StartupError unless all are serving."""
        if self._cpus:
            cpus = ", ".join(map(str, self._cpus))
            log.info("one CPU per worker (--cpu-affinity auto): %s", cpus)
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
            proc.join(grace + STOP_MARGIN_SECONDS)
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
    try:
        scheme = "https" if settings.http_tls() else "http"
        banner(
            (
                f"{settings.grpc_host}:{settings.grpc_port}",
                f"{scheme}://{settings.http_host}:{settings.http_port}",
            )
        )
        stop.wait()
    finally:
        # Also when the banner fails (stdout closed): otherwise the interpreter's exit
        # waits for the non-daemon workers, which serve on, forever.
        uninstall()
        log.info("stopping %d workers", settings.processes)
        workers.stop(settings.grace_period_seconds)
    return 0
