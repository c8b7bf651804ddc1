"""Write-behind for the token endpoint: secret usage and failure audit events.

Issuing a token must not write to the store (the store would become the
bottleneck, one row update per token). Instead:

* :class:`UsageRecorder` coalesces, per client secret, the latest use and the
  number of tokens issued, and writes them with one ``record_secret_usage``
  call per flush. ``last_used_at`` therefore lags by up to one flush interval.
* :class:`AuditQueue` holds audit events of failed authentications in a
  bounded queue. A flood of bad requests fills it and the surplus is dropped
  and counted (and logged), so attackers cannot make the store the
  bottleneck; the queue is drained in batches, one unit of work per flush.

Both are flushed by the background thread of
:class:`~m2mauth.core.tokens.TokenComponents` every few seconds and on close.
If the store is down, what could not be written is kept (bounded) and retried.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import datetime

from m2mauth.core.interfaces import Store
from m2mauth.core.models import AuditEvent, ClientSecret, SecretUsage

log = logging.getLogger("m2mauth.usage")

DEFAULT_AUDIT_QUEUE_SIZE = 10_000
# At most this many events per unit of work, so one flush is never huge.
AUDIT_BATCH = 1_000


class UsageRecorder:
    """Coalesces secret usage in memory; thread-safe."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._pending: dict[str, SecretUsage] = {}

    def record(self, secret: ClientSecret, when: datetime) -> None:
        with self._lock:
            seen = self._pending.get(secret.id)
            if seen is None:
                self._pending[secret.id] = SecretUsage(secret.id, secret.application_id, when, 1)
            else:
                self._pending[secret.id] = SecretUsage(
                    secret.id,
                    secret.application_id,
                    max(seen.last_used_at, when),
                    seen.tokens_issued + 1,
                )

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write what has accumulated; return how many secrets were updated.

        On a store failure the usage is merged back, so it is written by a
        later flush, and the error propagates for the caller to log.
        """
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            with self._store.unit_of_work() as uow:
                uow.record_secret_usage(list(batch.values()))
        except Exception:
            with self._lock:
                for unwritten in batch.values():
                    newer = self._pending.get(unwritten.secret_id)
                    self._pending[unwritten.secret_id] = (
                        unwritten
                        if newer is None
                        else SecretUsage(
                            unwritten.secret_id,
                            unwritten.application_id,
                            max(unwritten.last_used_at, newer.last_used_at),
                            unwritten.tokens_issued + newer.tokens_issued,
                        )
                    )
            raise
        return len(batch)


class AuditQueue:
    """A bounded queue of audit events written in the background."""

    def __init__(self, store: Store, maxsize: int = DEFAULT_AUDIT_QUEUE_SIZE) -> None:
        self._store = store
        self._queue: queue.Queue[AuditEvent] = queue.Queue(maxsize=maxsize)
        self._lock = threading.Lock()
        self.dropped = 0  # events lost to a full queue since start
        self._dropped_unreported = 0

    def put(self, event: AuditEvent) -> None:
        """Enqueue without blocking; drop and count if full."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                self._dropped_unreported += 1

    def flush(self) -> int:
        """Write queued events in batches; return how many were written."""
        with self._lock:
            dropped, self._dropped_unreported = self._dropped_unreported, 0
        if dropped:
            log.warning(
                "audit queue full: dropped %d failure event(s)",
                dropped,
                extra={"dropped_audit_events": dropped},
            )
        written = 0
        while True:
            batch: list[AuditEvent] = []
            while len(batch) < AUDIT_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return written
            try:
                with self._store.unit_of_work() as uow:
                    for event in batch:
                        uow.add_audit_event(event)
            except Exception:
                for event in batch:  # keep them for the next flush, as room allows
                    self.put(event)
                raise
            written += len(batch)
