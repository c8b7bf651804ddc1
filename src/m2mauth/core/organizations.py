"""Organization management: the platform's customers and partners."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from m2mauth.core import audit, ids, validation
from m2mauth.core.changes import Change, Kind
from m2mauth.core.clock import Clock
from m2mauth.core.errors import FailedPrecondition, NotFound
from m2mauth.core.interfaces import Store, UnitOfWork
from m2mauth.core.models import Organization, Principal
from m2mauth.core.pagination import Page, Pager, PageTokenCodec
from m2mauth.core.permissions import Permission, require, require_environment
from m2mauth.core.row_locks import read_for_update

UPDATABLE = ("name", "external_id", "enabled")
RESOURCE = "organization"
READ = Permission.ORGANIZATIONS_READ
WRITE = Permission.ORGANIZATIONS_WRITE


def visible_organization(uow: UnitOfWork, principal: Principal, org_id: str) -> Organization:
    """Fetch an organization the principal may see; NOT_FOUND otherwise.

    Permission is checked before existence (AIP-193), so another tenant's
    organization is indistinguishable from a missing one.
    """
    validation.resource_id("id", org_id, ids.ORGANIZATION, RESOURCE)
    if not principal.can_see(org_id):
        raise NotFound(RESOURCE, org_id)
    org = uow.get_organization(org_id)
    if org is None:
        raise NotFound(RESOURCE, org_id)
    return org


class Organizations:
    def __init__(self, store: Store, pages: PageTokenCodec, clock: Clock) -> None:
        self._store = store
        self._pages = pages
        self._clock = clock

    def create(
        self, principal: Principal, name: str, external_id: str, enabled: bool | None
    ) -> Organization:
        require_environment(principal, WRITE, "create organizations")
        now = self._clock()
        org = Organization(
            id=ids.new_id(ids.ORGANIZATION, int(now.timestamp() * 1000)),
            name=validation.name("organization.name", name),
            external_id=validation.external_id(external_id),
            enabled=True if enabled is None else enabled,
            created_at=now,
            updated_at=now,
        )
        with self._store.unit_of_work() as uow:
            uow.add_organization(org)
            uow.add_audit_event(
                audit.event(
                    now,
                    principal.admin_key_id,
                    "organization.create",
                    organization_id=org.id,
                    target=org.id,
                )
            )
        return org

    def get(self, principal: Principal, org_id: str) -> Organization:
        require(principal, READ)
        with self._store.reading() as uow:
            return visible_organization(uow, principal, org_id)

    def list(
        self, principal: Principal, requested_page_size: int, token: str
    ) -> Page[Organization]:
        require(principal, READ)
        pager = Pager(self._pages, "organizations", {}, requested_page_size, token)
        with self._store.reading() as uow:
            rows = uow.list_organizations(
                after_id=pager.cursor, limit=pager.fetch, only_id=principal.organization_id
            )
        return pager.page(rows)

    def update(
        self,
        principal: Principal,
        org_id: str,
        mask: Sequence[str],
        name: str,
        external_id: str,
        enabled: bool | None,
    ) -> Organization:
        require(principal, WRITE)
        paths = validation.update_mask(mask, UPDATABLE)
        changes: dict[str, object] = {}
        if "name" in paths:
            changes["name"] = validation.name("organization.name", name)
        if "external_id" in paths:
            changes["external_id"] = validation.external_id(external_id)
        if "enabled" in paths:
            # An unset optional bool in the mask means the proto default, false.
            changes["enabled"] = bool(enabled)
        with self._store.unit_of_work() as uow:
            current = read_for_update(
                uow, principal, org_id, visible_organization, uow.lock_organization
            )
            require_environment(principal, WRITE, "update organizations")
            now = self._clock()
            updated = dataclasses.replace(current, updated_at=now, **changes)  # type: ignore[arg-type]
            uow.update_organization(updated)
            uow.announce(Change(Kind.ORGANIZATION, org_id))
            uow.add_audit_event(
                audit.event(
                    now,
                    principal.admin_key_id,
                    "organization.update",
                    organization_id=org_id,
                    target=org_id,
                    details={"fields": ",".join(sorted(paths))},
                )
            )
        return updated

    def delete(self, principal: Principal, org_id: str, force: bool) -> None:
        require(principal, WRITE)
        with self._store.unit_of_work() as uow:
            visible_organization(uow, principal, org_id)
            require_environment(principal, WRITE, "delete organizations")
            apps = uow.count_applications(org_id)
            if apps and not force:
                raise FailedPrecondition(
                    f"organization {org_id!r} still has {apps} application(s); "
                    "delete them first or set force"
                )
            uow.delete_organization(org_id)
            uow.announce(Change(Kind.ORGANIZATION, org_id))
            uow.add_audit_event(
                audit.event(
                    self._clock(),
                    principal.admin_key_id,
                    "organization.delete",
                    organization_id=org_id,
                    target=org_id,
                    details={"applications_deleted": str(apps)},
                )
            )

    def revoke_tokens(self, principal: Principal, org_id: str) -> datetime:
        """Kill switch: every token of the organization issued until now is revoked."""
        require(principal, WRITE)
        with self._store.unit_of_work() as uow:
            current = read_for_update(
                uow, principal, org_id, visible_organization, uow.lock_organization
            )
            now = self._clock()
            uow.update_organization(dataclasses.replace(current, tokens_revoked_before=now))
            uow.announce(Change(Kind.ORGANIZATION, org_id))
            uow.add_audit_event(
                audit.event(
                    now,
                    principal.admin_key_id,
                    "organization.revoke_tokens",
                    organization_id=org_id,
                    target=org_id,
                )
            )
        return now
