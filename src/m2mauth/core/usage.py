"""Write-behind usage: client secrets (and so applications) and admin keys.

Issuing a token or authenticating an admin key must not write to the store
(the store would become the bottleneck, one row update per call). Instead:

* :class:`UsageRecorder` coalesces, per client secret and UTC day, the latest
  use and the number of tokens issued, and writes them with one
  ``record_secret_usage`` call per flush (which also counts the application's
  tokens per day). ``last_used_at`` therefore lags by up to one flush interval.
* :class:`AdminKeyUsageRecorder` keeps the latest use of each admin key.

Both are flushed by the composition root's background job every few seconds
and on close. If the store is down, what could not be written is kept and
retried. Failed authentications go to :mod:`m2mauth.core.failures`.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime

from m2mauth.core.interfaces import Store
from m2mauth.core.models import AdminKeyUsage, SecretUsage

log = logging.getLogger("m2mauth.usage")


class UsageRecorder:
    """Coalesces secret usage in memory; thread-safe."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        # One entry per application, secret and day, so every entry's tokens
        # fall on one day (and secretless ones of two applications stay apart).
        self._pending: dict[tuple[str, str, date], SecretUsage] = {}

    def record(self, application_id: str, secret_id: str, when: datetime) -> None:
        """One token issued to the application with this secret; ``secret_id`` ""
        when it used none (private_key_jwt): then only the application's day
        is counted, as the store ignores usage of a secret it does not have."""
        key = (application_id, secret_id, when.astimezone(UTC).date())
        with self._lock:
            seen = self._pending.get(key)
            if seen is None:
                self._pending[key] = SecretUsage(secret_id, application_id, when, 1)
            else:
                self._pending[key] = SecretUsage(
                    secret_id,
                    application_id,
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
                for key, unwritten in batch.items():
                    newer = self._pending.get(key)
                    self._pending[key] = (
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


class AdminKeyUsageRecorder:
    """Keeps the latest use of each admin key in memory; thread-safe."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._pending: dict[str, datetime] = {}

    def record(self, admin_key_id: str, when: datetime) -> None:
        with self._lock:
            seen = self._pending.get(admin_key_id)
            self._pending[admin_key_id] = when if seen is None else max(seen, when)

    def flush(self) -> int:
        """Write the latest uses; on a store failure keep them and re-raise."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            with self._store.unit_of_work() as uow:
                uow.record_admin_key_usage(
                    [AdminKeyUsage(key_id, when) for key_id, when in sorted(batch.items())]
                )
        except Exception:
            with self._lock:
                for key_id, when in batch.items():
                    newer = self._pending.get(key_id)
                    self._pending[key_id] = when if newer is None else max(newer, when)
            raise
        return len(batch)
