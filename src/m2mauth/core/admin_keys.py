"""Admin keys: the credentials of the management plane.

An environment key (no organization) manages everything; an organization
key manages only its organization's applications and secrets. Keys are
stored as keyed hashes (see :mod:`m2mauth.core.credentials`).
"""

from __future__ import annotations

from m2mauth.core import audit, ids
from m2mauth.core.clock import Clock
from m2mauth.core.credentials import (
    ADMIN_KEY_PREFIX,
    MAX_CREDENTIAL_LENGTH,
    CredentialHasher,
)
from m2mauth.core.errors import AdminKeyInvalid, NotFound
from m2mauth.core.interfaces import Store
from m2mauth.core.models import AdminKey, Principal

SYSTEM_ACTOR = "system"


class AdminKeys:
    def __init__(self, store: Store, hasher: CredentialHasher, clock: Clock) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock

    def create(
        self, organization_id: str | None, actor: str = SYSTEM_ACTOR
    ) -> tuple[AdminKey, str]:
        """Create a key; return it and its plaintext (shown once, never stored)."""
        plaintext = self._hasher.generate(ADMIN_KEY_PREFIX)
        now = self._clock()
        key = AdminKey(
            id=ids.new_id(ids.ADMIN_KEY),
            key_hash=self._hasher.hash(plaintext),
            hint=self._hasher.hint(plaintext),
            organization_id=organization_id,
            created_at=now,
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
                )
            )
        return key, plaintext

    def bootstrap(self) -> str | None:
        """On an empty database, create an environment key and return it once."""
        with self._store.unit_of_work() as uow:
            if uow.count_admin_keys() > 0:
                return None
        _, plaintext = self.create(None)
        return plaintext

    def authenticate(self, presented: str | None) -> Principal:
        """Map a presented key to its principal or raise AdminKeyInvalid."""
        if not presented:
            raise AdminKeyInvalid("an admin key is required: authorization: Bearer <admin key>")
        # A key was given: saying "required" would send its owner looking for a missing one.
        if not presented.startswith(ADMIN_KEY_PREFIX):
            raise AdminKeyInvalid(
                f"the admin key is not valid: admin keys start with {ADMIN_KEY_PREFIX}"
            )
        if len(presented) > MAX_CREDENTIAL_LENGTH:
            raise AdminKeyInvalid("the admin key is not valid")
        with self._store.reading() as uow:
            key = uow.get_admin_key_by_hash(self._hasher.hash(presented))
        if key is None or key.revoked_at is not None:
            raise AdminKeyInvalid("the admin key is not valid")
        return Principal(admin_key_id=key.id, organization_id=key.organization_id)
