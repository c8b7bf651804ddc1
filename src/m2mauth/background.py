"""Periodic work of one server process, on daemon threads the composition root owns.

Each job runs every ``interval`` seconds until :meth:`BackgroundJobs.close`;
a failing round is logged and the next round retries (a store that is down
is a warning, not a crash). ``close`` stops the threads, bounded, so a job
stuck on an unreachable store cannot hang shutdown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from m2mauth.core.errors import StoreUnavailable

log = logging.getLogger("m2mauth.background")

JOIN_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval: float
    run: Callable[[], None]


class BackgroundJobs:
    def __init__(self, jobs: list[Job]) -> None:
        self._jobs = jobs
        self._stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start one thread per job. Idempotent."""
        if self.threads:
            return
        for job in self._jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=job.name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def close(self) -> None:
        """Stop the threads (each waited for at most JOIN_TIMEOUT_SECONDS). Idempotent."""
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout=JOIN_TIMEOUT_SECONDS)

    def _loop(self, job: Job) -> None:
        while not self._stop.wait(job.interval):
            try:
                job.run()
            except StoreUnavailable as exc:
                # The store is down: keep going, the next round retries.
                log.warning("background %s: store unavailable: %s", job.name, exc.__cause__ or exc)
            except Exception:
                log.exception("background %s failed", job.name)
