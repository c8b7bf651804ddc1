"""Admin keys: the credentials of the management plane, as a managed resource.

A key has a scope (the environment, or one organization) and a role (see
:mod:`m2mauth.core.permissions`). It is shown once, stored as a keyed hash
(see :mod:`m2mauth.core.credentials`), and checked against the store on every
call: revocation, expiry and the disabling or deletion of its organization
take effect on the next call, in every process and replica, with no cache to
wait for. Its last use is recorded in memory and written in the background.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime

from m2mauth.core import audit, ids, validation
from m2mauth.core.changes import Change, Kind
from m2mauth.core.clock import Clock
from m2mauth.core.credentials import (
    ADMIN_KEY_PREFIX,
    MAX_CREDENTIAL_LENGTH,
    CredentialHasher,
)
from m2mauth.core.errors import AdminKeyInvalid, InvalidField, NotFound
from m2mauth.core.failures import FailedAttempts, presented_actor
from m2mauth.core.interfaces import Store, UnitOfWork
from m2mauth.core.models import AdminKey, AdminKeyRole, Organization, Principal
from m2mauth.core.pagination import Page, Pager, PageTokenCodec
from m2mauth.core.permissions import Permission, no_wider, require
from m2mauth.core.row_locks import read_for_update
from m2mauth.core.usage import AdminKeyUsageRecorder

SYSTEM_ACTOR = "system"
RESOURCE = "admin_key"
UPDATABLE = ("name", "expire_time")
AUTHENTICATE_FAILED = "admin_key.authenticate_failed"
_REQUIRED = "an admin key is required: send the metadata authorization: Bearer <admin key>"
_NOT_VALID = "the admin key is not valid"


def visible_admin_key(uow: UnitOfWork, principal: Principal, key_id: str) -> AdminKey:
    """A key the principal may see: an environment key sees every key, an
    organization key those of its organization; NOT_FOUND otherwise (AIP-193)."""
    validation.resource_id("id", key_id, ids.ADMIN_KEY, RESOURCE)
    key = uow.get_admin_key(key_id)
    if key is None or not (
        principal.is_environment or key.organization_id == principal.organization_id
    ):
        raise NotFound(RESOURCE, key_id)
    return key


def refusal(key: AdminKey | None, org: Organization | None, now: datetime) -> str:
    """Why ``key`` (with ``org``, its organization when scoped) may not be used
    now, as a reason for the audit log; "" when it may. Shared with whatever
    else resumes a key by id (the console's sessions)."""
    if key is None:
        return "unknown_key"
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    if key.organization_id is not None and (org is None or not org.enabled):
        return "organization_disabled" if org is not None else "organization_missing"
    return ""


def _future(field: str, value: datetime | None, now: datetime) -> datetime | None:
    if value is not None and value <= now:
        raise InvalidField(field, "must be in the future")
    return value


class AdminKeys:
    def __init__(
        self,
        store: Store,
        hasher: CredentialHasher,
        clock: Clock,
        pages: PageTokenCodec,
        *,
        failures: FailedAttempts | None = None,
        fingerprint: Callable[[str], str] | None = None,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._pages = pages
        self._failures = failures
        self._fingerprint = fingerprint or (lambda value: "")
        self.usage = AdminKeyUsageRecorder(store)

    # --- the managed resource ---------------------------------------------------
    def create(
        self,
        principal: Principal,
        name: str,
        organization_id: str | None,
        role: AdminKeyRole | None,
        expires_at: datetime | None,
    ) -> tuple[AdminKey, str]:
        """Create a key no wider than the caller's; return it and its plaintext (shown once)."""
        require(principal, Permission.ADMIN_KEYS_WRITE)
        # An organization key's keys are of its organization unless it says otherwise.
        scope = organization_id or principal.organization_id
        chosen = role or AdminKeyRole.ADMIN
        no_wider(principal, chosen, scope)
        return self._create(
            principal.admin_key_id,
            validation.name("admin_key.name", name),
            scope,
            chosen,
            _future("admin_key.expire_time", expires_at, self._clock()),
        )

    def create_local(
        self,
        organization_id: str | None,
        *,
        name: str = "",
        role: AdminKeyRole = AdminKeyRole.ADMIN,
        expires_at: datetime | None = None,
    ) -> tuple[AdminKey, str]:
        """For the local bootstrap command (database access, no key yet): actor "system"."""
        return self._create(
            SYSTEM_ACTOR,
            validation.name("admin_key.name", name or "bootstrap"),
            organization_id,
            role,
            _future("admin_key.expire_time", expires_at, self._clock()),
        )

    def _create(
        self,
        actor: str,
        name: str,
        organization_id: str | None,
        role: AdminKeyRole,
        expires_at: datetime | None,
    ) -> tuple[AdminKey, str]:
        plaintext = self._hasher.generate(ADMIN_KEY_PREFIX)
        now = self._clock()
        key = AdminKey(
            id=ids.new_id(ids.ADMIN_KEY, int(now.timestamp() * 1000)),
            key_hash=self._hasher.hash(plaintext),
            hint=self._hasher.hint(plaintext),
            organization_id=organization_id,
            created_at=now,
            name=name,
            role=role,
            expires_at=expires_at,
            created_by=actor,
        )
        with self._store.unit_of_work() as uow:
            if organization_id is not None and uow.get_organization(organization_id) is None:
                raise NotFound("organization", organization_id)
            uow.add_admin_key(key)
            uow.add_audit_event(
                audit.event(
                    now,
                    actor,
                    "admin_key.create",
                    organization_id=organization_id,
                    target=key.id,
                    details={"role": role.value},
                )
            )
        return key, plaintext

    def bootstrap(self) -> str | None:
        """On an empty database, create an environment admin key and return it once."""
        with self._store.reading() as uow:
            if uow.count_admin_keys() > 0:
                return None
        _, plaintext = self.create_local(None, name="first admin key")
        return plaintext

    def get(self, principal: Principal, key_id: str) -> AdminKey:
        require(principal, Permission.ADMIN_KEYS_READ)
        with self._store.reading() as uow:
            return visible_admin_key(uow, principal, key_id)

    def list(
        self,
        principal: Principal,
        organization_id: str,
        show_revoked: bool,
        requested_page_size: int,
        token: str,
    ) -> Page[AdminKey]:
        """Oldest first; one organization's keys, or every key the caller can see."""
        require(principal, Permission.ADMIN_KEYS_READ)
        if principal.organization_id is not None and organization_id not in (
            "",
            principal.organization_id,
        ):
            raise NotFound("organization", organization_id)
        scope = organization_id or principal.organization_id
        filters = {"org": scope or "", "revoked": "1" if show_revoked else "0"}
        pager = Pager(self._pages, "admin_keys", filters, requested_page_size, token)
        with self._store.reading() as uow:
            rows = uow.list_admin_keys(
                organization_id=scope,
                include_revoked=show_revoked,
                after_id=pager.cursor,
                limit=pager.fetch,
            )
        return pager.page(rows)

    def update(
        self,
        principal: Principal,
        key_id: str,
        mask: Sequence[str],
        name: str,
        expires_at: datetime | None,
    ) -> AdminKey:
        require(principal, Permission.ADMIN_KEYS_WRITE)
        paths = validation.update_mask(mask, UPDATABLE)
        now = self._clock()
        changes: dict[str, object] = {}
        if "name" in paths:
            changes["name"] = validation.name("admin_key.name", name)
        if "expire_time" in paths:
            changes["expires_at"] = _future("admin_key.expire_time", expires_at, now)
        with self._store.unit_of_work() as uow:
            current = read_for_update(uow, principal, key_id, visible_admin_key, uow.lock_admin_key)
            if current.revoked_at is not None:
                raise InvalidField("id", "the admin key is revoked; create another")
            updated = dataclasses.replace(current, **changes)  # type: ignore[arg-type]
            uow.update_admin_key(updated)
            uow.announce(Change(Kind.ADMIN_KEY, key_id))
            uow.add_audit_event(
                audit.event(
                    now,
                    principal.admin_key_id,
                    "admin_key.update",
                    organization_id=current.organization_id,
                    target=key_id,
                    details={"fields": ",".join(sorted(paths))},
                )
            )
        return updated

    def revoke(self, principal: Principal, key_id: str) -> AdminKey:
        """Revoke at once; revoking a revoked key changes nothing."""
        require(principal, Permission.ADMIN_KEYS_WRITE)
        now = self._clock()
        with self._store.unit_of_work() as uow:
            current = read_for_update(uow, principal, key_id, visible_admin_key, uow.lock_admin_key)
            if current.revoked_at is not None:
                return current
            revoked = dataclasses.replace(current, revoked_at=now)
            uow.update_admin_key(revoked)
            uow.announce(Change(Kind.ADMIN_KEY, key_id))
            uow.add_audit_event(
                audit.event(
                    now,
                    principal.admin_key_id,
                    "admin_key.revoke",
                    organization_id=current.organization_id,
                    target=key_id,
                )
            )
        return revoked

    # --- authentication ---------------------------------------------------------
    def authenticate(self, presented: str | None, source: str = "") -> Principal:
        """Map a presented key to its principal or raise AdminKeyInvalid.

        One store read (the key, and its organization when scoped): a revoked
        or expired key, or one whose organization is disabled or deleted,
        fails on its very next use.
        """
        if not presented:
            raise AdminKeyInvalid(_REQUIRED)
        # A key was given: saying "required" would send its owner looking for a missing one.
        if not presented.startswith(ADMIN_KEY_PREFIX):
            self._failed(presented, "malformed", source)
            raise AdminKeyInvalid(f"{_NOT_VALID}: admin keys start with {ADMIN_KEY_PREFIX}")
        if len(presented) > MAX_CREDENTIAL_LENGTH:
            self._failed(presented, "malformed", source)
            raise AdminKeyInvalid(_NOT_VALID)
        with self._store.reading() as uow:
            key = uow.get_admin_key_by_hash(self._hasher.hash(presented))
            org = (
                uow.get_organization(key.organization_id)
                if key is not None and key.organization_id is not None
                else None
            )
        now = self._clock()
        reason = refusal(key, org, now)
        if key is None or reason:
            self._failed(presented, reason, source, key)
            raise AdminKeyInvalid(f"{_NOT_VALID} ({reason.replace('_', ' ')})")
        self.usage.record(key.id, now)
        return Principal(admin_key_id=key.id, organization_id=key.organization_id, role=key.role)

    def _failed(
        self, presented: str, reason: str, source: str, key: AdminKey | None = None
    ) -> None:
        if self._failures is None:
            return
        # The key's id when the hash matched a key; never what was presented.
        actor = (
            key.id
            if key is not None
            else presented_actor(presented, ids.ADMIN_KEY, self._fingerprint)
        )
        self._failures.record(
            actor=actor,
            action=AUTHENTICATE_FAILED,
            reason=reason,
            source=source,
            organization_id=key.organization_id if key is not None else None,
        )
