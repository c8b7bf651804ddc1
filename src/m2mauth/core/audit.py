"""Audit events: building them for writes, and listing them for readers."""

from __future__ import annotations

from datetime import datetime

from m2mauth.core import ids
from m2mauth.core.errors import InvalidField, NotFound
from m2mauth.core.interfaces import Store
from m2mauth.core.models import AuditEvent, AuditFilter, Principal
from m2mauth.core.pagination import Page, Pager, PageTokenCodec


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
        if flt.start and flt.end and flt.end <= flt.start:
            raise InvalidField("end_time", "must be after start_time")
        if principal.organization_id is not None:
            if flt.organization_id and flt.organization_id != principal.organization_id:
                raise NotFound("organization", flt.organization_id)
            flt = AuditFilter(
                organization_id=principal.organization_id,
                application_id=flt.application_id,
                start=flt.start,
                end=flt.end,
            )
        filters = {
            "org": flt.organization_id or "",
            "app": flt.application_id or "",
            "start": flt.start.isoformat() if flt.start else "",
            "end": flt.end.isoformat() if flt.end else "",
        }
        pager = Pager(self._pages, "audit", filters, requested_page_size, page_token)
        with self._store.reading() as uow:
            rows = uow.list_audit_events(flt, before_id=pager.cursor, limit=pager.fetch)
        return pager.page(rows)
