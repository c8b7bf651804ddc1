"""Who may do what: the one permission table of the management plane.

An admin key has a role and a scope (the environment, or one organization).
Every core operation names the permission it needs and calls :func:`require`
before it looks anything up, so a caller without the permission learns
nothing about existence (AIP-193: permission is checked first). The scope is
checked by the lookups themselves: another organization's resources are
NOT_FOUND. Operations on the environment itself (organizations, signing keys)
also need an environment-wide key.
"""

from __future__ import annotations

import enum

from m2mauth.core.errors import PermissionDenied
from m2mauth.core.models import AdminKeyRole, Principal


class Permission(enum.Enum):
    ORGANIZATIONS_READ = "organizations.read"
    ORGANIZATIONS_WRITE = "organizations.write"
    APPLICATIONS_READ = "applications.read"
    APPLICATIONS_WRITE = "applications.write"
    SECRETS_READ = "client_secrets.read"
    SECRETS_WRITE = "client_secrets.write"
    SIGNING_KEYS_READ = "signing_keys.read"
    SIGNING_KEYS_WRITE = "signing_keys.write"
    ADMIN_KEYS_READ = "admin_keys.read"
    ADMIN_KEYS_WRITE = "admin_keys.write"
    AUDIT_READ = "audit.read"
    TOKENS_INTROSPECT = "tokens.introspect"
    TOKENS_REVOKE = "tokens.revoke"


_READS = frozenset(p for p in Permission if p.value.endswith(".read"))

ROLE_PERMISSIONS: dict[AdminKeyRole, frozenset[Permission]] = {
    AdminKeyRole.ADMIN: frozenset(Permission),
    # The credential of an API that receives tokens: it asks about tokens
    # (RFC 7662) and may revoke them (RFC 7009), and nothing else.
    AdminKeyRole.TOKEN_VERIFIER: frozenset(
        {Permission.TOKENS_INTROSPECT, Permission.TOKENS_REVOKE}
    ),
    # Reads everything in its scope; no secret is readable through any of it.
    AdminKeyRole.AUDITOR: _READS,
}


def allows(role: AdminKeyRole, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def require(principal: Principal, permission: Permission) -> None:
    """Raise PermissionDenied, naming the permission, unless the principal's role has it."""
    if not allows(principal.role, permission):
        raise PermissionDenied(
            f"an admin key with role {principal.role.value!r} may not do this; "
            f"it needs permission {permission.value!r}",
            permission=permission.value,
        )


def require_environment(principal: Principal, permission: Permission, what: str) -> None:
    """The permission, from an environment-wide key: for what concerns the whole
    environment (organizations themselves, signing keys)."""
    require(principal, permission)
    if principal.organization_id is not None:
        raise PermissionDenied(
            f"an organization-scoped admin key cannot {what}", permission=permission.value
        )


def no_wider(creator: Principal, role: AdminKeyRole, organization_id: str | None) -> None:
    """A key may create only keys whose role and scope are within its own."""
    if not ROLE_PERMISSIONS[role] <= ROLE_PERMISSIONS[creator.role]:
        missing = sorted(p.value for p in ROLE_PERMISSIONS[role] - ROLE_PERMISSIONS[creator.role])
        raise PermissionDenied(
            f"a key with role {creator.role.value!r} may not create a {role.value!r} key",
            permission=missing[0],
        )
    if creator.organization_id is not None and organization_id != creator.organization_id:
        raise PermissionDenied(
            "an organization-scoped key may create keys of its own organization only",
            permission=Permission.ADMIN_KEYS_WRITE.value,
        )
