"""Audit events: building them for writes, and listing them for readers."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from m2mauth.core import ids
from m2mauth.core.clock import Clock
from m2mauth.core.errors import InvalidField, NotFound
from m2mauth.core.interfaces import Store
from m2mauth.core.models import AuditEvent, AuditFilter, Principal
from m2mauth.core.pagination import Page, Pager, PageTokenCodec
from m2mauth.core.permissions import Permission, require


def event(
    now: datetime,
    actor: str,
    action: str,
    *,
    organization_id: str | None = None,
    application_id: str | None = None,
    target: str | None = None,
    details: dict[str, str] | None = None,
) -> AuditEvent:
    return AuditEvent(
        id=ids.new_id(ids.AUDIT_EVENT, int(now.timestamp() * 1000)),
        time=now,
        actor=actor,
        action=action,
        organization_id=organization_id,
        application_id=application_id,
        target=target,
        details=details or {},
    )


class AuditReader:
    def __init__(self, store: Store, pages: PageTokenCodec) -> None:
        self._store = store
        self._pages = pages

    def list(
        self,
        principal: Principal,
        flt: AuditFilter,
        requested_page_size: int,
        page_token: str,
    ) -> Page[AuditEvent]:
        require(principal, Permission.AUDIT_READ)
        if flt.start and flt.end and flt.end <= flt.start:
            raise InvalidField("end_time", "must be after start_time")
        if principal.organization_id is not None:
            if flt.organization_id and flt.organization_id != principal.organization_id:
                raise NotFound("organization", flt.organization_id)
            flt = dataclasses.replace(flt, organization_id=principal.organization_id)
        filters = {
            "org": flt.organization_id or "",
            "app": flt.application_id or "",
            "action": flt.action or "",
            "actor": flt.actor or "",
            "start": flt.start.isoformat() if flt.start else "",
            "end": flt.end.isoformat() if flt.end else "",
        }
        pager = Pager(self._pages, "audit", filters, requested_page_size, page_token)
        with self._store.reading() as uow:
            rows = uow.list_audit_events(flt, before_id=pager.cursor, limit=pager.fetch)
        return pager.page(rows)


PURGE_BATCH = 500
# Per maintenance round; what is left waits for the next round, so a large
# backlog never holds the writer for long.
PURGE_BATCHES_PER_ROUND = 20


class AuditRetention:
    """Deletes audit events older than the retention period, in small batches."""

    def __init__(self, store: Store, clock: Clock, *, retention_days: int) -> None:
        self._store = store
        self._clock = clock
        self._retention = timedelta(days=retention_days)

    def purge(self) -> int:
        """One round: at most PURGE_BATCHES_PER_ROUND batches; return how many went."""
        if not self._retention:
            return 0  # 0 days: keep everything
        before = self._clock() - self._retention
        purged = 0
        for _ in range(PURGE_BATCHES_PER_ROUND):
            with self._store.unit_of_work() as uow:
                deleted = uow.purge_audit_events(before, limit=PURGE_BATCH)
            purged += deleted
            if deleted < PURGE_BATCH:
                break
        return purged
