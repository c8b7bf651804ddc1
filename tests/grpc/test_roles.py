"""Every role x every RPC, environment-wide and organization-scoped, over a real server.

One row per RPC: the permission it needs and whether it concerns the whole
environment. For each kind of admin key the call either succeeds or is
PERMISSION_DENIED naming that permission in ErrorInfo.metadata; keys that are
revoked, expired, or of a disabled or deleted organization are UNAUTHENTICATED
for every RPC. Each call gets fresh resources in the key's organization, so a
call that is allowed really succeeds (OK), and one call's side effects (a
deletion, a revocation) never change another's outcome.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from m2mauth.bootstrap import App
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.models import AdminKeyRole, Principal
from m2mauth.core.permissions import ROLE_PERMISSIONS, Permission
from m2mauth.v1 import admin_key_service_pb2 as ak_pb
from m2mauth.v1 import application_service_pb2 as app_pb
from m2mauth.v1 import audit_service_pb2 as audit_pb
from m2mauth.v1 import key_service_pb2 as key_pb
from m2mauth.v1 import organization_service_pb2 as org_pb
from m2mauth.v1 import resources_pb2 as res
from m2mauth.v1 import token_service_pb2 as token_pb
from tests.grpc.conftest import Stubs, bearer
from tests.grpc.rich_errors import rich_error
from tests.token_requests import secret_request

ENV = Principal(admin_key_id="ak_setup", organization_id=None)


@dataclass
class Target:
    """Fresh resources in one organization, made for one call."""

    org_id: str
    app_id: str
    secret_id: str
    key_id: str  # an admin key of that organization
    token: str  # an access token of the application


def make_target(app: App) -> Target:
    org = app.organizations.create(ENV, "target", "", None)
    application = app.applications.create(
        ENV, org.id, ApplicationFields(name="svc", scopes=("read",))
    )
    secret, plaintext = app.applications.create_secret(ENV, application.id, None)
    key, _ = app.admin_keys.create_local(org.id, name="target key")
    token = app.tokens.issue_token(secret_request(application.client_id, plaintext))
    return Target(org.id, application.id, secret.id, key.id, token.access_token)


# (RPC name, permission, environment only, call(stubs, target, own organization or "", metadata))
Call = Callable[[Stubs, Target, str, Any], Any]


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


RPCS: list[tuple[str, Permission, bool, Call]] = [
    (
        "CreateOrganization",
        Permission.ORGANIZATIONS_WRITE,
        True,
        lambda s, t, own, md: s.orgs.CreateOrganization(
            org_pb.CreateOrganizationRequest(organization=res.Organization(name="new")),
            metadata=md,
        ),
    ),
    (
        "GetOrganization",
        Permission.ORGANIZATIONS_READ,
        False,
        lambda s, t, own, md: s.orgs.GetOrganization(
            org_pb.GetOrganizationRequest(id=t.org_id), metadata=md
        ),
    ),
    (
        "ListOrganizations",
        Permission.ORGANIZATIONS_READ,
        False,
        lambda s, t, own, md: s.orgs.ListOrganizations(
            org_pb.ListOrganizationsRequest(), metadata=md
        ),
    ),
    (
        "UpdateOrganization",
        Permission.ORGANIZATIONS_WRITE,
        True,
        lambda s, t, own, md: s.orgs.UpdateOrganization(
            org_pb.UpdateOrganizationRequest(
                organization=res.Organization(id=t.org_id, name="renamed"),
                update_mask=mask("name"),
            ),
            metadata=md,
        ),
    ),
    (
        "DeleteOrganization",
        Permission.ORGANIZATIONS_WRITE,
        True,
        lambda s, t, own, md: s.orgs.DeleteOrganization(
            org_pb.DeleteOrganizationRequest(id=t.org_id, force=True), metadata=md
        ),
    ),
    (
        "RevokeOrganizationTokens",
        Permission.ORGANIZATIONS_WRITE,
        False,
        lambda s, t, own, md: s.orgs.RevokeOrganizationTokens(
            org_pb.RevokeOrganizationTokensRequest(id=t.org_id), metadata=md
        ),
    ),
    (
        "CreateApplication",
        Permission.APPLICATIONS_WRITE,
        False,
        lambda s, t, own, md: s.apps.CreateApplication(
            app_pb.CreateApplicationRequest(
                application=res.Application(organization_id=t.org_id, name="new")
            ),
            metadata=md,
        ),
    ),
    (
        "GetApplication",
        Permission.APPLICATIONS_READ,
        False,
        lambda s, t, own, md: s.apps.GetApplication(
            app_pb.GetApplicationRequest(id=t.app_id), metadata=md
        ),
    ),
    (
        "ListApplications",
        Permission.APPLICATIONS_READ,
        False,
        lambda s, t, own, md: s.apps.ListApplications(
            app_pb.ListApplicationsRequest(organization_id=t.org_id), metadata=md
        ),
    ),
    (
        "UpdateApplication",
        Permission.APPLICATIONS_WRITE,
        False,
        lambda s, t, own, md: s.apps.UpdateApplication(
            app_pb.UpdateApplicationRequest(
                application=res.Application(id=t.app_id, name="renamed"),
                update_mask=mask("name"),
            ),
            metadata=md,
        ),
    ),
    (
        "DeleteApplication",
        Permission.APPLICATIONS_WRITE,
        False,
        lambda s, t, own, md: s.apps.DeleteApplication(
            app_pb.DeleteApplicationRequest(id=t.app_id), metadata=md
        ),
    ),
    (
        "RevokeApplicationTokens",
        Permission.APPLICATIONS_WRITE,
        False,
        lambda s, t, own, md: s.apps.RevokeApplicationTokens(
            app_pb.RevokeApplicationTokensRequest(id=t.app_id), metadata=md
        ),
    ),
    (
        "GetApplicationUsage",
        Permission.APPLICATIONS_READ,
        False,
        lambda s, t, own, md: s.apps.GetApplicationUsage(
            app_pb.GetApplicationUsageRequest(id=t.app_id), metadata=md
        ),
    ),
    (
        "CreateClientSecret",
        Permission.SECRETS_WRITE,
        False,
        lambda s, t, own, md: s.apps.CreateClientSecret(
            app_pb.CreateClientSecretRequest(application_id=t.app_id), metadata=md
        ),
    ),
    (
        "ListClientSecrets",
        Permission.SECRETS_READ,
        False,
        lambda s, t, own, md: s.apps.ListClientSecrets(
            app_pb.ListClientSecretsRequest(application_id=t.app_id), metadata=md
        ),
    ),
    (
        "RevokeClientSecret",
        Permission.SECRETS_WRITE,
        False,
        lambda s, t, own, md: s.apps.RevokeClientSecret(
            app_pb.RevokeClientSecretRequest(application_id=t.app_id, id=t.secret_id),
            metadata=md,
        ),
    ),
    (
        "ListAuditEvents",
        Permission.AUDIT_READ,
        False,
        lambda s, t, own, md: s.audit.ListAuditEvents(
            audit_pb.ListAuditEventsRequest(organization_id=t.org_id), metadata=md
        ),
    ),
    (
        "ListSigningKeys",
        Permission.SIGNING_KEYS_READ,
        True,
        lambda s, t, own, md: s.keys.ListSigningKeys(key_pb.ListSigningKeysRequest(), metadata=md),
    ),
    (
        "RotateSigningKey",
        Permission.SIGNING_KEYS_WRITE,
        True,
        lambda s, t, own, md: s.keys.RotateSigningKey(
            key_pb.RotateSigningKeyRequest(), metadata=md
        ),
    ),
    (
        "CreateAdminKey",
        Permission.ADMIN_KEYS_WRITE,
        False,
        lambda s, t, own, md: s.admin_keys.CreateAdminKey(
            ak_pb.CreateAdminKeyRequest(
                admin_key=res.AdminKey(
                    name="made", organization_id=t.org_id, role=res.ADMIN_KEY_ROLE_AUDITOR
                )
            ),
            metadata=md,
        ),
    ),
    (
        "GetAdminKey",
        Permission.ADMIN_KEYS_READ,
        False,
        lambda s, t, own, md: s.admin_keys.GetAdminKey(
            ak_pb.GetAdminKeyRequest(id=t.key_id), metadata=md
        ),
    ),
    (
        "ListAdminKeys",
        Permission.ADMIN_KEYS_READ,
        False,
        lambda s, t, own, md: s.admin_keys.ListAdminKeys(
            ak_pb.ListAdminKeysRequest(organization_id=t.org_id), metadata=md
        ),
    ),
    (
        "UpdateAdminKey",
        Permission.ADMIN_KEYS_WRITE,
        False,
        lambda s, t, own, md: s.admin_keys.UpdateAdminKey(
            ak_pb.UpdateAdminKeyRequest(
                admin_key=res.AdminKey(id=t.key_id, name="renamed"), update_mask=mask("name")
            ),
            metadata=md,
        ),
    ),
    (
        "RevokeAdminKey",
        Permission.ADMIN_KEYS_WRITE,
        False,
        lambda s, t, own, md: s.admin_keys.RevokeAdminKey(
            ak_pb.RevokeAdminKeyRequest(id=t.key_id), metadata=md
        ),
    ),
    (
        "Introspect",
        Permission.TOKENS_INTROSPECT,
        False,
        lambda s, t, own, md: s.tokens.Introspect(
            token_pb.IntrospectRequest(token=t.token), metadata=md
        ),
    ),
    (
        "RevokeToken",
        Permission.TOKENS_REVOKE,
        False,
        lambda s, t, own, md: s.tokens.RevokeToken(
            token_pb.RevokeTokenRequest(token=t.token), metadata=md
        ),
    ),
]


def test_the_table_names_every_management_rpc() -> None:
    from m2mauth.grpc.server import SERVICE_NAMES  # noqa: PLC0415
    from m2mauth.v1 import (  # noqa: PLC0415
        admin_key_service_pb2,
        application_service_pb2,
        audit_service_pb2,
        key_service_pb2,
        organization_service_pb2,
        token_service_pb2,
    )

    modules = (
        admin_key_service_pb2,
        application_service_pb2,
        audit_service_pb2,
        key_service_pb2,
        organization_service_pb2,
        token_service_pb2,
    )
    every = {
        method.name
        for module in modules
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    # IssueToken and GetJwks take no admin key at all.
    assert {name for name, *_ in RPCS} == every - {"IssueToken", "GetJwks"}
    assert len(SERVICE_NAMES) == len(modules)


@dataclass(frozen=True)
class KeyKind:
    role: AdminKeyRole
    scoped: bool

    @property
    def label(self) -> str:
        return f"{self.role.value}/{'organization' if self.scoped else 'environment'}"


KINDS = [KeyKind(role, scoped) for role in AdminKeyRole for scoped in (False, True)]


def expected_permission_denial(kind: KeyKind, permission: Permission, env_only: bool) -> bool:
    return permission not in ROLE_PERMISSIONS[kind.role] or (env_only and kind.scoped)


@pytest.fixture
def fresh(container: App) -> Callable[[], Target]:
    return lambda: make_target(container)


@pytest.mark.parametrize(("name", "permission", "env_only", "call"), RPCS, ids=[r[0] for r in RPCS])
def test_every_role_may_or_may_not_make_the_call(
    stubs: Stubs,
    container: App,
    fresh: Callable[[], Target],
    name: str,
    permission: Permission,
    env_only: bool,
    call: Call,
) -> None:
    outcomes: dict[str, str] = {}
    for kind in KINDS:
        target = fresh()
        scope = target.org_id if kind.scoped else None
        _, key = container.admin_keys.create_local(scope, name=kind.label, role=kind.role)
        try:
            call(stubs, target, scope or "", bearer(key))
            outcomes[kind.label] = "OK"
        except grpc.RpcError as err:
            error = rich_error(err)
            outcomes[kind.label] = (
                f"{error.code.name}:{error.metadata.get('permission', '')}"
                if error.code == grpc.StatusCode.PERMISSION_DENIED
                else f"{error.code.name}: {error.message}"
            )
    expected = {
        kind.label: (
            f"PERMISSION_DENIED:{permission.value}"
            if expected_permission_denial(kind, permission, env_only)
            else "OK"
        )
        for kind in KINDS
    }
    assert outcomes == expected


def invalid_keys(container: App) -> dict[str, str]:
    """A key of each kind that must no longer authenticate."""
    keys: dict[str, str] = {}
    revoked, keys["revoked"] = container.admin_keys.create_local(None, name="revoked")
    owner = Principal(admin_key_id="ak_setup", organization_id=None)
    container.admin_keys.revoke(owner, revoked.id)
    expired, keys["expired"] = container.admin_keys.create_local(None, name="expired")
    with container.store.unit_of_work() as uow:
        past = container.clock() - timedelta(seconds=1)
        uow.update_admin_key(dataclasses.replace(expired, expires_at=past))
    gone = container.organizations.create(ENV, "gone", "", None)
    _, keys["organization deleted"] = container.admin_keys.create_local(gone.id, name="gone")
    container.organizations.delete(ENV, gone.id, force=True)
    off = container.organizations.create(ENV, "off", "", None)
    _, keys["organization disabled"] = container.admin_keys.create_local(off.id, name="off")
    container.organizations.update(ENV, off.id, ["enabled"], "", "", False)
    return keys


def test_revoked_expired_and_orphaned_keys_fail_every_rpc_at_once(
    stubs: Stubs, container: App, fresh: Callable[[], Target]
) -> None:
    keys = invalid_keys(container)
    for name, _, _, call in RPCS:
        target = fresh()
        for kind, key in keys.items():
            with pytest.raises(grpc.RpcError) as info:
                call(stubs, target, "", bearer(key))
            error = rich_error(info.value)
            assert (name, kind, error.code) == (name, kind, grpc.StatusCode.UNAUTHENTICATED)
            assert error.reason == "ADMIN_KEY_INVALID"


def test_a_key_creates_only_keys_no_wider_than_itself(
    stubs: Stubs, container: App, fresh: Callable[[], Target]
) -> None:
    target = fresh()
    _, scoped_admin = container.admin_keys.create_local(target.org_id, name="scoped")

    def create(key: str, role: int, org: str) -> grpc.StatusCode:
        try:
            stubs.admin_keys.CreateAdminKey(
                ak_pb.CreateAdminKeyRequest(
                    admin_key=res.AdminKey(name="x", role=role, organization_id=org)  # type: ignore[arg-type]
                ),
                metadata=bearer(key),
            )
        except grpc.RpcError as err:
            return err.code()
        return grpc.StatusCode.OK

    other = fresh()
    # Its own organization, any role no wider than admin: allowed.
    assert create(scoped_admin, res.ADMIN_KEY_ROLE_TOKEN_VERIFIER, target.org_id) == (
        grpc.StatusCode.OK
    )
    assert create(scoped_admin, res.ADMIN_KEY_ROLE_ADMIN, "") == grpc.StatusCode.OK
    # Another organization or the environment: wider, refused.
    assert create(scoped_admin, res.ADMIN_KEY_ROLE_ADMIN, other.org_id) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # An auditor may create nothing; an admin may not create a key in an unknown org.
    _, auditor = container.admin_keys.create_local(None, name="a", role=AdminKeyRole.AUDITOR)
    assert create(auditor, res.ADMIN_KEY_ROLE_AUDITOR, "") == grpc.StatusCode.PERMISSION_DENIED
    _, env_admin = container.admin_keys.create_local(None, name="env")
    assert create(env_admin, res.ADMIN_KEY_ROLE_ADMIN, "org_" + "0" * 26) == (
        grpc.StatusCode.NOT_FOUND
    )
