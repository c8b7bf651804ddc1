"""Failed authentications, aggregated into a bounded audit trail.

Unauthenticated callers decide how often authentication fails, so a failure
must cost the store nothing on the request path and a bounded number of rows
in the end. :class:`FailedAttempts` counts failures in memory per minute and
per (actor, action, reason, source address), and writes one audit event per
such group once its minute is over (and everything on close), with the count
in ``details``. At most ``max_groups_per_minute`` groups are kept per minute;
the rest of that minute is counted in overflow groups whose actor and source
are ``(many)``: one per application attacked (so a flood against a real
client still shows against that client) and one per (action, reason) for
unknown clients. A flood therefore writes at most ``max_groups_per_minute``
rows a minute plus a few per application it targets, however many distinct
client ids or addresses it uses, and no attempt goes uncounted.

Nothing a caller presents is recorded unless it has the shape of one of our
identifiers: see :func:`presented_actor`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from m2mauth.core import audit, ids
from m2mauth.core.clock import Clock
from m2mauth.core.interfaces import Store
from m2mauth.core.models import AuditEvent

log = logging.getLogger("m2mauth.audit")

DEFAULT_MAX_GROUPS_PER_MINUTE = 100
# Groups kept in memory while the store is down; beyond, the oldest minutes go.
MAX_PENDING_GROUPS = 10_000
NONE = "(none)"
MANY = "(many)"
MALFORMED = "malformed:"
_FINGERPRINT_HEX = 12


def fingerprinter(key: bytes) -> Callable[[str], str]:
    """A keyed fingerprint: the same value always gives the same 12 hex characters,
    and without the key they reveal nothing about it (HMAC-SHA-256, truncated)."""

    def fingerprint(value: str) -> str:
        digest = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return digest.hexdigest()[:_FINGERPRINT_HEX]

    return fingerprint


def presented_actor(value: str, prefix: str, fingerprint: Callable[[str], str]) -> str:
    """What to record of an identifier a caller presented.

    A value with the shape of our ``prefix`` ids is recorded as it is: ids are
    not secrets. Anything else may be a secret typed in the wrong field (an
    admin key or a client secret as a client_id, a token): it is recorded as
    "malformed:" and its keyed fingerprint, so repeated attempts still
    correlate and the value itself is never stored or logged.
    """
    if not value:
        return NONE
    if ids.is_id(value, prefix):
        return value
    return MALFORMED + fingerprint(value)


@dataclass(frozen=True, slots=True)
class _Group:
    minute: datetime
    actor: str
    action: str
    reason: str
    source: str
    organization_id: str | None
    application_id: str | None


class FailedAttempts:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        max_groups_per_minute: int = DEFAULT_MAX_GROUPS_PER_MINUTE,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_groups = max_groups_per_minute
        self._lock = threading.Lock()
        self._counts: dict[_Group, int] = {}
        self._groups_per_minute: dict[datetime, int] = {}
        self.dropped = 0  # failures lost to MAX_PENDING_GROUPS since start

    def record(
        self,
        *,
        actor: str,
        action: str,
        reason: str,
        source: str,
        organization_id: str | None = None,
        application_id: str | None = None,
    ) -> None:
        """Count one failure. ``actor`` must already be safe to store (see presented_actor)."""
        minute = self._clock().astimezone(UTC).replace(second=0, microsecond=0)
        group = _Group(
            minute, actor, action, reason, source or NONE, organization_id, application_id
        )
        with self._lock:
            if group not in self._counts:
                if self._groups_per_minute.get(minute, 0) >= self._max_groups:
                    # Fold into one group per application (a flood cannot make
                    # more of those than there are applications) or, for
                    # unknown clients, one per action and reason.
                    group = _Group(
                        minute, MANY, action, reason, MANY, organization_id, application_id
                    )
                elif len(self._counts) >= MAX_PENDING_GROUPS:
                    self.dropped += 1
                    return
                if group not in self._counts:
                    self._groups_per_minute[minute] = self._groups_per_minute.get(minute, 0) + 1
            self._counts[group] = self._counts.get(group, 0) + 1

    def pending(self) -> int:
        with self._lock:
            return len(self._counts)

    def flush(self, *, final: bool = False) -> int:
        """Write the groups of minutes that are over (every group if ``final``);
        return how many events were written. On a store failure they are kept
        for the next flush and the error propagates."""
        current = self._clock().astimezone(UTC).replace(second=0, microsecond=0)
        with self._lock:
            ready = {g: n for g, n in self._counts.items() if final or g.minute < current}
            for group in ready:
                del self._counts[group]
            for minute in {g.minute for g in ready}:
                self._groups_per_minute.pop(minute, None)
        if not ready:
            return 0
        events = [self._event(group, count) for group, count in sorted(ready.items(), key=_order)]
        try:
            with self._store.unit_of_work() as uow:
                for event in events:
                    uow.add_audit_event(event)
        except Exception:
            with self._lock:
                for group, count in ready.items():
                    self._counts[group] = self._counts.get(group, 0) + count
            raise
        return len(events)

    @staticmethod
    def _event(group: _Group, count: int) -> AuditEvent:
        return audit.event(
            group.minute,
            group.actor,
            group.action,
            organization_id=group.organization_id,
            application_id=group.application_id,
            target=group.application_id,
            details={"reason": group.reason, "source": group.source, "count": str(count)},
        )


def _order(item: tuple[_Group, int]) -> tuple[datetime, str, str, str, str]:
    group = item[0]
    return (group.minute, group.action, group.actor, group.reason, group.source)
